"""Injected faults, including the unknown outcome: executed, but answered with a 5xx."""

from __future__ import annotations

import httpx
import pytest

from marketbot.sim.admin import SimAdminError


@pytest.fixture
async def clean_faults(local):
    yield
    await local.bybit_admin.clear_faults()
    await local.binance_admin.clear_faults()


async def test_executed_5xx_binance_order_exists_afterwards(local, h, clean_faults):
    account, client = await h.new_binance(local)
    await local.binance_admin.set_fault("executed_5xx", next_n=1, path="/api/v3/order")
    response = await client.request(
        "POST",
        "/api/v3/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "MARKET",
            "quantity": "0.001",
            "newClientOrderId": "unknown-1",
        },
    )
    assert response.status_code == 503
    assert response.json() == {
        "code": -1001,
        "msg": "Internal error; unable to process your request. Please try again.",
    }
    query = await client.request(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "unknown-1"}
    )
    assert query.status_code == 200
    assert query.json()["status"] == "FILLED"
    assert [o["client_order_id"] for o in await local.binance_admin.orders(account)] == [
        "unknown-1"
    ]


async def test_http_5xx_does_not_execute(local, h, clean_faults):
    account, client = await h.new_bybit(local)
    await local.bybit_admin.set_fault("http_5xx", next_n=1, path="/v5/order/create")
    body = {
        "category": "spot",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Market",
        "qty": "20",
        "orderLinkId": "nx-1",
    }
    response = await client.post("/v5/order/create", body)
    assert response.status_code == 503
    assert response.json()["retCode"] == 10016
    assert await local.bybit_admin.orders(account) == []
    assert (await client.post("/v5/order/create", body)).json()["retCode"] == 0


async def test_executed_drop_bybit(local, h, clean_faults):
    _account, client = await h.new_bybit(local)
    await local.bybit_admin.set_fault("executed_drop", next_n=1, path="/v5/order/*")
    with pytest.raises(httpx.TransportError):
        await client.post(
            "/v5/order/create",
            {
                "category": "spot",
                "symbol": "BTCUSDT",
                "side": "Buy",
                "orderType": "Market",
                "qty": "20",
                "orderLinkId": "dropped-1",
            },
        )
    found = (
        await client.get("/v5/order/realtime", {"category": "spot", "orderLinkId": "dropped-1"})
    ).json()
    assert found["result"]["list"][0]["orderStatus"] == "Filled"


async def test_drop_without_execution(local, h, clean_faults):
    _account, client = await h.new_binance(local)
    await local.binance_admin.set_fault("drop", next_n=2)
    for _ in range(2):
        with pytest.raises(httpx.TransportError):
            await client.request("GET", "/api/v3/account", {})
    assert (await client.request("GET", "/api/v3/account", {})).status_code == 200


async def test_latency_and_rate(local, h, clean_faults):
    import time

    _, client = await h.new_binance(local)
    await local.binance_admin.set_fault("latency", rate=1.0, latency_ms=150, path="/api/v3/time")
    started = time.monotonic()
    await local.http.get(f"{client.base}/api/v3/time")
    assert time.monotonic() - started >= 0.14
    await local.binance_admin.clear_faults()
    await local.binance_admin.set_fault("http_5xx", rate=0.5, path="/api/v3/ping")
    statuses = [(await local.http.get(f"{client.base}/api/v3/ping")).status_code for _ in range(40)]
    assert 5 < statuses.count(503) < 35
    assert statuses.count(200) > 5


async def test_executed_slow_order_exists_before_its_answer(local, h, clean_faults):
    """The window between the exchange's accept and the client's record, held open."""
    import asyncio

    account, client = await h.new_bybit(local)
    await local.bybit_admin.set_fault(
        "executed_slow", next_n=1, latency_ms=3_000, path="/v5/order/create"
    )
    body = {
        "category": "spot",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Market",
        "qty": "20",
        "orderLinkId": "slow-1",
    }
    answer = asyncio.create_task(client.post("/v5/order/create", body))
    for _ in range(200):
        if await local.bybit_admin.orders(account):
            break
        await asyncio.sleep(0.05)
    orders = await local.bybit_admin.orders(account)
    assert [o["client_order_id"] for o in orders] == ["slow-1"]
    assert not answer.done()  # accepted, not yet answered
    answer.cancel()
    with pytest.raises((asyncio.CancelledError, httpx.TransportError)):
        await answer
    with pytest.raises(SimAdminError, match="executed_slow needs latency_ms"):
        await local.bybit_admin.set_fault("executed_slow", next_n=1)
