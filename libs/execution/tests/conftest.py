"""Integration harness: the real simulator over HTTP, real NATS, real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from marketbot.contracts import (
    DEFAULT_PLANS,
    Event,
    Exchange,
    OrderRequested,
    Plan,
    RiskLevel,
    Side,
    client_order_id_for,
    decode,
    request_id_for,
)
from marketbot.exchanges.factory import create_venue
from marketbot.exchanges.signer import LocalSigner, Signer
from marketbot.exchanges.venue import Venue
from marketbot.execution.app import RunningExecutor, start_executor
from marketbot.execution.repository import MIGRATIONS
from marketbot.execution.settings import ExecutorSettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.db import create_pool, migrate_service
from marketbot.sim.admin import SimAdmin
from marketbot.sim.testing import RunningSim


def test_settings(**overrides: Any) -> ExecutorSettings:
    values: dict[str, Any] = {
        "service_name": "executor-test",
        "max_request_age_s": 60.0,
        "ack_wait_s": 5.0,
        "idle_poll_s": 0.02,
        "unknown_settle_s": 6.0,
        "unknown_poll_s": 0.2,
        "retry_backoff_s": 0.1,
        "track_interval_s": 0.2,
        "track_max_interval_s": 0.5,
        "outbox_relay_s": 0.5,
        "tier_concurrency": 16,
        # The polling path (what runs while an account's stream is down) unless a test
        # turns the private streams on (test_streams_lifecycle.py).
        "private_streams": False,
    }
    values.update(overrides)
    values.setdefault("order_lease_s", values["ack_wait_s"])  # a killed owner's lease ends fast
    return ExecutorSettings(**values)


@dataclass
class EventLog:
    """Every order outcome published on the bus, decoded, in arrival order."""

    events: list[Event] = field(default_factory=list)

    def of(self, kind: type[Event], **where: Any) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and all(getattr(e, k) == v for k, v in where.items())
        ]


@dataclass
class User:
    user_id: str
    account_id: str
    signer: LocalSigner


@dataclass
class Harness:
    exchange: Exchange
    bus: Bus
    pool: asyncpg.Pool
    admin: SimAdmin
    url: str
    log: EventLog
    users: dict[str, User] = field(default_factory=dict)
    running: list[RunningExecutor] = field(default_factory=list)
    venues: list[Venue] = field(default_factory=list)

    def signers(self, user_id: str, exchange: Exchange) -> Signer:
        return self.users[user_id].signer

    def venue(self) -> Venue:
        venue = create_venue(self.exchange, self.url)
        self.venues.append(venue)
        return venue

    async def add_user(self, funds: Decimal = Decimal(1000), **balances: Decimal) -> User:
        account_id = await self.admin.create_account()
        key, secret = await self.admin.create_api_key(account_id)
        await self.admin.fund(account_id, "USDT", funds)
        for asset, amount in balances.items():
            await self.admin.fund(account_id, asset, amount)
        user = User(f"u-{uuid.uuid4().hex[:10]}", account_id, LocalSigner(key, secret))
        self.users[user.user_id] = user
        return user

    async def start(
        self,
        bus: Bus | None = None,
        venue: Any = None,
        signers: Any = None,
        clock: Any = None,
        **overrides: Any,
    ) -> RunningExecutor:
        running = await start_executor(
            bus=bus or self.bus,
            pool=self.pool,
            venue=venue or self.venue(),
            signers=signers or self.signers,
            settings=test_settings(**overrides),
            clock=clock,
        )
        self.running.append(running)
        return running

    def request(
        self,
        user: User,
        *,
        plan: Plan = Plan.PRO,
        side: Side = Side.BUY,
        symbol: str = "BTCUSDT",
        risk: RiskLevel = RiskLevel.MEDIUM,
        delay_s: float = 0.0,
        age_s: float = 0.0,
        sl: str | None = "2",
        tp: str | None = "3",
        decision_id: uuid.UUID | None = None,
        reference_price: Decimal | None = None,
    ) -> OrderRequested:
        decision = decision_id or uuid.uuid4()
        now = datetime.now(UTC) - timedelta(seconds=age_s)
        return OrderRequested(
            event_id=request_id_for(decision, user.user_id),
            occurred_at=now,
            correlation_id=str(decision),
            request_id=request_id_for(decision, user.user_id),
            decision_id=decision,
            signal_id=decision,
            user_id=user.user_id,
            exchange=self.exchange,
            symbol=symbol,
            side=side,
            plan=plan,
            priority={Plan.PRO: 1, Plan.FLEX: 2, Plan.TRIAL: 3}[plan],
            not_before=now + timedelta(seconds=delay_s),
            risk_level=risk,
            client_order_id=client_order_id_for(decision, user.user_id),
            stop_loss_percent=Decimal(sl) if sl else None,
            take_profit_percent=Decimal(tp) if tp else None,
            reference_price=reference_price,
            requested_at=now,
            commission_rate=DEFAULT_PLANS[plan].commission_rate,
        )

    async def publish(self, requests: Iterable[OrderRequested]) -> None:
        for request in requests:
            await self.bus.publish(request)

    async def sim_orders(self, user: User) -> list[dict[str, Any]]:
        return await self.admin.orders(user.account_id)

    async def entries(self, user: User) -> list[dict[str, Any]]:
        return [o for o in await self.sim_orders(user) if o["client_order_id"].startswith("mb-")]


async def eventually_events(
    log: EventLog, kind: type[Event], count: int, timeout: float = 30.0, **where: Any
) -> list[Any]:
    from marketbot.runtime.testing import eventually

    await eventually(
        lambda: len(log.of(kind, **where)) >= count,
        timeout=timeout,
        message=f"{count} {kind.__name__} events",
    )
    return log.of(kind, **where)


def _collector(log: EventLog) -> Callable[[Any], Any]:
    async def on_message(msg: Any) -> None:
        with contextlib.suppress(Exception):
            event = decode(msg.data)
            if isinstance(event, Event):
                log.events.append(event)

    return on_message


@pytest.fixture
async def sim_clean(sim: RunningSim) -> AsyncIterator[RunningSim]:
    """Limits off, no faults, seed prices; restored to limits on afterwards."""
    await sim.reset()
    await sim.bybit_admin.set_limits(False)
    await sim.binance_admin.set_limits(False)
    yield sim
    for admin in (sim.bybit_admin, sim.binance_admin):
        await admin.clear_faults()
        await admin.set_limits(True, ban_seconds=120)


async def _harness(
    exchange: Exchange,
    sim: RunningSim,
    bus: Bus,
    database_url: str,
    pg_schema: str,
    pg_pool: asyncpg.Pool,
) -> AsyncIterator[Harness]:
    await migrate_service(pg_pool, pg_schema, "execution", MIGRATIONS)
    pool = await create_pool(database_url, pg_schema, max_size=20)
    log = EventLog()
    sub = await bus.nc.subscribe(bus.subject(f"orders.{exchange.value}.>"), cb=_collector(log))
    admin = sim.bybit_admin if exchange is Exchange.BYBIT else sim.binance_admin
    url = sim.bybit_url if exchange is Exchange.BYBIT else sim.binance_url
    harness = Harness(exchange, bus, pool, admin, url, log)
    try:
        yield harness
    finally:
        for running in harness.running:
            await running.stop()
        for venue in harness.venues:
            await venue.aclose()
        await sub.unsubscribe()
        await pool.close()


@pytest.fixture
async def bybit(
    sim_clean: RunningSim, bus: Bus, database_url: str, pg_schema: str, pg_pool: asyncpg.Pool
) -> AsyncIterator[Harness]:
    async for h in _harness(Exchange.BYBIT, sim_clean, bus, database_url, pg_schema, pg_pool):
        yield h


@pytest.fixture
async def binance(
    sim_clean: RunningSim, bus: Bus, database_url: str, pg_schema: str, pg_pool: asyncpg.Pool
) -> AsyncIterator[Harness]:
    async for h in _harness(Exchange.BINANCE, sim_clean, bus, database_url, pg_schema, pg_pool):
        yield h


@pytest.fixture(params=[Exchange.BYBIT, Exchange.BINANCE], ids=["bybit", "binance"])
async def venue_harness(
    request: pytest.FixtureRequest,
    sim_clean: RunningSim,
    bus: Bus,
    database_url: str,
    pg_schema: str,
    pg_pool: asyncpg.Pool,
) -> AsyncIterator[Harness]:
    async for h in _harness(request.param, sim_clean, bus, database_url, pg_schema, pg_pool):
        yield h


async def settle(seconds: float) -> None:
    """A bounded pause used only to prove that something does NOT happen."""
    await asyncio.sleep(seconds)
