"""The whole service on real NATS (JetStream) + PostgreSQL + the exchange simulator.

SignalReceived -> DecisionMade -> one OrderRequested per eligible user, in plan order;
redelivery adds nothing; ineligible users get nothing; HOLD requests nothing; Bybit down ->
Binance ticker; a slow provider degrades the decision instead of blocking it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from marketbot.contracts import (
    DecisionAction,
    DecisionMade,
    Event,
    Exchange,
    OrderRequested,
    Plan,
    SignalAction,
    SignalReceived,
    SubscriptionStatus,
    TradingMode,
    decode,
)
from marketbot.decision.adapters import repository
from marketbot.decision.app import (
    MIGRATIONS,
    DecisionService,
    build_market_data,
    rebuild_eligibility,
)
from marketbot.decision.domain.policy import PolicySettings
from marketbot.decision.settings import DecisionSettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import SystemClock
from marketbot.runtime.db import migrate_service
from marketbot.runtime.testing import eventually
from marketbot.sim.testing import RunningSim

from .helpers import user_events

pytestmark = pytest.mark.slow


async def stream_events(bus: Bus, stream: str) -> list[Event]:
    """Every message in a stream, in stream order."""
    info = await bus.js.stream_info(bus.stream(stream))
    if info.state.messages == 0:
        return []
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg(bus.stream(stream), seq)
        assert msg.data is not None
        event = decode(msg.data)
        assert isinstance(event, Event)
        out.append(event)
    return out


async def stream_consumer_idle(bus: Bus, stream: str, durable: str) -> bool:
    info = await bus.js.consumer_info(bus.stream(stream), bus.namespace.durable(durable))
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def stream_count(bus: Bus, stream: str) -> int:
    return int((await bus.js.stream_info(bus.stream(stream))).state.messages)


def make_settings(sim: RunningSim, bus: Bus, **overrides: Any) -> DecisionSettings:
    values: dict[str, Any] = {
        "bus_prefix": bus.namespace.prefix,
        "fear_greed_url": sim.market_url,
        "coingecko_url": sim.market_url,
        "bybit_url": sim.bybit_url,
        "binance_url": sim.binance_url,
        "fear_greed_timeout_s": 1.0,
        "coingecko_timeout_s": 1.0,
        "ticker_timeout_s": 1.0,
        # the simulator's seeded market is what it is: act on any confidence above 10
        "policy": PolicySettings(threshold=Decimal(10)),
    }
    values.update(overrides)
    return DecisionSettings(**values)


Start = Callable[..., Any]


@pytest.fixture
async def start(
    sim: RunningSim, bus: Bus, pg_pool: asyncpg.Pool, pg_schema: str
) -> AsyncIterator[Start]:
    """Start the decision service (settings overridable); stopped after the test."""
    await migrate_service(pg_pool, pg_schema, "decision", MIGRATIONS)
    running: list[tuple[DecisionService, Any]] = []

    async def go(**overrides: Any) -> DecisionService:
        settings = make_settings(sim, bus, **overrides)
        market = build_market_data(settings, SystemClock())
        service = DecisionService(settings, bus, pg_pool, market.service, SystemClock())
        await service.start()
        running.append((service, market))
        return service

    try:
        yield go
    finally:
        for service, market in running:
            await service.stop()
            await market.aclose()
        await sim.bybit_admin.clear_faults()
        await sim.binance_admin.clear_faults()
        await sim.market_admin.clear_faults()


ELIGIBLE = {"pro-1": Plan.PRO, "pro-2": Plan.PRO, "flex-1": Plan.FLEX, "trial-1": Plan.TRIAL}


def population() -> list[Event]:
    """Four eligible users (one on Binance) and one of every kind of ineligible user."""
    future = datetime.now(UTC) + timedelta(days=7)
    past = datetime.now(UTC) - timedelta(hours=1)
    events: list[Event] = []
    events += user_events("trial-1", plan=Plan.TRIAL, expires_at=future)
    events += user_events("flex-1", plan=Plan.FLEX, exchange=Exchange.BINANCE)
    events += user_events("pro-2", plan=Plan.PRO)
    events += user_events("pro-1", plan=Plan.PRO)
    events += user_events("x-inactive", status=SubscriptionStatus.INACTIVE)
    events += user_events("x-trial-expired", plan=Plan.TRIAL, expires_at=past)
    events += user_events("x-unverified", key="stored")
    events += user_events("x-revoked", key="revoked")
    events += user_events("x-other-exchange", key_exchange=Exchange.BINANCE)
    events += user_events("x-paused", mode=TradingMode.PAUSED)
    events += user_events("x-no-key", key="none")
    return events


async def seed(bus: Bus, pool: asyncpg.Pool) -> None:
    events = population()
    for event in events:
        await bus.publish(event)
    users = len({e.user_id for e in events if hasattr(e, "user_id")})  # type: ignore[attr-defined]
    keys = len({e.credential_id for e in events if hasattr(e, "credential_id")})  # type: ignore[attr-defined]

    async def caught_up() -> bool:
        n_users = await pool.fetchval("SELECT count(*) FROM users WHERE risk_level IS NOT NULL")
        n_keys = await pool.fetchval("SELECT count(*) FROM api_keys")
        revoked = await pool.fetchval("SELECT count(*) FROM api_keys WHERE status = 'REVOKED'")
        return bool(n_users == users and n_keys == keys and revoked == 1)

    await eventually(caught_up, message="projection never caught up")


async def live_price(sim: RunningSim, symbol: str = "BTCUSDT") -> Decimal:
    return await sim.bybit_admin.price(symbol)


def a_signal(price: Decimal | None, **fields: Any) -> SignalReceived:
    sid = uuid.uuid4()
    now = datetime.now(UTC)
    return SignalReceived(
        event_id=sid,
        occurred_at=now,
        correlation_id=str(sid),
        signal_id=sid,
        source="tradingview",
        symbol=fields.pop("symbol", "BTCUSDT"),
        action=fields.pop("action", SignalAction.BUY),
        price=price,
        alert_time=now,
        received_at=now,
        stop_loss_percent=Decimal("2"),
        take_profit_percent=Decimal("5"),
        **fields,
    )


async def the_decision(bus: Bus, signal: SignalReceived) -> DecisionMade:
    async def found() -> DecisionMade | None:
        for event in await stream_events(bus, "DECISIONS"):
            if isinstance(event, DecisionMade) and event.signal_id == signal.signal_id:
                return event
        return None

    decision = await eventually(found, message="no DecisionMade")
    assert decision is not None
    return decision


async def fanout_done(pool: asyncpg.Pool, decision: DecisionMade) -> None:
    await eventually(
        lambda: pool.fetchval(
            "SELECT completed_at IS NOT NULL FROM fanouts WHERE decision_id = $1",
            decision.decision_id,
        ),
        message="fan-out never completed",
    )


async def test_a_signal_yields_a_decision_and_one_request_per_eligible_user_in_plan_order(
    start: Start, bus: Bus, pg_pool: asyncpg.Pool, sim: RunningSim
) -> None:
    await start()
    await seed(bus, pg_pool)
    signal = a_signal(await live_price(sim))
    await bus.publish(signal)

    decision = await the_decision(bus, signal)
    assert decision.action is DecisionAction.BUY, [r.text for r in decision.reasons]
    assert decision.context.missing == ()
    assert decision.context.ticker_exchange is Exchange.BYBIT
    assert decision.context.fear_greed is not None
    assert decision.context.top100_up_share is not None
    assert decision.signal_price == signal.price
    assert {r.code for r in decision.reasons} >= {"signal", "fear_greed", "price_deviation"}
    await fanout_done(pg_pool, decision)

    requests = [e for e in await stream_events(bus, "ORDER_REQUESTS")]
    assert all(isinstance(r, OrderRequested) for r in requests)
    by_user = {r.user_id: r for r in requests if isinstance(r, OrderRequested)}
    assert len(requests) == len(by_user) == len(ELIGIBLE)
    assert {u: r.plan for u, r in by_user.items()} == ELIGIBLE  # the ineligible got nothing
    plans = [r.plan for r in requests if isinstance(r, OrderRequested)]
    assert plans == [Plan.PRO, Plan.PRO, Plan.FLEX, Plan.TRIAL]  # stream order = plan order
    flex = by_user["flex-1"]
    assert flex.exchange is Exchange.BINANCE
    assert flex.not_before == decision.decided_at + timedelta(seconds=1)
    assert by_user["trial-1"].not_before == decision.decided_at + timedelta(seconds=3)
    # a request's age counts from when it became runnable, not from the decision
    assert all(r.requested_at == r.not_before for r in by_user.values())
    assert by_user["trial-1"].age_s(decision.decided_at + timedelta(seconds=3)) == 0
    assert by_user["pro-1"].correlation_id == str(signal.signal_id)
    # the audit trail: the decision as published is stored
    stored = await pg_pool.fetchval(
        "SELECT payload->>'confidence' FROM decisions WHERE signal_id = $1", signal.signal_id
    )
    assert int(stored) == decision.confidence


async def test_a_redelivered_signal_or_decision_adds_no_request(
    start: Start, bus: Bus, pg_pool: asyncpg.Pool, sim: RunningSim
) -> None:
    await start()
    await seed(bus, pg_pool)
    signal = a_signal(await live_price(sim))
    await bus.publish(signal)
    decision = await the_decision(bus, signal)
    await fanout_done(pg_pool, decision)
    assert await stream_count(bus, "ORDER_REQUESTS") == len(ELIGIBLE)

    # the same signal delivered again past JetStream's de-duplication (another message id),
    # and the gateway sending the same signal as a new event: no second decision
    await bus.publish_raw(
        bus.subject(signal.subject()), signal.to_json(), "redelivery-1", signal.type
    )
    again = signal.model_copy(update={"event_id": uuid.uuid4()})
    await bus.publish(again)

    async def both_processed() -> bool:
        processed = await pg_pool.fetchval(
            "SELECT count(*) FROM processed_events WHERE consumer = 'decision-signals'"
        )
        return bool(processed == 2)

    await eventually(both_processed, message="redeliveries never processed")
    decisions = [e for e in await stream_events(bus, "DECISIONS") if isinstance(e, DecisionMade)]
    assert [d.event_id for d in decisions] == [decision.event_id]

    # the decision delivered again after a crash between publishing and marking it done:
    # the same request ids are published again and JetStream drops every one
    await pg_pool.execute("UPDATE fanouts SET completed_at = NULL")
    await bus.publish_raw(
        bus.subject(decision.subject()), decision.to_json(), "redelivery-2", decision.type
    )
    await fanout_done(pg_pool, decision)
    # and delivered once more after it was marked done: skipped
    await bus.publish_raw(
        bus.subject(decision.subject()), decision.to_json(), "redelivery-3", decision.type
    )
    await eventually(
        lambda: stream_consumer_idle(bus, "DECISIONS", "decision-fanout"),
        message="fan-out consumer never idle",
    )
    assert await stream_count(bus, "ORDER_REQUESTS") == len(ELIGIBLE)


async def test_a_fan_out_interrupted_by_a_crash_is_finished_right_after_the_restart(
    start: Start, bus: Bus, pg_pool: asyncpg.Pool, sim: RunningSim
) -> None:
    """The crash left a decision recorded and its recipients frozen, nothing published and
    the DECISIONS message not yet due for redelivery: the restarted service publishes every
    request on start, without waiting for the fan-out's ack wait."""
    first = await start()
    await seed(bus, pg_pool)
    signal = a_signal(await live_price(sim))
    await bus.publish(signal)
    decision = await the_decision(bus, signal)
    await fanout_done(pg_pool, decision)
    recipients = await repository.freeze_recipients(pg_pool, decision, None)
    assert recipients is not None
    await first.stop()
    # what the crash left behind: another decision, frozen but never published
    crashed_signal = uuid.uuid4()
    crashed = decision.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "decision_id": uuid.uuid4(),
            "signal_id": crashed_signal,
            "correlation_id": str(crashed_signal),
            "decided_at": datetime.now(UTC),
        }
    )
    async with pg_pool.acquire() as conn:
        assert await repository.record_decision(conn, crashed)
    await repository.freeze_recipients(pg_pool, crashed, recipients)
    before = await stream_count(bus, "ORDER_REQUESTS")

    await start(fanout_ack_wait_s=30.0)  # the redelivery alone would come much later
    await fanout_done(pg_pool, crashed)
    resumed = [
        r
        for r in await stream_events(bus, "ORDER_REQUESTS")
        if isinstance(r, OrderRequested) and r.decision_id == crashed.decision_id
    ]
    assert sorted(r.user_id for r in resumed) == sorted(ELIGIBLE)
    assert await stream_count(bus, "ORDER_REQUESTS") == before + len(ELIGIBLE)


