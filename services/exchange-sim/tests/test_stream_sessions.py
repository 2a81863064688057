"""What ends or limits a stream connection, and the public price stream, as documented.

Bybit: websocket_wss-authentication.mdx (idle cut after 10 minutes, ``max_active_time``,
"ticker scans every 30s", 500 connections per 5 minutes per IP, public pong and subscribe
answers, at most 10 spot args per subscribe) and websocket_public_ticker.mdx. Binance:
web-socket-api.md (24-hour connections, ``serverShutdown``, 300 connections per 5 minutes
per IP). The expiries are shortened through the admin API for the test and restored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from marketbot.sim.bybit_ws import max_active_time

GUARD_S = 10.0  # a hang guard, not a timing assertion


def ws_url(http_url: str, path: str) -> str:
    return http_url.replace("http://", "ws://", 1) + path


async def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    return await recv(ws)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), GUARD_S))
    return reply


@asynccontextmanager
async def expiry(admin: Any, **settings: Any) -> AsyncIterator[dict[str, Any]]:
    before = await admin.stream_settings()
    try:
        yield await admin.stream_settings(**settings)
    finally:
        await admin.stream_settings(
            **{k: before[k] for k in ("lifetime_s", "idle_s", "scan_s", "connection_limit")},
            accepting=True,
        )


async def closed(ws: ClientConnection) -> ConnectionClosed:
    """Read until the server ends the connection (what ended it)."""
    while True:
        try:
            await asyncio.wait_for(ws.recv(), GUARD_S)
        except ConnectionClosed as ended:
            return ended


async def test_bybit_public_spot_tickers_push_a_snapshot_on_subscribe_and_on_each_move(local):
    admin = local.bybit_admin
    async with connect(ws_url(local.urls["bybit"], "/v5/public/spot")) as ws:
        # Public spot pong: {"success": true, "ret_msg": "pong", "conn_id", "op": "ping"}.
        pong = await ask(ws, {"req_id": "p1", "op": "ping"})
        assert (pong["success"], pong["ret_msg"], pong["op"]) == (True, "pong", "ping")
        # "Spot can input up to 10 args for each subscription request".
        many = await ask(ws, {"op": "subscribe", "args": [f"tickers.X{i}" for i in range(11)]})
        assert many["success"] is False
        reply = await ask(ws, {"req_id": "s1", "op": "subscribe", "args": ["tickers.XRPUSDT"]})
        assert (reply["success"], reply["ret_msg"], reply["op"], reply["req_id"]) == (
            True,
            "subscribe",
            "subscribe",
            "s1",
        )
        first = await recv(ws)
        # websocket_public_ticker.mdx, spot: topic, ts, type "snapshot" only, cs, data.
        assert set(first) == {"topic", "ts", "type", "cs", "data"}
        assert (first["topic"], first["type"]) == ("tickers.XRPUSDT", "snapshot")
        assert first["data"]["symbol"] == "XRPUSDT"
        await admin.set_price("XRPUSDT", Decimal("0.6123"))
        moved = await recv(ws)
        assert moved["data"]["lastPrice"] == "0.6123"
        assert moved["cs"] > first["cs"]


def test_bybit_max_active_time_is_read_within_the_documented_range():
    # "the lowest value is 30s (30 seconds), the highest value is 600s (10 minutes). You
    # can also pass 1m, 2m etc".
    assert max_active_time("max_active_time=1m") == 60.0
    assert max_active_time("max_active_time=45s") == 45.0
    assert max_active_time("max_active_time=10s") is None
    assert max_active_time("max_active_time=11m") is None
    assert max_active_time("other=1") is None


async def test_bybit_cuts_a_connection_that_stays_idle_and_keeps_one_that_pings(local):
    # "if there is no "ping-pong" and no stream data sent from server end, the connection
    # will be cut off after 10 minutes": shortened here to a fraction of a second.
    async with expiry(local.bybit_admin, idle_s=0.3, scan_s=0.05):
        async with connect(ws_url(local.urls["bybit"], "/v5/private")) as idle:
            ended = await closed(idle)
            assert ended.rcvd is None  # cut, as a dropped connection
        async with connect(ws_url(local.urls["bybit"], "/v5/private")) as alive:
            for i in range(8):  # 0.8 s of pings, well past the idle time
                pong = await ask(alive, {"req_id": f"p{i}", "op": "ping"})
                assert pong["op"] == "pong"
                await asyncio.sleep(0.1)
    stats = await local.bybit_admin.streams()
    assert stats["expired_total"] >= 1


async def test_binance_connection_ends_at_its_lifetime_and_on_server_shutdown(local):
    admin = local.binance_admin
    # "A single connection to the API is only valid for 24 hours": shortened.
    async with (
        expiry(admin, lifetime_s=0.3, scan_s=0.05),
        connect(ws_url(local.urls["binance"], "/ws-api/v3")) as ws,
    ):
        await closed(ws)
    # "serverShutdown event is sent when the server is about to shut down" (no
    # subscriptionId), then the connection closes.
    async with connect(ws_url(local.urls["binance"], "/ws-api/v3")) as ws:
        assert (await ask(ws, {"id": "1", "method": "ping"}))["status"] == 200
        assert await admin.shutdown_streams()
        event = await recv(ws)
        assert event["event"]["e"] == "serverShutdown"
        assert "subscriptionId" not in event
        ended = await closed(ws)
        assert ended.rcvd is not None
        assert ended.rcvd.code == 1001


@pytest.mark.parametrize("venue", ["bybit", "binance"])
async def test_connections_beyond_the_per_ip_limit_are_refused(limited, venue):
    # Bybit "Do not build over 500 connections in 5 minutes"; Binance "300 connections
    # per attempt every 5 minutes" per IP: the same rule with a limit of 2 for the test.
    admin = limited.bybit_admin if venue == "bybit" else limited.binance_admin
    path = "/v5/private" if venue == "bybit" else "/ws-api/v3"
    url = ws_url(limited.urls[venue], path)
    async with expiry(admin, connection_limit=[2, 300]):
        async with connect(url), connect(url):
            with pytest.raises(InvalidStatus, match="429"):
                async with connect(url):
                    pass
        refused = (await admin.streams())["refused_total"]
        assert refused >= 1


async def test_the_request_log_names_each_signed_request_with_its_account(local, h):
    account, client = await h.new_binance(local)
    since = await local.binance_admin.server_ms()
    await client.request("GET", "/api/v3/account", {})
    log = await local.binance_admin.requests(since_ms=since, account_id=account)
    assert log["counts"] == {"GET /api/v3/account": 1}
    assert log["requests"][0][3] == account
