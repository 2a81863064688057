"""WebSocket /ws on a real uvicorn socket: own events only, admin sees all, resume works
from memory and, after a restart, from JetStream; a slow client never blocks the others."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from marketbot.contracts import (
    CloseReason,
    Exchange,
    OrderPlaced,
    OrderRejected,
    Plan,
    PositionClosed,
    RejectReason,
    Side,
)
from marketbot.gateway.adapters.feed import JetStreamFeed
from marketbot.gateway.app import start_push, uvicorn_server
from marketbot.gateway.domain.push import ORDERS, Cursor
from marketbot.gateway.push import Hub
from marketbot.runtime.bus import Bus
from marketbot.runtime.testing import eventually

from .helpers import ADMIN_TOKEN, AppFactory, client_for, create_user

T = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _common(user_id: str) -> dict[str, Any]:
    decision = uuid.uuid4()
    return {
        "occurred_at": T,
        "correlation_id": str(uuid.uuid4()),
        "request_id": uuid.uuid4(),
        "decision_id": decision,
        "signal_id": uuid.uuid4(),
        "user_id": user_id,
        "exchange": Exchange.BYBIT,
        "symbol": "BTCUSDT",
        "side": Side.BUY,
        "plan": Plan.PRO,
        "client_order_id": "mb-" + uuid.uuid4().hex,
    }


def placed(user_id: str) -> OrderPlaced:
    return OrderPlaced(
        **_common(user_id),
        exchange_order_id="1",
        quantity=Decimal("0.001"),
        quote_amount=Decimal("95"),
        reference_price=Decimal("95000"),
        placed_at=T,
    )


def rejected(user_id: str) -> OrderRejected:
    return OrderRejected(
        **_common(user_id),
        reason=RejectReason.INSUFFICIENT_BALANCE,
        message="available 5 USDT is below the 10 USDT minimum",
        rejected_at=T,
    )


def closed(user_id: str) -> PositionClosed:
    return PositionClosed(
        **_common(user_id),
        close_reason=CloseReason.TAKE_PROFIT,
        quantity=Decimal("0.001"),
        entry_price=Decimal("95000"),
        exit_price=Decimal("98800"),
        fees_quote=Decimal("0.19"),
        realized_pnl=Decimal("3.61"),
        closed_at=T,
    )


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[int]:
    await start_push(app.state.gateway)
    server = uvicorn_server(app, "127.0.0.1", 0)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, message="uvicorn did not start")
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        if app.state.gateway.feed is not None:
            await app.state.gateway.feed.stop()


async def frames(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(count)]


async def test_live_delivery_only_own_events_and_resume(make_app: AppFactory, bus: Bus) -> None:
    app = make_app(feed=JetStreamFeed(bus))
    async with client_for(app) as api:
        alice, alice_token = await create_user(api, "alice@example.com")
        bob, _ = await create_user(api, "bob@example.com")
    async with serving(app) as port:
        base = f"ws://127.0.0.1:{port}/ws"
        async with (
            connect(f"{base}?token={alice_token}") as ws,
            connect(f"{base}?token={ADMIN_TOKEN}") as admin_ws,
        ):
            [hello] = await frames(ws, 1)
            assert hello["type"] == "hello"
            assert hello["user_id"] == alice
            assert (await frames(admin_ws, 1))[0]["scope"] == "all"
            await bus.publish(placed(bob))
            await bus.publish(placed(alice))
            await bus.publish(rejected(alice))
            got = await frames(ws, 2)
            assert [f["type"] for f in got] == ["OrderPlaced", "OrderRejected"]
            assert all(f["data"]["user_id"] == alice for f in got)
            assert got[1]["data"]["reason"] == "INSUFFICIENT_BALANCE"
            assert got[1]["data"]["message"].startswith("available 5 USDT")
            everyone = await frames(admin_ws, 3)
            assert [f["data"]["user_id"] for f in everyone] == [bob, alice, alice]
            last_seen = got[0]["id"]  # pretend the rejection was lost with the connection
        await bus.publish(closed(alice))
        await bus.publish(placed(bob))
        async with connect(f"{base}?token={alice_token}&last_event_id={last_seen}") as ws:
            missed = await frames(ws, 3)
            assert missed[0]["type"] == "hello"
            assert [f["type"] for f in missed[1:]] == ["OrderRejected", "PositionClosed"]
            assert missed[2]["data"]["realized_pnl"] == "3.61"
            await bus.publish(placed(alice))
            [live] = await frames(ws, 1)
            assert live["type"] == "OrderPlaced"
            resume_point = missed[1]["id"]
    # a restarted gateway has an empty memory: the resume is replayed from JetStream
    restarted = make_app(feed=JetStreamFeed(bus))
    async with serving(restarted) as port:
        url = f"ws://127.0.0.1:{port}/ws?token={alice_token}&last_event_id={resume_point}"
        async with connect(url) as ws:
            replayed = await frames(ws, 3)
            assert [f["type"] for f in replayed] == ["hello", "PositionClosed", "OrderPlaced"]
            assert all(f["data"]["user_id"] == alice for f in replayed[1:])


async def test_websocket_refuses_bad_tokens_and_cursors(make_app: AppFactory, bus: Bus) -> None:
    app = make_app(feed=JetStreamFeed(bus))
    async with client_for(app) as api:
        _, token = await create_user(api, "carol@example.com")
    async with serving(app) as port:
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://127.0.0.1:{port}/ws?token=nope"):
                pass
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://127.0.0.1:{port}/ws?token={token}&last_event_id=x"):
                pass


def test_a_slow_client_is_dropped_and_never_blocks_others() -> None:
    hub = Hub(ring_size=10, all_ring_size=10, queue_size=2)
    hub.started_at(Cursor(0, 0))
    slow = hub.connect("u1")
    fast = hub.connect("u1")
    for seq in range(1, 6):
        hub.dispatch(ORDERS, seq, placed("u1"))  # synchronous: nothing here can wait
        while not fast.queue.empty():
            assert fast.queue.get_nowait() is not None
    assert slow.overflowed
    assert slow.dropped.is_set()
    assert slow.queue.get_nowait() is None  # "resume from your last id", then closed
    assert not fast.overflowed
    assert [i.seq for i in hub.recent("u1", Cursor(2, 0)) or []] == [3, 4, 5]