async def test_hold_requests_nothing(
    start: Start, bus: Bus, pg_pool: asyncpg.Pool, sim: RunningSim
) -> None:
    await start()
    await seed(bus, pg_pool)
    signal = a_signal(await live_price(sim) * Decimal("1.10"))  # 10 % off the live price
    await bus.publish(signal)
    decision = await the_decision(bus, signal)
    assert decision.action is DecisionAction.HOLD
    assert "price_deviation" in {r.code for r in decision.reasons if r.code == "price_deviation"}
    assert any(r.code == "hold" for r in decision.reasons)
    await fanout_done(pg_pool, decision)
    assert await stream_count(bus, "ORDER_REQUESTS") == 0


async def test_bybit_down_uses_the_binance_ticker(
    start: Start, bus: Bus, pg_pool: asyncpg.Pool, sim: RunningSim
) -> None:
    await sim.bybit_admin.set_fault("http_5xx", rate=1.0, path="/v5/market/*")
    await start()
    signal = a_signal(None)
    await bus.publish(signal)
    decision = await the_decision(bus, signal)
    assert decision.context.ticker_exchange is Exchange.BINANCE
    assert decision.context.ticker_price == await sim.binance_admin.price("BTCUSDT")
    assert "ticker" not in decision.context.missing


async def test_a_slow_provider_degrades_the_decision_instead_of_blocking_it(
    start: Start, bus: Bus, pg_pool: asyncpg.Pool, sim: RunningSim
) -> None:
    await sim.market_admin.set_fault("latency", rate=1.0, latency_ms=3000, path="/fng/")
    await start(fear_greed_timeout_s=0.3)
    signal = a_signal(None)
    began = datetime.now(UTC)
    await bus.publish(signal)
    decision = await the_decision(bus, signal)
    assert decision.decided_at - began < timedelta(seconds=2.5)
    assert decision.context.missing == ("fear_greed",)
    assert decision.context.fear_greed is None
    missing = next(r for r in decision.reasons if r.code == "fear_greed_missing")
    assert missing.contribution == -PolicySettings().missing_penalty
    assert any("timeout" in e for e in decision.context.errors)


async def test_rebuild_eligibility_replays_the_same_projection(
    start: Start, bus: Bus, pg_pool: asyncpg.Pool
) -> None:
    service = await start()
    await seed(bus, pg_pool)
    query = "SELECT user_id, plan, preferred_exchange, subscription_status FROM users ORDER BY 1"
    before = [tuple(r) for r in await pg_pool.fetch(query)]
    keys_before = [
        tuple(r)
        for r in await pg_pool.fetch("SELECT credential_id, status FROM api_keys ORDER BY 1")
    ]
    await service.stop()
    users = await rebuild_eligibility(bus, pg_pool, timeout=30)
    assert users == len(before)
    assert [tuple(r) for r in await pg_pool.fetch(query)] == before
    assert [
        tuple(r)
        for r in await pg_pool.fetch("SELECT credential_id, status FROM api_keys ORDER BY 1")
    ] == keys_before
