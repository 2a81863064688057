"""Ledger: live projection throughput, rebuild time for 100,000 events, query latency.

- projection: 20,000 order events (5,000 operations: requested, placed, filled, closed)
  published first, then the live ledger (durable consumers, exactly-once batches, outbox
  publishing every status change and commission) applies them; events/s from start to drained;
- rebuild: 100,000 events (25,000 operations) replayed from the streams into fresh tables;
- queries: a user with 10,000 operations, OperationsQuery over NATS request/reply (page 1
  and random deep pages), p50 / p99 against the 20 ms target.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from marketbot.contracts import (
    DEFAULT_PLANS,
    BusNamespace,
    CloseReason,
    Event,
    Exchange,
    Fill,
    OrderFilled,
    OrderPlaced,
    OrderRequested,
    Plan,
    PositionClosed,
    RiskLevel,
    Side,
    client_order_id_for,
    derived_id,
    request_id_for,
)
from marketbot.contracts.ledger import (
    OperationsPage,
    OperationsQuery,
    StatementQuery,
    StatementReply,
)
from marketbot.ledger.adapters.queries import checksums
from marketbot.ledger.api import LedgerQueries
from marketbot.ledger.app import MIGRATIONS, Ledger
from marketbot.ledger.rebuild import rebuild
from marketbot.ledger.settings import LedgerSettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.db import create_pool, migrate_service

T0 = datetime(2026, 11, 1, tzinfo=UTC)
LIVE_OPS = 5_000
REBUILD_OPS = 25_000
WHALE_OPS = 10_000
QUERIES = 300
PUBLISH_CONCURRENCY = 256


def operation_events(n: int, user: str) -> list[Event]:
    signal_id = derived_id("bench-signal", n)
    decision_id = derived_id("decision", signal_id)
    request_id = request_id_for(decision_id, user)
    start = T0 + timedelta(minutes=n)
    plan = (Plan.PRO, Plan.FLEX, Plan.TRIAL)[n % 3]
    qty, entry = Decimal("0.01"), Decimal("95000")
    exit_price = entry + Decimal(n % 200 - 80)
    common = {
        "correlation_id": str(signal_id),
        "request_id": request_id,
        "decision_id": decision_id,
        "signal_id": signal_id,
        "user_id": user,
        "exchange": Exchange.BYBIT,
        "symbol": "BTCUSDT",
        "side": Side.BUY,
        "plan": plan,
        "client_order_id": client_order_id_for(decision_id, user),
    }
    fee = Decimal("0.095")
    return [
        OrderRequested(
            event_id=derived_id("r", request_id),
            occurred_at=start,
            **common,
            priority=1,
            not_before=start,
            risk_level=RiskLevel.MEDIUM,
            requested_at=start,
            commission_rate=DEFAULT_PLANS[plan].commission_rate,
        ),
        OrderPlaced(
            event_id=derived_id("p", request_id),
            occurred_at=start,
            **common,
            exchange_order_id=f"x{n}",
            quantity=qty,
            quote_amount=qty * entry,
            reference_price=entry,
            placed_at=start + timedelta(seconds=1),
        ),
        OrderFilled(
            event_id=derived_id("f", request_id),
            occurred_at=start,
            **common,
            exchange_order_id=f"x{n}",
            fills=(
                Fill(
                    trade_id="1",
                    price=entry,
                    quantity=qty,
                    fee=fee,
                    fee_asset="USDT",
                    fee_quote=fee,
                ),
            ),
            filled_quantity=qty,
            average_price=entry,
            quote_quantity=qty * entry,
            fees_quote=fee,
            filled_at=start + timedelta(seconds=2),
        ),
        PositionClosed(
            event_id=derived_id("c", request_id),
            occurred_at=start,
            **common,
            close_reason=CloseReason.SIGNAL,
            quantity=qty,
            entry_price=entry,
            exit_price=exit_price,
            fees_quote=2 * fee,
            realized_pnl=(exit_price - entry) * qty - 2 * fee,
            closed_at=start + timedelta(minutes=30),
        ),
    ]


def dataset(operations: int, whale_ops: int) -> list[Event]:
    events: list[Event] = []
    for n in range(operations):
        user = "whale" if n < whale_ops else f"user{n % 500}"
        events.extend(operation_events(n, user))
    return events


async def publish_all(bus: Bus, events: list[Event]) -> float:
    started = time.perf_counter()
    queue: asyncio.Queue[Event] = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)

    async def worker() -> None:
        while not queue.empty():
            await bus.publish(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(PUBLISH_CONCURRENCY)))
    return time.perf_counter() - started


async def fresh(database_url: str, schema: str) -> asyncpg.Pool:
    pool = await create_pool(database_url, schema, max_size=10)
    await migrate_service(pool, schema, "ledger", MIGRATIONS)
    return pool


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def run() -> list[dict]:
    nats_url = os.environ["NATS_URL"]
    database_url = os.environ["DATABASE_URL"]
    rows: list[dict] = []
    tag = uuid.uuid4().hex[:8]
    live_ns, big_ns = BusNamespace(f"bl{tag}"), BusNamespace(f"bb{tag}")
    live_schema, big_schema = f"bench_ledger_{tag}", f"bench_ledger_rb_{tag}"
    bus = await Bus.connect(nats_url, "bench-ledger", live_ns)
    big_bus = await Bus.connect(nats_url, "bench-ledger-big", big_ns)
    await bus.provision()
    await big_bus.provision()
    pool = await fresh(database_url, live_schema)
    check_schema = f"{live_schema}_rb"
    try:
        # --- live projection throughput -----------------------------------------------------
        live_events = dataset(LIVE_OPS, 0)
        await publish_all(bus, live_events)
        settings = LedgerSettings(bus_prefix=live_ns.prefix, db_schema=live_schema)
        ledger = Ledger(bus, pool, settings)
        started, cpu_started = time.perf_counter(), time.process_time()
        await ledger.start()
        while sum((await ledger.pending()).values()) > 0:  # noqa: ASYNC110 (polls the server)
            await asyncio.sleep(0.05)
        applied_count = await pool.fetchval("SELECT count(*) FROM processed_events")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        await ledger.stop()
        assert applied_count == len(live_events), (applied_count, len(live_events))
        rows.append(
            {
                "name": "ledger live projection (exactly-once, outbox on)",
                "value": len(live_events) / elapsed,
                "unit": "events/s",
                "baseline": f"{len(live_events):,} events, 1 process, real PostgreSQL + JetStream",
                "ratio": None,
            }
        )
        rows.append(
            {
                "name": "ledger live projection: the ledger's CPU per event",
                "value": 1000 * cpu / len(live_events),
                "unit": "ms/event",
                "baseline": f"process CPU {cpu:.1f} s (PostgreSQL and NATS not counted; "
                f"load average {os.getloadavg()[0]:.1f})",
                "ratio": None,
            }
        )
        async with pool.acquire() as conn:
            live_sum = await checksums(conn)
        result = await rebuild(bus, database_url, check_schema, settings.money_rules())
        rows.append(
            {
                "name": "ledger rebuild == live (checksum)",
                "value": 1.0 if result.checksums == live_sum else 0.0,
                "unit": "1 = identical",
                "baseline": f"sha256 {live_sum['all'][:12]}",
                "ratio": None,
            }
        )

        # --- rebuild of 100,000 events ------------------------------------------------------
        big = dataset(REBUILD_OPS, WHALE_OPS)
        publish_seconds = await publish_all(big_bus, big)
        rows.append(
            {
                "name": "publish 100k order events (setup)",
                "value": len(big) / publish_seconds,
                "unit": "events/s",
                "baseline": f"{PUBLISH_CONCURRENCY} in flight",
                "ratio": None,
            }
        )
        result = await rebuild(big_bus, database_url, big_schema, settings.money_rules())
        assert result.events == len(big), (result.events, len(big))
        rows.append(
            {
                "name": "ledger rebuild of 100,000 events",
                "value": result.seconds,
                "unit": "s",
                "baseline": f"{len(big) / result.seconds:,.0f} events/s replayed",
                "ratio": None,
            }
        )

        # --- query latency for a user with 10,000 operations --------------------------------
        big_pool = await create_pool(database_url, big_schema, max_size=4)
        try:
            await big_pool.execute("ANALYZE")
            await LedgerQueries(big_pool).serve(big_bus)
            client = await Bus.connect(nats_url, "bench-ledger-client", big_ns)
            rng = random.Random(7)
            try:
                for label, pages in (
                    ("page 1", [1] * QUERIES),
                    ("random page", [rng.randint(1, 200) for _ in range(QUERIES)]),
                ):
                    latencies: list[float] = []
                    for page in pages:
                        q = OperationsQuery(
                            occurred_at=T0,
                            correlation_id="bench",
                            user_id="whale",
                            page=page,
                            page_size=50,
                        )
                        t = time.perf_counter()
                        reply = await client.request(q, OperationsPage)
                        latencies.append((time.perf_counter() - t) * 1000)
                        assert reply.ok
                        assert reply.total == WHALE_OPS
                    for q_name, q in (("p50", 50), ("p99", 99)):
                        value = pct(latencies, q)
                        rows.append(
                            {
                                "name": f"ledger operations query, 10k-op user, {label} {q_name}",
                                "value": value,
                                "unit": "ms",
                                "baseline": "target p99 < 20 ms",
                                "ratio": value / 20.0,
                            }
                        )
                latencies = []
                for _ in range(50):
                    t = time.perf_counter()
                    await client.request(
                        StatementQuery(occurred_at=T0, correlation_id="b", user_id="whale"),
                        StatementReply,
                    )
                    latencies.append((time.perf_counter() - t) * 1000)
                rows.append(
                    {
                        "name": "ledger statement query, 10k-op user, p99",
                        "value": pct(latencies, 99),
                        "unit": "ms",
                        "baseline": "no target",
                        "ratio": None,
                    }
                )
            finally:
                await client.close()
        finally:
            await big_pool.close()
    finally:
        await pool.close()
        for b in (bus, big_bus):
            for spec in b.namespace.streams():
                with contextlib.suppress(Exception):
                    await b.js.delete_stream(spec.name)
            await b.close()
        conn = await asyncpg.connect(database_url)
        try:
            for schema in (live_schema, check_schema, big_schema):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    return rows
