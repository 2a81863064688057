"""Bybit rejections carry the codes and messages of reference/bybit-v5/error.mdx."""

from __future__ import annotations

import time

import pytest


def err(response) -> tuple[int, int, str]:
    body = response.json()
    return response.status_code, body["retCode"], body["retMsg"]


async def test_missing_and_unknown_key_are_401_10003(local, h):
    base = local.urls["bybit"]
    missing = await local.http.get(f"{base}/v5/account/info")
    assert err(missing)[:2] == (401, 10003)
    assert err(missing)[2].startswith("API key is invalid.")
    _, client = await h.new_bybit(local)
    client.key = "A" * 18
    assert err(await client.get("/v5/account/info", {}))[:2] == (401, 10003)


async def test_bad_signature_10004(local, h):
    _, client = await h.new_bybit(local)
    client.secret = "x" * 36
    assert err(await client.get("/v5/account/info", {})) == (
        200,
        10004,
        "Error sign, please check your signature generation algorithm.",
    )


async def test_signature_covers_raw_body_bytes(local, h):
    _, client = await h.new_bybit(local)
    raw = '{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"20"}'
    headers = client.headers(raw) | {"Content-Type": "application/json"}
    reformatted = raw.replace(",", ", ")  # same JSON, different bytes
    response = await local.http.post(
        f"{client.base}/v5/order/create", content=reformatted, headers=headers
    )
    assert err(response)[1] == 10004
    response = await local.http.post(f"{client.base}/v5/order/create", content=raw, headers=headers)
    assert response.json()["retCode"] == 0


@pytest.mark.parametrize("offset_ms", [-6000, 1500, 5000])
async def test_timestamp_outside_window_10002(local, h, offset_ms):
    _, client = await h.new_bybit(local)
    ts = int(time.time() * 1000) + offset_ms
    assert err(await client.get("/v5/account/info", {}, ts=ts)) == (
        200,
        10002,
        "The request time exceeds the time window range.",
    )


async def test_recv_window_widens_acceptance(local, h):
    _, client = await h.new_bybit(local)
    ts = int(time.time() * 1000) - 6000
    response = await client.get("/v5/account/info", {}, ts=ts, recv="20000")
    assert response.json()["retCode"] == 0


async def test_read_only_key_cannot_trade_10005(local, h):
    _, client = await h.new_bybit(local, trade=False)
    response = await client.post(
        "/v5/order/create",
        {
            "category": "spot",
            "symbol": "BTCUSDT",
            "side": "Buy",
            "orderType": "Market",
            "qty": "20",
        },
    )
    assert err(response) == (
        200,
        10005,
        "Permission denied, please check your API key permissions.",
    )


async def test_unbound_ip_10010(local, h):
    _, client = await h.new_bybit(local, ips=["203.0.113.7"])
    assert err(await client.get("/v5/account/info", {})) == (
        200,
        10010,
        "Unmatched IP, please check your API key's bound IP addresses.",
    )


@pytest.mark.parametrize(
    ("order", "code", "message"),
    [
        ({"symbol": "FOOUSDT", "qty": "1"}, 170121, "Invalid symbol."),
        ({"qty": "0.0000001", "marketUnit": "baseCoin"}, 170137, "Order volume decimal too long"),
        (
            {"qty": "0.00001", "marketUnit": "baseCoin"},
            170136,
            "Order quantity lower than the minimum.",
        ),
        ({"qty": "4"}, 170140, "Order value exceeded lower limit"),
        ({"qty": "10.123456789"}, 170148, "Market order amount decimal too long"),
        ({"qty": "50000"}, 170131, "Balance insufficient"),
        (
            {"orderType": "Limit", "price": "100.05", "qty": "0.001"},
            170134,
            "Order price decimal too long.",
        ),
        ({"side": "Hold", "qty": "10"}, 170117, "Invalid side."),
    ],
)
async def test_order_filters(local, h, order, code, message):
    _, client = await h.new_bybit(local)
    body = {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market"} | order
    assert err(await client.post("/v5/order/create", body)) == (200, code, message)


async def test_duplicate_order_link_id_170141(local, h):
    account, client = await h.new_bybit(local)
    body = {
        "category": "spot",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Market",
        "qty": "20",
        "orderLinkId": "dup-1",
    }
    assert (await client.post("/v5/order/create", body)).json()["retCode"] == 0
    assert err(await client.post("/v5/order/create", body)) == (
        200,
        170141,
        "Duplicate clientOrderId",
    )
    assert len(await local.bybit_admin.orders(account)) == 1


async def test_expired_key_is_rejected(local, h):
    _, client = await h.new_bybit(local, expires_at_ms=int(time.time() * 1000) - 1)
    assert err(await client.get("/v5/account/info", {}))[1] == -2015


async def test_unknown_path_is_404(local):
    response = await local.http.get(f"{local.urls['bybit']}/v5/nope")
    assert response.status_code == 404
