"""The SQL projection on real PostgreSQL: idempotent, order-independent, money conserved."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketbot.contracts import (
    CommissionAccrued,
    Event,
    OperationStatus,
    OperationStatusChanged,
    Plan,
)
from marketbot.contracts.ledger import CommissionsQuery, OperationsQuery, StatementQuery
from marketbot.ledger.adapters.queries import PROJECTION_TABLES, checksums
from marketbot.ledger.api import LedgerQueries
from marketbot.ledger.app import MIGRATIONS
from marketbot.ledger.handlers import apply_event, apply_events
from marketbot.runtime.db import create_pool, migrate_service

from .conftest import RULES, apply_each
from .factories import T0, Script, plan_changed, referrer_assigned, registered
from .model import canonical, fold, total

D = Decimal


@pytest.fixture
async def rebuild_pool(database_url: str, pg_schema: str) -> AsyncIterator[asyncpg.Pool]:
    schema = f"{pg_schema}_rb"
    pool = await create_pool(database_url, schema, max_size=2)
    await migrate_service(pool, schema, "ledger", MIGRATIONS)
    try:
        yield pool
    finally:
        with contextlib.suppress(Exception):
            await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


async def truncate(pool: asyncpg.Pool) -> None:
    await pool.execute(f"TRUNCATE {', '.join(PROJECTION_TABLES)}")


async def checksum(pool: asyncpg.Pool) -> dict[str, str]:
    async with pool.acquire() as conn:
        return await checksums(conn)


async def commissions_by_operation(pool: asyncpg.Pool) -> dict[uuid.UUID, tuple[object, ...]]:
    rows = await pool.fetch(
        "SELECT operation_id, amount, referrer_id, affiliate_amount FROM commissions"
    )
    return {r["operation_id"]: (r["amount"], r["referrer_id"], r["affiliate_amount"]) for r in rows}


USERS = ("u0", "u1", "u2")
story = st.tuples(
    st.sampled_from(USERS),
    st.sampled_from(list(Plan)),
    st.sampled_from(("closed", "closed", "rejected", "unknown", "unknown_then_closed", "open")),
    st.integers(min_value=-300_000_000, max_value=900_000_000),
    st.integers(min_value=0, max_value=2 * 24 * 60),
)
referral = st.tuples(
    st.sampled_from(USERS),
    st.sampled_from((*USERS, "r9", None)),
    st.integers(min_value=-60, max_value=2 * 24 * 60),
)


def deliveries(test: Any) -> Any:
    """Stories and referrals drawn by hypothesis, with ``data`` for their delivery order."""
    return settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )(
        given(
            stories=st.lists(story, min_size=1, max_size=6),
            referrals=st.lists(referral, max_size=3),
            data=st.data(),
        )(test)
    )


def events_for(
    stories: list[tuple[str, Plan, str, int, int]], referrals: list[tuple[str, str | None, int]]
) -> list[Event]:
    events: list[Event] = []
    for n, (user, plan, outcome, pnl, minutes) in enumerate(stories):
        script = Script(
            user,
            plan,
            signal_id=uuid.UUID(int=n + 1),
            quantity=D("0.01"),
            entry=D("100"),
            exit=D("100") + D(pnl).scaleb(-6),
            fees=D("0.001"),
            start=T0 + timedelta(minutes=minutes),
        )
        events.extend(script.story(outcome))
    for user, referrer, minutes in referrals:
        events.append(referrer_assigned(user, referrer, T0 + timedelta(minutes=minutes)))
    return events


@deliveries
async def test_any_delivery_order_with_duplicates_equals_a_rebuild(
    ledger_pool: asyncpg.Pool,
    rebuild_pool: asyncpg.Pool,
    stories: list[tuple[str, Plan, str, int, int]],
    referrals: list[tuple[str, str | None, int]],
    data: st.DataObject,
) -> None:
    events = events_for(stories, referrals)
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    delivery = data.draw(st.permutations(events + duplicates))
    await truncate(ledger_pool)
    await truncate(rebuild_pool)

    await apply_each(ledger_pool, delivery)
    live = await checksum(ledger_pool)
    # Applying any event a second time changes nothing.
    await apply_each(ledger_pool, [data.draw(st.sampled_from(events))])
    assert await checksum(ledger_pool) == live

    await apply_each(rebuild_pool, canonical(events))
    assert await checksum(rebuild_pool) == live

    # The tables say what the pure model says.
    model = fold(canonical(events), RULES)
    expected = {
        op_id: (c.amount, c.referrer_id, c.affiliate_amount)
        for op_id, c in model.commissions().items()
    }
    assert await commissions_by_operation(ledger_pool) == expected

    # Money is conserved: the users' commissions are the platform's income, to the unit.
    queries = LedgerQueries(ledger_pool)
    platform = await queries.statement(StatementQuery(occurred_at=T0, correlation_id="t"))
    per_user = [
        await queries.statement(StatementQuery(occurred_at=T0, correlation_id="t", user_id=u))
        for u in USERS
    ]
    income = total(c[0] for c in expected.values())  # type: ignore[misc]
    assert platform.total_commissions == income
    assert total(s.total_commissions for s in per_user) == income
    assert platform.total_realized_pnl == total(s.total_realized_pnl for s in per_user)
    assert platform.total_volume == total(s.total_volume for s in per_user)
    everything = await queries.commissions(CommissionsQuery(occurred_at=T0, correlation_id="t"))
    assert everything.total == income
    assert platform.total_affiliate_commissions <= income
    model_lines = model.statement()
    assert [
        (x.day, x.operations, x.volume, x.realized_pnl, x.commissions) for x in model_lines
    ] == [(x.day, x.operations, x.volume, x.realized_pnl, x.commissions) for x in platform.lines]


@deliveries
async def test_batches_in_any_order_equal_the_events_one_by_one(
    ledger_pool: asyncpg.Pool,
    rebuild_pool: asyncpg.Pool,
    stories: list[tuple[str, Plan, str, int, int]],
    referrals: list[tuple[str, str | None, int]],
    data: st.DataObject,
) -> None:
    """``apply_events`` (the live consumer's batch form: a statement per step for the whole
    batch) gives the tables and the status changes of the events applied one by one."""
    events = events_for(stories, referrals)
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    delivery = data.draw(st.permutations(events + duplicates))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(delivery) - 1)), max_size=4)))
    batches = [delivery[a:b] for a, b in zip([0, *cuts], [*cuts, len(delivery)], strict=True)]
    await truncate(ledger_pool)
    await truncate(rebuild_pool)

    emitted: list[Event] = []
    async with ledger_pool.acquire() as conn:
        for batch in batches:
            async with conn.transaction():
                emitted.extend(await apply_events(batch, conn, RULES))
    one_by_one = await apply_each(rebuild_pool, delivery)
    assert await checksum(ledger_pool) == await checksum(rebuild_pool)

    def changes(events: list[Event]) -> list[tuple[object, ...]]:
        return [(e.operation_id, e.status) for e in events if isinstance(e, OperationStatusChanged)]

    # The same status changes, in the same order (the merges are the same, in memory).
    assert changes(emitted) == changes(one_by_one)
    # The commission each operation ends with is the last one announced for it.
    accrued = {e.operation_id: e.amount for e in emitted if isinstance(e, CommissionAccrued)}
    stored = await commissions_by_operation(ledger_pool)
    assert {op_id: accrued.get(op_id) for op_id in stored} == {
        op_id: amount for op_id, (amount, _referrer, _affiliate) in stored.items()
    }


async def test_worked_example_commission_and_affiliate_tables(ledger_pool: asyncpg.Pool) -> None:
    """a (PRO, referred by r): +10, -4, +2.5; b (FLEX, no referrer): +7.77777777."""
    events: list[Event] = [registered("a", "r", T0 - timedelta(days=1)), registered("b", None)]
    for n, (user, plan, pnl) in enumerate(
        [
            ("a", Plan.PRO, "10"),
            ("a", Plan.PRO, "-4"),
            ("a", Plan.PRO, "2.5"),
            ("b", Plan.FLEX, "7.77777777"),
        ]
    ):
        script = Script(
            user,
            plan,
            signal_id=uuid.UUID(int=100 + n),
            quantity=D("1"),
            entry=D("100"),
            exit=D("100") + D(pnl),
            fees=D("0"),
        )
        events.extend(script.story())
    await apply_each(ledger_pool, events)
    queries = LedgerQueries(ledger_pool)
    ask = {"occurred_at": T0, "correlation_id": "t"}

    a = await queries.commissions(CommissionsQuery(**ask, user_id="a"))
    assert sorted(e.amount for e in a.entries) == [D("0.25000000"), D("1.00000000")]
    assert {e.referrer_id for e in a.entries} == {"r"}
    assert sorted(e.affiliate_amount for e in a.entries if e.affiliate_amount) == [
        D("0.02500000"),
        D("0.10000000"),
    ]
    assert a.total == D("1.25000000")
    b = await queries.commissions(CommissionsQuery(**ask, user_id="b"))
    assert [(e.amount, e.rate, e.referrer_id) for e in b.entries] == [
        (D("1.55555555"), D("0.20"), None)
    ]
    r = await queries.commissions(CommissionsQuery(**ask, referrer_id="r"))
    assert r.total == D("0.12500000")  # the affiliate's share, per referred user's operation
    assert {e.user_id for e in r.entries} == {"a"}

    platform = await queries.statement(StatementQuery(**ask))
    assert platform.total_commissions == D("2.80555555")
    assert platform.total_affiliate_commissions == D("0.12500000")
    assert platform.total_realized_pnl == D("16.27777777")
    assert platform.total_operations == 4
    r_statement = await queries.statement(StatementQuery(**ask, user_id="r"))
    assert r_statement.total_affiliate_commissions == D("0.12500000")

    page = await queries.operations(
        OperationsQuery(**ask, user_id="a", status=OperationStatus.CLOSED)
    )
    assert page.total == 3
    assert sorted(o.commission or 0 for o in page.operations) == [0, D("0.25"), D("1")]


async def test_a_plan_changed_after_the_request_keeps_the_old_rate(
    ledger_pool: asyncpg.Pool,
) -> None:
    script = Script("u1", Plan.FLEX, quantity=D("1"), entry=D("100"), exit=D("110"), fees=D("0"))
    await apply_each(
        ledger_pool,
        [
            script.requested(),
            plan_changed("u1", Plan.PRO, T0 + timedelta(seconds=10)),
            script.placed(),
            script.filled(),
            plan_changed("u1", Plan.TRIAL, T0 + timedelta(minutes=30)),
            script.closed(),
        ],
    )
    row = await ledger_pool.fetchrow("SELECT plan, rate, amount FROM commissions")
    assert (row["plan"], row["rate"], row["amount"]) == ("FLEX", D("0.20"), D("2.00000000"))


async def test_the_rate_charged_is_the_requests_even_after_the_table_changes(
    ledger_pool: asyncpg.Pool, rebuild_pool: asyncpg.Pool
) -> None:
    """The request carries 0.20; the ledger now runs with FLEX at 0.50. Live (the close
    arrives before its request) and a rebuild both charge 0.20, and agree."""
    script = Script("u1", Plan.FLEX, quantity=D("1"), entry=D("100"), exit=D("110"), fees=D("0"))
    changed = dataclasses.replace(
        RULES, commission_rates={**RULES.commission_rates, Plan.FLEX: D("0.5")}
    )
    events = [script.placed(), script.filled(), script.closed(), script.requested()]
    async with ledger_pool.acquire() as conn:
        for event in events:
            async with conn.transaction():
                await apply_event(event, conn, changed)
    row = await ledger_pool.fetchrow("SELECT rate, amount FROM commissions")
    assert (row["rate"], row["amount"]) == (D("0.20"), D("2.00000000"))
    async with rebuild_pool.acquire() as conn:
        for event in canonical(events):
            async with conn.transaction():
                await apply_event(event, conn, changed)
    assert await checksum(rebuild_pool) == await checksum(ledger_pool)
    assert fold(canonical(events), changed).commissions()[script.request_id].rate == D("0.20")


async def test_a_late_referrer_event_corrects_the_affiliate_share(
    ledger_pool: asyncpg.Pool,
) -> None:
    script = Script("u1", Plan.PRO, quantity=D("1"), entry=D("100"), exit=D("110"), fees=D("0"))
    first = await apply_each(ledger_pool, script.story())
    accrued = [e for e in first if isinstance(e, CommissionAccrued)]
    assert [(e.amount, e.referrer_id) for e in accrued] == [(D("1.00000000"), None)]
    # The referrer was assigned before the close, but the event arrives after it.
    later = await apply_each(
        ledger_pool, [referrer_assigned("u1", "r1", T0 + timedelta(minutes=5))]
    )
    (corrected,) = later
    assert isinstance(corrected, CommissionAccrued)
    assert (corrected.referrer_id, corrected.affiliate_amount) == ("r1", D("0.10000000"))
    assert corrected.event_id != accrued[0].event_id
    # A referrer assigned after the close does not touch it.
    assert (
        await apply_each(ledger_pool, [referrer_assigned("u1", "r2", T0 + timedelta(hours=5))])
        == []
    )


async def test_status_changes_are_emitted_once_with_derived_ids(ledger_pool: asyncpg.Pool) -> None:
    script = Script("u1")
    emitted = await apply_each(ledger_pool, script.story() + script.story())
    statuses = [e.status for e in emitted if isinstance(e, OperationStatusChanged)]
    assert statuses == [
        OperationStatus.REQUESTED,
        OperationStatus.PLACED,
        OperationStatus.OPEN,
        OperationStatus.CLOSED,
    ]
    again = await apply_each(ledger_pool, [script.filled(), script.closed()])
    assert again == []
    fills = await ledger_pool.fetchval("SELECT count(*) FROM fills")
    assert fills == 1


async def test_consumers_racing_on_the_same_operations_lose_nothing(
    ledger_pool: asyncpg.Pool, rebuild_pool: asyncpg.Pool
) -> None:
    """Requests and outcomes arrive through two consumers at once, in batch transactions."""
    scripts = [
        Script(
            f"u{n % 3}",
            Plan.PRO,
            signal_id=uuid.UUID(int=500 + n),
            quantity=D("1"),
            entry=D("100"),
            exit=D("101"),
            fees=D("0"),
        )
        for n in range(40)
    ]
    requests = [s.requested() for s in scripts]
    outcomes = [e for s in scripts for e in s.story()[1:]]

    async def consume(events: list[Event], batch: int) -> None:
        async with ledger_pool.acquire() as conn:
            for i in range(0, len(events), batch):
                while True:
                    try:
                        async with conn.transaction():
                            for event in events[i : i + batch]:
                                await apply_event(event, conn, RULES)
                        break
                    except asyncpg.DeadlockDetectedError:
                        continue  # what the consumer does: roll back and apply again

    await asyncio.gather(consume(requests, 4), consume(list(reversed(outcomes)), 5))
    await apply_each(rebuild_pool, canonical(requests + outcomes))
    assert await checksum(ledger_pool) == await checksum(rebuild_pool)
    assert (
        await ledger_pool.fetchval(
            "SELECT count(*) FROM operations WHERE status = 'CLOSED' AND requested_at IS NOT NULL"
        )
        == 40
    )
