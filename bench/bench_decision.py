"""Fan-out of one decision to 10,000 eligible users: time to publish every OrderRequested.

The eligible-user projection is seeded directly (COPY), then ``handlers.fan_out`` runs as the
fan-out consumer runs it: one query for the candidates, the eligibility rule, the recipients
frozen in PostgreSQL, and the requests published PRO -> FLEX -> TRIAL with every JetStream
acknowledgement awaited (bounded in flight, Nats-Msg-Id = request id). The figure is the
median of three rounds (a fresh decision each round); the target is 1 s. A redelivered
decision (same ids, recipients already frozen, JetStream answering ``duplicate``) is timed too.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from marketbot.contracts import (
    BusNamespace,
    DecisionAction,
    DecisionMade,
    MarketContext,
    PlanTable,
    SignalAction,
    derived_id,
)
from marketbot.decision import handlers
from marketbot.decision.adapters.publisher import BatchPublisher
from marketbot.decision.app import MIGRATIONS
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import SystemClock
from marketbot.runtime.db import create_pool, migrate_service

USERS = 10_000
ROUNDS = 3
TARGET_S = 1.0


def decision(now: datetime) -> DecisionMade:
    signal_id = uuid.uuid4()
    decision_id = derived_id("decision", signal_id)
    return DecisionMade(
        event_id=decision_id,
        occurred_at=now,
        correlation_id=str(signal_id),
        decision_id=decision_id,
        signal_id=signal_id,
        symbol="BTCUSDT",
        signal_action=SignalAction.BUY,
        action=DecisionAction.BUY,
        confidence=70,
        reasons=(),
        context=MarketContext(),
        reference_price=Decimal("95000"),
        stop_loss_percent=Decimal("2"),
        take_profit_percent=Decimal("4"),
        decided_at=now,
    )


async def seed(pool, n: int) -> None:  # type: ignore[no-untyped-def]
    plans = ["PRO"] * (n // 5) + ["FLEX"] * (n * 3 // 10) + ["TRIAL"] * (n - n // 5 - n * 3 // 10)
    now = datetime.now(UTC)
    users = [
        (
            f"user-{i:05d}",
            plan,
            "ACTIVE",
            now + timedelta(days=30) if plan == "TRIAL" else None,
            now,
            "bybit" if i % 3 else "binance",
            "medium",
            "PERSONAL",
            Decimal("100"),
            "USDT",
            now,
        )
        for i, plan in enumerate(plans)
    ]
    keys = [(uuid.uuid4(), u[0], u[5], "VERIFIED", True, None, now) for u in users]
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "users",
            records=users,
            columns=[
                "user_id",
                "plan",
                "subscription_status",
                "expires_at",
                "subscription_changed_at",
                "preferred_exchange",
                "risk_level",
                "trading_mode",
                "allocation",
                "allocation_currency",
                "preferences_changed_at",
            ],
        )
        await conn.copy_records_to_table(
            "api_keys",
            records=keys,
            columns=[
                "credential_id",
                "user_id",
                "exchange",
                "status",
                "can_trade",
                "key_expires_at",
                "changed_at",
            ],
        )


async def run() -> list[dict]:  # type: ignore[type-arg]
    nats_url = os.environ["NATS_URL"]
    database_url = os.environ["DATABASE_URL"]
    namespace = BusNamespace(f"bench{uuid.uuid4().hex[:8]}")
    schema = f"bench_decision_{uuid.uuid4().hex[:8]}"
    bus = await Bus.connect(nats_url, "bench-decision", namespace)
    await bus.provision()
    pool = await create_pool(database_url, schema, max_size=4)
    try:
        await migrate_service(pool, schema, "decision", MIGRATIONS)
        await seed(pool, USERS)
        publisher = BatchPublisher(bus)
        plans = PlanTable()
        clock = SystemClock()
        times: list[float] = []
        redelivery: list[float] = []
        for _ in range(ROUNDS):
            made = decision(datetime.now(UTC))
            started = time.perf_counter()
            result = await handlers.fan_out(
                made, pool=pool, publish=publisher.publish_all, plans=plans, clock=clock
            )
            times.append(time.perf_counter() - started)
            assert result.requests == USERS, result
            await pool.execute("UPDATE fanouts SET completed_at = NULL")  # as after a crash
            started = time.perf_counter()
            again = await handlers.fan_out(
                made, pool=pool, publish=publisher.publish_all, plans=plans, clock=clock
            )
            redelivery.append(time.perf_counter() - started)
            assert again.duplicates == USERS, again
        info = await bus.js.stream_info(bus.stream("ORDER_REQUESTS"))
        assert info.state.messages == USERS * ROUNDS, info.state.messages  # no duplicates
        median = statistics.median(times)
        median_again = statistics.median(redelivery)
        return [
            {
                "name": f"decision: fan-out to {USERS:,} users",
                "value": median,
                "unit": "s",
                "baseline": f"target {TARGET_S:g} s",
                "ratio": median / TARGET_S,
            },
            {
                "name": "decision: fan-out throughput",
                "value": USERS / median,
                "unit": "requests/s",
                "baseline": f"{USERS / TARGET_S:,.0f}/s needed",
                "ratio": (USERS / median) / (USERS / TARGET_S),
            },
            {
                "name": "decision: redelivered fan-out (all duplicates)",
                "value": median_again,
                "unit": "s",
                "baseline": f"target {TARGET_S:g} s",
                "ratio": median_again / TARGET_S,
            },
        ]
    finally:
        for spec in namespace.streams():
            with contextlib.suppress(Exception):
                await bus.js.delete_stream(spec.name)
        await bus.close()
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()
