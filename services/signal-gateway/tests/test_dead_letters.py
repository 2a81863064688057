"""The admin API over the DEAD_LETTERS stream: list, inspect, replay, admins only."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from marketbot.contracts import MessageDeadLettered, SignalAction, SignalReceived, decode
from marketbot.runtime.bus import Bus
from marketbot.runtime.loop import ConsumerSpec, Delivery, MessageLoop, Redelivery
from marketbot.runtime.testing import eventually

from .helpers import AppFactory, admin_headers, bearer, client_for, create_user, stream_messages


def signal_event() -> SignalReceived:
    sid = uuid.uuid4()
    now = datetime.now(UTC)
    return SignalReceived(
        event_id=sid,
        occurred_at=now,
        correlation_id=str(sid),
        signal_id=sid,
        source="tv",
        symbol="BTCUSDT",
        action=SignalAction.BUY,
        price="95000.50",
        received_at=now,
    )


async def test_dead_letters_are_listed_inspected_and_replayed_once(
    make_app: AppFactory, bus: Bus
) -> None:
    healed = False
    handled: list[SignalReceived] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        for d in batch:
            if not healed:
                d.retry(RuntimeError("the market data is down"))
            else:
                assert isinstance(d.message, SignalReceived)
                handled.append(d.message)

    spec = ConsumerSpec(
        "gw-test",
        "SIGNALS",
        ("signals.>",),
        fetch_timeout=0.2,
        redelivery=Redelivery(max_deliver=2, backoff_s=(0.05,)),
    )
    loop = MessageLoop(bus, spec, handler)
    await loop.start()
    event = signal_event()
    try:
        await bus.publish(event)
        await bus.publish_raw(bus.subject("signals.received"), b"\xff not json", "junk", "x")
        async with client_for(make_app()) as api:

            async def two_letters() -> list[dict]:  # type: ignore[type-arg]
                page = await api.get("/admin/dead-letters", headers=admin_headers())
                assert page.status_code == 200, page.text
                letters: list[dict] = page.json()["dead_letters"]  # type: ignore[type-arg]
                return letters if len(letters) == 2 else []

            letters = await eventually(two_letters, timeout=15)
            by_kind = {letter["permanent"]: letter for letter in letters}
            exhausted, junk = by_kind[False], by_kind[True]
            assert exhausted["consumer"] == "gw-test"
            assert exhausted["message_id"] == str(event.event_id)
            assert exhausted["correlation_id"] == event.correlation_id
            assert exhausted["deliveries"] == 2
            assert [h["delivery"] for h in exhausted["history"]] == [1, 2]
            assert "market data is down" in exhausted["reason"]
            assert "undecodable" in junk["reason"]

            one = await api.get(f"/admin/dead-letters/{exhausted['id']}", headers=admin_headers())
            assert one.status_code == 200
            body = one.json()
            assert body["payload_base64"] is False
            assert decode(body["payload"]) == event
            raw = await api.get(f"/admin/dead-letters/{junk['id']}", headers=admin_headers())
            assert raw.json()["payload_base64"] is True

            only = await api.get(
                "/admin/dead-letters", params={"consumer": "nobody"}, headers=admin_headers()
            )
            assert only.json() == {"dead_letters": [], "next_before": None}
            paged = await api.get(
                "/admin/dead-letters", params={"limit": 1}, headers=admin_headers()
            )
            assert paged.json()["next_before"] == paged.json()["dead_letters"][0]["id"]

            healed = True
            url = f"/admin/dead-letters/{exhausted['id']}/replay"
            first = await api.post(url, headers=admin_headers())
            again = await api.post(url, headers=admin_headers())
            assert first.status_code == again.status_code == 200, first.text
            assert first.json()["duplicate"] is False
            assert again.json()["duplicate"] is True  # a second click stores nothing new
            await eventually(lambda: handled == [event], timeout=15)

            missing = await api.get("/admin/dead-letters/999999", headers=admin_headers())
            assert missing.status_code == 404
            assert missing.json()["error"]["field"] == "id"
            _, token = await create_user(api, "dl@example.com")
            refused = await api.get("/admin/dead-letters", headers=bearer(token))
            assert refused.status_code == 403
            anonymous = await api.get("/admin/dead-letters")
            assert anonymous.status_code == 401
    finally:
        await loop.stop()
    signals = [m for m in await stream_messages(bus, "SIGNALS") if m.get("type")]
    assert [m["event_id"] for m in signals].count(str(event.event_id)) == 2  # original + replay


async def test_a_letter_the_gateway_may_not_publish_is_not_replayed(
    make_app: AppFactory, bus: Bus
) -> None:
    """The gateway's NATS identity never publishes order requests (issue 14): replaying an
    executor's letter is refused naming why, and nothing reaches ORDER_REQUESTS."""
    now = datetime.now(UTC)
    letter = MessageDeadLettered(
        event_id=uuid.uuid4(),
        occurred_at=now,
        correlation_id="c-1",
        consumer="executor-bybit-pro",
        source_stream="ORDER_REQUESTS",
        source_subject="orders.requested.bybit.pro",
        stream_sequence=1,
        message_type="OrderRequested",
        reason="exhausted",
        permanent=False,
        deliveries=10,
        payload_b64=base64.b64encode(b'{"type":"OrderRequested"}').decode(),
        dead_lettered_at=now,
    )
    ack = await bus.publish(letter)
    async with client_for(make_app()) as api:
        shown = await api.get(f"/admin/dead-letters/{ack.seq}", headers=admin_headers())
        assert shown.status_code == 200, shown.text
        refused = await api.post(f"/admin/dead-letters/{ack.seq}/replay", headers=admin_headers())
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["field"]) == ("not_replayable", "id")
    assert "orders.requested.bybit.pro" in error["message"]
    assert await stream_messages(bus, "ORDER_REQUESTS") == []
