"""The private-stream clients against the simulator over real WebSockets: auth, subscribe,
events, heartbeats, reconnect with backoff and resubscribe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from marketbot.contracts import Exchange, Side
from marketbot.exchanges.binance.stream import BinanceUserDataProtocol, SubscriptionLimitError
from marketbot.exchanges.bybit.stream import BybitPrivateProtocol
from marketbot.exchanges.factory import create_venue
from marketbot.exchanges.signer import LocalSigner
from marketbot.exchanges.streams import (
    PrivateStream,
    StreamEvent,
    StreamProtocol,
    StreamSettings,
)
from marketbot.exchanges.venue import OrderRequest, OrderType
from marketbot.runtime.testing import eventually
from marketbot.sim.admin import SimAdmin

pytestmark = pytest.mark.xdist_group("exchange-sim")

FAST = StreamSettings(backoff_initial_s=0.01, backoff_max_s=0.05, reply_timeout_s=5.0)


def ws(http_url: str, path: str) -> str:
    return http_url.replace("http://", "ws://", 1) + path


class Recorder:
    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.connected: list[tuple[list[str], bool]] = []

    async def on_event(self, event: StreamEvent) -> None:
        self.events.append(event)

    async def on_connected(self, users: Sequence[str], reconnected: bool) -> None:
        self.connected.append((list(users), reconnected))

    def topics(self, user_id: str | None = None) -> list[str]:
        return [e.topic for e in self.events if user_id is None or e.user_id == user_id]


@asynccontextmanager
async def running(stream: PrivateStream) -> AsyncIterator[PrivateStream]:
    task = asyncio.create_task(stream.run())
    try:
        yield stream
    finally:
        await stream.stop()
        await asyncio.wait_for(task, 10)


async def new_key(admin: SimAdmin) -> tuple[str, LocalSigner]:
    account = await admin.create_account()
    await admin.fund(account, "USDT", Decimal("1000"))
    key, secret = await admin.create_api_key(account)
    return account, LocalSigner(key, secret)


async def market_buy(exchange: Exchange, url: str, signer: LocalSigner) -> str:
    venue = create_venue(exchange, url)
    try:
        placed = await venue.place_order(
            signer,
            OrderRequest(
                symbol="BTCUSDT",
                side=Side.BUY,
                order_type=OrderType.MARKET,
                client_order_id=f"st{uuid.uuid4().hex[:20]}",
                quote_quantity=Decimal("20"),
            ),
        )
    finally:
        await venue.aclose()
    return placed.client_order_id


# ---- Bybit: one connection per user key --------------------------------------------


async def test_bybit_stream_delivers_and_resubscribes_after_a_cut(sim: Any) -> None:
    account, signer = await new_key(sim.bybit_admin)
    seen = Recorder()
    stream = PrivateStream(
        ws(sim.bybit_url, "/v5/private"),
        BybitPrivateProtocol("u-bybit", signer),
        seen.on_event,
        on_connected=seen.on_connected,
        settings=FAST,
    )
    async with running(stream):
        await asyncio.wait_for(stream.connected.wait(), 10)
        assert seen.connected == [(["u-bybit"], False)]
        link = await market_buy(Exchange.BYBIT, sim.bybit_url, signer)
        await eventually(lambda: "wallet" in seen.topics())
        assert seen.topics() == ["order", "order", "execution", "wallet"]
        assert {e.user_id for e in seen.events} == {"u-bybit"}
        assert seen.events[1].data["orderLinkId"] == link
        assert seen.events[1].data["orderStatus"] == "Filled"

        # Cut the connection: the client reconnects, authenticates and subscribes again.
        assert await sim.bybit_admin.disconnect_streams(account)
        await eventually(lambda: stream.reconnects == 1 and stream.connected.is_set())
        assert seen.connected[-1] == (["u-bybit"], True)
        assert len(stream.delays) == 1
        assert 0 <= stream.delays[0] <= FAST.backoff_initial_s
        seen.events.clear()
        await market_buy(Exchange.BYBIT, sim.bybit_url, signer)
        await eventually(lambda: "wallet" in seen.topics())
        assert "execution" in seen.topics()


async def test_bybit_heartbeat_pings_and_a_missing_pong_reconnects(sim: Any) -> None:
    _, signer = await new_key(sim.bybit_admin)
    seen = Recorder()
    quick = StreamSettings(ping_interval_s=0.05, reply_timeout_s=5.0, backoff_initial_s=0.01)
    stream = PrivateStream(
        ws(sim.bybit_url, "/v5/private"),
        BybitPrivateProtocol("u-hb", signer),
        seen.on_event,
        settings=quick,
    )
    async with running(stream):
        await eventually(lambda: stream.heartbeats >= 3)
        assert stream.reconnects == 0

    class NoPong(BybitPrivateProtocol):
        def ping_message(self, n: int) -> tuple[dict[str, Any], str]:
            message, _ = super().ping_message(n)
            return message, "never-answered"

    deaf = StreamSettings(ping_interval_s=0.05, reply_timeout_s=0.2, backoff_initial_s=0.01)
    stream = PrivateStream(
        ws(sim.bybit_url, "/v5/private"), NoPong("u-deaf", signer), seen.on_event, settings=deaf
    )
    async with running(stream):
        await eventually(lambda: stream.reconnects >= 1)
    assert "no reply" in stream.last_error


async def test_a_refused_auth_backs_off_exponentially(sim: Any) -> None:
    account = await sim.bybit_admin.create_account()
    key, _ = await sim.bybit_admin.create_api_key(account)
    slept: list[float] = []

    async def no_wait(delay: float) -> None:
        slept.append(delay)
        await asyncio.sleep(0)

    stream = PrivateStream(
        ws(sim.bybit_url, "/v5/private"),
        BybitPrivateProtocol("u-bad", LocalSigner(key, "0" * 36)),
        Recorder().on_event,
        settings=StreamSettings(backoff_initial_s=1.0, backoff_max_s=8.0),
        sleep=no_wait,
        jitter=lambda: 1.0,
    )
    async with running(stream):
        await eventually(lambda: len(slept) >= 6)
    assert slept[:6] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert not stream.connected.is_set()
    assert "auth refused" in stream.last_error
    assert "Params Error" in stream.last_error


# ---- Binance: many accounts on one connection ----------------------------------------


async def test_binance_carries_many_accounts_and_resubscribes_them_all(sim: Any) -> None:
    first_account, first = await new_key(sim.binance_admin)
    _, second = await new_key(sim.binance_admin)
    seen = Recorder()
    protocol = BinanceUserDataProtocol()
    await protocol.add("u-one", first)
    stream = PrivateStream(
        ws(sim.binance_url, "/ws-api/v3"),
        protocol,
        seen.on_event,
        on_connected=seen.on_connected,
        settings=FAST,
    )
    async with running(stream):
        await asyncio.wait_for(stream.connected.wait(), 10)
        await protocol.add("u-two", second)  # subscribed at once on the open connection
        assert protocol.live() == ["u-one", "u-two"]
        assert len((await sim.binance_admin.streams())["connections"]) >= 1

        await market_buy(Exchange.BINANCE, sim.binance_url, second)
        await eventually(lambda: "outboundAccountPosition" in seen.topics("u-two"))
        assert seen.topics() == ["executionReport", "executionReport", "outboundAccountPosition"]
        assert [e.data.get("x") for e in seen.events[:2]] == ["NEW", "TRADE"]

        # Cut the one connection: both accounts are subscribed again on the new one.
        assert await sim.binance_admin.disconnect_streams(first_account)
        await eventually(lambda: stream.reconnects == 1 and stream.connected.is_set())
        assert sorted(seen.connected[-1][0]) == ["u-one", "u-two"]
        assert seen.connected[-1][1] is True
        seen.events.clear()
        await market_buy(Exchange.BINANCE, sim.binance_url, first)
        await eventually(lambda: "outboundAccountPosition" in seen.topics("u-one"))
        assert seen.topics("u-two") == []


async def test_binance_one_refused_account_does_not_block_the_others(sim: Any) -> None:
    _, good = await new_key(sim.binance_admin)
    account = await sim.binance_admin.create_account()
    key, _ = await sim.binance_admin.create_api_key(account)
    protocol = BinanceUserDataProtocol(max_subscriptions=2)
    await protocol.add("u-good", good)
    await protocol.add("u-bad", LocalSigner(key, "0" * 64))
    with pytest.raises(SubscriptionLimitError):
        await protocol.add("u-third", good)
    stream = PrivateStream(
        ws(sim.binance_url, "/ws-api/v3"), protocol, Recorder().on_event, settings=FAST
    )
    async with running(stream):
        await asyncio.wait_for(stream.connected.wait(), 10)
        assert protocol.live() == ["u-good"]
        assert protocol.refused["u-bad"].startswith("-1022")
        await protocol.remove("u-good")
        assert protocol.live() == []


def test_backoff_is_capped_and_jittered() -> None:
    stream = PrivateStream(
        "ws://unused",
        BinanceUserDataProtocol(),
        Recorder().on_event,
        settings=StreamSettings(backoff_initial_s=0.5, backoff_max_s=30.0),
        jitter=lambda: 0.5,
    )
    assert [stream.backoff_s(n) for n in (1, 2, 3, 7, 8, 20)] == [
        0.25,
        0.5,
        1.0,
        15.0,
        15.0,
        15.0,
    ]


def test_the_protocols_are_stream_protocols() -> None:
    protocols: list[StreamProtocol] = [
        BinanceUserDataProtocol(),
        BybitPrivateProtocol("u", LocalSigner("k", "s")),
    ]
    assert [p.frame_pings for p in protocols] == [True, False]
