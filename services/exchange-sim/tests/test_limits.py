"""Rate limits with the venues' headers, 429/418/403/10006 and bans (short ban for tests)."""

from __future__ import annotations

import asyncio
import time

import pytest


@pytest.fixture
async def fresh_limits(limited):
    await limited.bybit_admin.set_limits(True, ban_seconds=1)
    await limited.binance_admin.set_limits(True, ban_seconds=1)
    yield
    await limited.bybit_admin.set_limits(True)
    await limited.binance_admin.set_limits(True)


async def test_bybit_uid_limit_10006_with_headers(limited, h, fresh_limits):
    _, client = await h.new_bybit(limited)
    statuses = []
    for _ in range(12):
        response = await client.get("/v5/user/query-api", {})
        statuses.append(response.json()["retCode"])
    assert statuses[:10] == [0] * 10
    assert statuses[10] == 10006
    assert response.json()["retMsg"] == "Too many visits!"
    assert response.headers["x-bapi-limit"] == "10"
    assert response.headers["x-bapi-limit-status"] == "0"
    assert int(response.headers["x-bapi-limit-reset-timestamp"]) > 0


async def test_bybit_ip_limit_403_then_ban(limited, h, fresh_limits):
    await limited.bybit_admin.set_limits(True, ban_seconds=60, ip_limit=20)
    base = limited.urls["bybit"]
    codes = [(await limited.http.get(f"{base}/v5/market/time")).status_code for _ in range(22)]
    assert codes[:20] == [200] * 20
    assert codes[20:] == [403, 403]
    response = await limited.http.get(f"{base}/v5/market/time")
    assert (response.status_code, response.text) == (403, "access too frequent")
    await limited.bybit_admin.set_limits(True)  # clears the ban
    assert (await limited.http.get(f"{base}/v5/market/time")).status_code == 200


async def early_in_window(window_s: float, needed: float) -> None:
    """Binance counts in fixed, clock-aligned windows: wait (at most ``needed`` seconds) for
    a fresh one when fewer than ``needed`` seconds are left, so a test's requests cannot
    straddle a boundary on a slow machine."""
    left = window_s - time.time() % window_s
    if left < needed:
        await asyncio.sleep(left + 0.05)


async def test_binance_weight_429_then_418(limited, h, fresh_limits):
    await early_in_window(60, needed=10)
    await limited.binance_admin.set_limits(True, ban_seconds=120, weight_limit=40)
    base = limited.urls["binance"]
    first = await limited.http.get(f"{base}/api/v3/exchangeInfo")
    assert first.headers["x-mbx-used-weight-1m"] == "20"
    second = await limited.http.get(f"{base}/api/v3/exchangeInfo")
    assert second.status_code == 200
    assert second.headers["x-mbx-used-weight-1m"] == "40"
    third = await limited.http.get(f"{base}/api/v3/ping")
    assert third.status_code == 429
    assert int(third.headers["retry-after"]) >= 1
    assert third.json() == {
        "code": -1003,
        "msg": "Too much request weight used; current limit is 40 request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
    }
    codes = [(await limited.http.get(f"{base}/api/v3/ping")).status_code for _ in range(4)]
    assert codes[-1] == 418
    banned = await limited.http.get(f"{base}/api/v3/ping")
    assert banned.status_code == 418
    assert 110 <= int(banned.headers["retry-after"]) <= 120
    assert banned.json()["code"] == -1003
    assert banned.json()["msg"].startswith("Way too much request weight used; IP banned until ")


async def test_binance_order_count_limit(limited, h, fresh_limits):
    await limited.binance_admin.set_limits(True, orders_10s=3)
    _, client = await h.new_binance(limited)
    await early_in_window(10, needed=6)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0001"}
    counts = []
    for _ in range(3):
        response = await client.request("POST", "/api/v3/order", order)
        counts.append(response.headers["x-mbx-order-count-10s"])
    assert counts == ["1", "2", "3"]
    response = await client.request("POST", "/api/v3/order", order)
    assert response.status_code == 429
    assert "retry-after" in response.headers
    assert response.json() == {
        "code": -1015,
        "msg": "Too many new orders; current limit is 3 orders per 10 SECOND.",
    }


async def test_limits_can_be_switched_off(limited, h, fresh_limits):
    await limited.bybit_admin.set_limits(False)
    _, client = await h.new_bybit(limited)
    codes = {(await client.get("/v5/user/query-api", {})).json()["retCode"] for _ in range(15)}
    assert codes == {0}
