"""The webhook on a real JetStream: both forms, every refusal, idempotency, staleness, IPs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from marketbot.contracts import SignalReceived
from marketbot.runtime.bus import Bus, BusError
from marketbot.runtime.clock import ManualClock

from .helpers import (
    NOW,
    SOURCE_TOKEN,
    AppFactory,
    admin_headers,
    client_for,
    make_settings,
    stream_messages,
)

URL = f"/webhooks/tradingview/tv?token={SOURCE_TOKEN}"
TEMPLATE = {
    "symbol": "BTCUSDT",
    "action": "buy",
    "price": "95000",
    "time": "2026-11-24T11:59:59Z",
    "strategy": "ema-cross",
    "sl": "2",
    "tp": "4",
    "exchange": "bybit",
}


async def signals(bus: Bus) -> list[dict[str, Any]]:
    return await stream_messages(bus, "SIGNALS")


async def test_json_alert_lands_in_jetstream(make_app: AppFactory, bus: Bus) -> None:
    async with client_for(make_app()) as api:
        response = await api.post(URL, json=TEMPLATE)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["duplicate"] is False
    [stored] = await signals(bus)
    signal = SignalReceived.model_validate(stored)
    assert str(signal.signal_id) == body["signal_id"] == str(signal.event_id)
    assert signal.correlation_id == body["signal_id"]
    assert (signal.symbol, signal.action.value, str(signal.price)) == ("BTCUSDT", "buy", "95000")
    assert signal.source == "tv"
    assert signal.received_at == NOW
    assert str(signal.stop_loss_percent) == "2"
    assert signal.exchange is not None
    assert signal.exchange.value == "bybit"


async def test_plain_text_alert_with_passphrase_auth(make_app: AppFactory, bus: Bus) -> None:
    async with client_for(make_app()) as api:
        response = await api.post(
            "/webhooks/tradingview/tv",
            content=f"SELL ETHUSDT @ 3500.25 passphrase={SOURCE_TOKEN}",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        json_passphrase = await api.post(
            "/webhooks/tradingview/tv",
            content=json.dumps({**TEMPLATE, "passphrase": SOURCE_TOKEN}),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 202, response.text
    assert json_passphrase.status_code == 202, json_passphrase.text
    stored = [SignalReceived.model_validate(m) for m in await signals(bus)]
    assert [(s.symbol, s.action.value, str(s.price)) for s in stored] == [
        ("ETHUSDT", "sell", "3500.25"),
        ("BTCUSDT", "buy", "95000"),
    ]
    assert all(SOURCE_TOKEN not in json.dumps(m) for m in await signals(bus))


async def test_same_alert_four_times_is_one_event(make_app: AppFactory, bus: Bus) -> None:
    reordered = json.dumps(dict(reversed(list(TEMPLATE.items()))))
    async with client_for(make_app()) as api:
        answers = [await api.post(URL, json=TEMPLATE) for _ in range(3)]
        answers.append(
            await api.post(URL, content=reordered, headers={"Content-Type": "text/plain"})
        )
        metrics_text = await api.get("/openapi.json")
    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.json()["signal_id"] for a in answers}) == 1
    assert [a.json()["duplicate"] for a in answers] == [False, True, True, True]
    assert len(await signals(bus)) == 1
    assert metrics_text.status_code == 200


async def test_untimed_text_alert_resent_is_one_event(make_app: AppFactory, bus: Bus) -> None:
    async with client_for(make_app()) as api:
        ids = {
            (
                await api.post(
                    URL, content="BUY BTCUSDT @ 95000", headers={"Content-Type": "text/plain"}
                )
            ).json()["signal_id"]
            for _ in range(4)
        }
    assert len(ids) == 1
    assert len(await signals(bus)) == 1


async def test_stale_alert_is_refused(make_app: AppFactory, bus: Bus, clock: ManualClock) -> None:
    async with client_for(make_app(make_settings(max_alert_age_seconds=60))) as api:
        clock.advance(61)
        response = await api.post(URL, json={**TEMPLATE, "time": "2026-11-24T12:00:00Z"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "stale"
    assert response.json()["error"]["field"] == "time"
    assert await signals(bus) == []


async def _error(api: Any, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = await api.post(*args, **kwargs)
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["message"]
    return response.status_code, body["error"]


async def test_every_error_status_names_field_and_rule(make_app: AppFactory, bus: Bus) -> None:
    settings = make_settings(max_body_bytes=256, rate_limit_per_second=0.0, rate_limit_burst=1)
    async with client_for(make_app(settings)) as api:
        status, error = await _error(
            api, URL, content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert (status, error["code"], error["field"]) == (400, "invalid_json", "body")

        status, error = await _error(api, "/webhooks/tradingview/tv", json=TEMPLATE)
        assert (status, error["code"], error["field"]) == (401, "missing_token", "token")
        status, error = await _error(api, "/webhooks/tradingview/tv?token=wrong", json=TEMPLATE)
        assert (status, error["code"]) == (401, "invalid_token")
        status, error = await _error(
            api, f"/webhooks/tradingview/nosuch?token={SOURCE_TOKEN}", json=TEMPLATE
        )
        assert (status, error["code"]) == (401, "invalid_token")

        status, error = await _error(api, URL, content=b"x" * 300)
        assert (status, error["code"], error["field"]) == (413, "too_large", "body")

        status, error = await _error(
            api, URL, content=b"<alert/>", headers={"Content-Type": "application/xml"}
        )
        assert (status, error["code"], error["field"]) == (
            415,
            "unsupported_media_type",
            "content-type",
        )

        status, error = await _error(api, URL, json={**TEMPLATE, "action": "hold"})
        assert (status, error["code"], error["field"]) == (422, "enum", "action")
        # only authenticated requests spend the budget: that one spent the burst of 1
        status, error = await _error(api, URL, json=TEMPLATE)
        assert (status, error["code"], error["field"]) == (429, "rate_limited", "source")
    assert await signals(bus) == []


async def test_503_when_the_signal_cannot_be_stored(make_app: AppFactory) -> None:
    async def broken(_signal: SignalReceived) -> bool:
        raise BusError("no JetStream")

    async with client_for(make_app(publish_signal=broken)) as api:
        response = await api.post(URL, json=TEMPLATE)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert response.headers["retry-after"] == "1"


async def test_resend_after_503_gives_the_same_id(make_app: AppFactory, bus: Bus) -> None:
    async def broken(_signal: SignalReceived) -> bool:
        raise BusError("no JetStream")

    async with client_for(make_app(publish_signal=broken)) as api:
        assert (await api.post(URL, json=TEMPLATE)).status_code == 503
    async with client_for(make_app()) as api:
        first = await api.post(URL, json=TEMPLATE)
        second = await api.post(URL, json=TEMPLATE)
    assert first.json()["signal_id"] == second.json()["signal_id"]
    assert len(await signals(bus)) == 1


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "status"),
    [
        ("52.89.214.238", None, (), 202),  # TradingView directly
        ("203.0.113.9", None, (), 403),  # anyone else
        ("203.0.113.9", "52.89.214.238", (), 403),  # a forged X-Forwarded-For is ignored
        ("10.1.2.3", "52.89.214.238", (), 403),  # a proxy we were not told to trust
        ("10.1.2.3", "52.89.214.238", ("10.0.0.0/8",), 202),  # behind our trusted proxy
        ("10.1.2.3", "52.89.214.238, 198.51.100.7", ("10.0.0.0/8",), 403),  # spoofed chain
    ],
)
async def test_ip_allow_list(
    make_app: AppFactory,
    peer: str,
    forwarded: str | None,
    trusted: tuple[str, ...],
    status: int,
) -> None:
    settings = make_settings(ip_allowlist_enabled=True, trusted_proxies=trusted)
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with client_for(make_app(settings), ip=peer) as api:
        response = await api.post(URL, json=TEMPLATE, headers=headers)
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"]["field"] == "client_ip"


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        # the caller forged the first line; our proxy appended the real client in a second
        (("52.89.214.238", "198.51.100.7"), 403),
        (("52.89.214.238, 10.9.9.9", "198.51.100.7"), 403),
        # the real client (TradingView) is the last hop our proxy added
        (("198.51.100.7", "52.89.214.238"), 202),
    ],
)
async def test_several_forwarded_for_lines_are_read_together(
    make_app: AppFactory, lines: tuple[str, ...], status: int
) -> None:
    settings = make_settings(ip_allowlist_enabled=True, trusted_proxies=("10.0.0.0/8",))
    headers = [("X-Forwarded-For", line) for line in lines]
    async with client_for(make_app(settings), ip="10.1.2.3") as api:
        response = await api.post(URL, json=TEMPLATE, headers=headers)
    assert response.status_code == status, response.text


async def test_sources_managed_by_the_admin_api(make_app: AppFactory, bus: Bus) -> None:
    async with client_for(make_app()) as api:
        created = await api.post("/admin/sources", json={"name": "desk-2"}, headers=admin_headers())
        assert created.status_code == 201, created.text
        token = created.json()["token"]
        ok = await api.post(f"/webhooks/tradingview/desk-2?token={token}", json=TEMPLATE)
        assert ok.status_code == 202
        listed = await api.get("/admin/sources", headers=admin_headers())
        assert {s["name"] for s in listed.json()} == {"tv", "desk-2"}
        assert token not in listed.text
        assert (
            await api.delete("/admin/sources/desk-2", headers=admin_headers())
        ).status_code == 204
        gone = await api.post(f"/webhooks/tradingview/desk-2?token={token}", json=TEMPLATE)
        assert gone.status_code == 401
    # the same alert from another source is another signal
    assert len(await signals(bus)) == 1
