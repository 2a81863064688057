"""The ledger on a real bus and database: consumers, query API, events out, rebuild."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from marketbot.contracts import (
    CommissionAccrued,
    Event,
    OperationStatus,
    OperationStatusChanged,
    Plan,
    decode,
)
from marketbot.contracts.ledger import (
    CommissionsQuery,
    CommissionsReply,
    OperationsPage,
    OperationsQuery,
    SignalTrace,
    SignalTraceQuery,
    StatementQuery,
    StatementReply,
)
from marketbot.ledger.adapters.queries import checksums
from marketbot.ledger.app import Ledger
from marketbot.ledger.rebuild import rebuild
from marketbot.ledger.settings import LedgerSettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.testing import eventually

from .conftest import RULES
from .factories import T0, Script, plan_changed, registered, signal_events

D = Decimal
ASK = {"occurred_at": T0, "correlation_id": "test"}


@pytest.fixture
async def ledger(bus: Bus, ledger_pool: asyncpg.Pool, pg_schema: str) -> AsyncIterator[Ledger]:
    settings = LedgerSettings(bus_prefix=bus.namespace.prefix, db_schema=pg_schema)
    running = Ledger(bus, ledger_pool, settings)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def caught_up(ledger: Ledger) -> bool:
    return sum((await ledger.pending()).values()) == 0


async def ledger_stream(bus: Bus) -> list[Event]:
    sub = await bus.js.pull_subscribe(bus.subject("ledger.>"), stream=bus.stream("LEDGER"))
    found: list[Event] = []
    # nats-py's pull fetch raises its own TimeoutError, or asyncio's when the wait for the
    # first message itself times out (nats/js/client.py): either means nothing is left.
    with contextlib.suppress(NatsTimeoutError, TimeoutError):
        while True:
            for msg in await sub.fetch(100, timeout=0.5):
                found.append(decode(msg.data))  # type: ignore[arg-type]
                await msg.ack()
    await sub.unsubscribe()
    return found


async def test_events_on_the_bus_become_operations_queries_and_pushes(
    bus: Bus, ledger: Ledger, ledger_pool: asyncpg.Pool, database_url: str, pg_schema: str
) -> None:
    signal_id = uuid.uuid4()
    signal, decision = signal_events(signal_id)
    pro = Script(
        "alice",
        Plan.PRO,
        signal_id=signal_id,
        quantity=D("1"),
        entry=D("100"),
        exit=D("110"),
        fees=D("0.5"),
    )
    flex = Script(
        "bob",
        Plan.FLEX,
        signal_id=signal_id,
        quantity=D("2"),
        entry=D("100"),
        exit=D("103"),
        fees=D("0"),
    )
    trial = Script("carol", Plan.TRIAL, signal_id=signal_id)
    await bus.publish(registered("bob", "alice", T0 - timedelta(days=2)))
    # Out of order across streams, with duplicates: fills before placements, closes first.
    for event in [
        pro.closed(),
        flex.filled(),
        pro.filled(),
        flex.closed(),
        pro.placed(),
        flex.placed(),
        trial.rejected(),
        pro.closed(),
        flex.filled(),
    ]:
        await bus.publish(event)
    await bus.publish(plan_changed("bob", Plan.PRO, T0 + timedelta(seconds=1)))
    for event in [
        signal,
        decision,
        pro.requested(),
        flex.requested(),
        trial.requested(),
        pro.requested(),
    ]:
        await bus.publish(event)

    async def all_settled() -> bool:
        n = await ledger_pool.fetchval(
            "SELECT count(*) FROM operations WHERE status IN ('CLOSED', 'REJECTED') "
            "AND requested_event_id IS NOT NULL"
        )
        pending = await ledger.pending()
        print(
            "settle",
            n,
            pending,
            [
                dict(r)
                for r in await ledger_pool.fetch(
                    "SELECT user_id, status, requested_event_id IS NOT NULL AS req FROM operations"
                )
            ],
        )
        return n == 3 and sum(pending.values()) == 0

    await eventually(all_settled, timeout=20)

    page = await bus.request(OperationsQuery(**ASK, user_id="bob"), OperationsPage)
    assert page.ok
    assert page.total == 1
    (op,) = page.operations
    assert op.status is OperationStatus.CLOSED
    assert op.plan is Plan.FLEX  # the plan of the request, not the one bob moved to
    assert op.realized_pnl == D("6")
    assert op.commission == D("1.20000000")
    assert op.requested_at == T0

    statement = await bus.request(StatementQuery(**ASK), StatementReply)
    # alice: (110-100)*1 - 0.5 = 9.5 * 0.10 = 0.95; bob: 6 * 0.20 = 1.2; carol rejected.
    assert statement.total_commissions == D("2.15000000")
    assert statement.total_realized_pnl == D("15.5")
    assert statement.total_affiliate_commissions == D("0.12000000")  # alice referred bob

    referred = await bus.request(CommissionsQuery(**ASK, referrer_id="alice"), CommissionsReply)
    assert referred.total == D("0.12000000")
    assert [(e.user_id, e.affiliate_amount) for e in referred.entries] == [("bob", D("0.12000000"))]

    trace = await bus.request(SignalTraceQuery(**ASK, signal_id=signal_id), SignalTrace)
    assert trace.ok
    assert trace.signal is not None
    assert trace.signal["signal_id"] == str(signal_id)
    assert trace.decision is not None
    assert trace.decision["action"] == "BUY"
    assert [(o.user_id, o.status) for o in trace.operations] == [
        ("alice", OperationStatus.CLOSED),
        ("bob", OperationStatus.CLOSED),
        ("carol", OperationStatus.REJECTED),
    ]
    missing = await bus.request(SignalTraceQuery(**ASK, signal_id=uuid.uuid4()), SignalTrace)
    assert not missing.ok
    assert missing.error is not None
    assert missing.error.code == "not_found"

    pushed = await ledger_stream(bus)
    commissions = [e for e in pushed if isinstance(e, CommissionAccrued)]
    assert sorted((e.user_id, e.amount) for e in commissions) == [
        ("alice", D("0.95000000")),
        ("bob", D("1.20000000")),
    ]
    closed = [
        e
        for e in pushed
        if isinstance(e, OperationStatusChanged) and e.status is OperationStatus.CLOSED
    ]
    assert sorted(e.user_id for e in closed) == ["alice", "bob"]

    # Rebuild from the streams into fresh tables: the same bytes, and nothing published.
    async with ledger_pool.acquire() as conn:
        live = await checksums(conn)
    published = (await bus.js.stream_info(bus.stream("LEDGER"))).state.messages
    assert published == len(pushed)
    result = await rebuild(bus, database_url, f"{pg_schema}_rb", RULES)
    replayed = await rebuild(bus, database_url, f"{pg_schema}_rb", RULES, mode="replay")
    try:
        assert result.checksums == live
        assert replayed.checksums == live
        assert result.events >= 14
        assert (await bus.js.stream_info(bus.stream("LEDGER"))).state.messages == published
    finally:
        await ledger_pool.execute(f'DROP SCHEMA IF EXISTS "{pg_schema}_rb" CASCADE')


async def test_a_redelivered_event_is_applied_once(
    bus: Bus, ledger: Ledger, ledger_pool: asyncpg.Pool
) -> None:
    script = Script("dave", Plan.PRO, quantity=D("1"), entry=D("100"), exit=D("120"), fees=D("0"))
    for event in script.story():
        await bus.publish(event)
    await eventually(lambda: caught_up(ledger), timeout=20)
    await eventually(lambda: ledger_pool.fetchval("SELECT amount FROM commissions"), timeout=20)
    # The same event id published after the duplicate window would be a new message: the
    # processed-events table and the handlers' own idempotence both hold it off.
    await bus.publish_raw(
        bus.subject(script.closed().subject()), script.closed().to_json(), str(uuid.uuid4()), "x"
    )
    await eventually(lambda: caught_up(ledger), timeout=20)
    assert await ledger_pool.fetchval("SELECT count(*) FROM commissions") == 1
    assert await ledger_pool.fetchval("SELECT amount FROM commissions") == D("2.00000000")
