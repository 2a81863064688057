"""Group commit (issue 19): the outcomes of one event-loop tick in one transaction, each
still committed before its caller goes on; one failing outcome never takes the others."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from marketbot.contracts import (
    DEFAULT_PLANS,
    Exchange,
    OrderRequested,
    Plan,
    RejectReason,
    RiskLevel,
    Side,
    client_order_id_for,
    decode,
    request_id_for,
)
from marketbot.execution import events
from marketbot.execution.domain.lifecycle import Phase
from marketbot.execution.groupcommit import GroupCommit, GroupInsert, GroupRead, RowEffect
from marketbot.execution.repository import EntryFill, NewEntry, NewPosition, Repository
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import ManualClock
from marketbot.runtime.consumer import Outbox
from marketbot.runtime.db import Conn, migrate_service
from marketbot.runtime.testing import eventually

from .conftest import MIGRATIONS


def _request(user_id: str) -> OrderRequested:
    decision = uuid.uuid4()
    now = datetime.now(UTC)
    return OrderRequested(
        event_id=request_id_for(decision, user_id),
        occurred_at=now,
        correlation_id=str(decision),
        request_id=request_id_for(decision, user_id),
        decision_id=decision,
        signal_id=decision,
        user_id=user_id,
        exchange=Exchange.BYBIT,
        symbol="BTCUSDT",
        side=Side.BUY,
        plan=Plan.PRO,
        priority=1,
        not_before=now - timedelta(seconds=1),
        risk_level=RiskLevel.MEDIUM,
        client_order_id=client_order_id_for(decision, user_id),
        requested_at=now,
        commission_rate=DEFAULT_PLANS[Plan.PRO].commission_rate,
    )


def _event(user_id: str) -> events.Event:
    request = _request(user_id)
    return events.rejected(request, RejectReason.NO_POSITION, "test", request.occurred_at)


@pytest.fixture
async def pool(pg_pool: asyncpg.Pool, pg_schema: str) -> asyncpg.Pool:
    await migrate_service(pg_pool, pg_schema, "execution", MIGRATIONS)
    await pg_pool.execute("CREATE TABLE effects (name text PRIMARY KEY)")
    return pg_pool


async def test_one_tick_of_outcomes_is_one_transaction_published_from_memory(
    pool: asyncpg.Pool, bus: Bus
) -> None:
    seen: list[str] = []

    async def on_event(msg: object) -> None:
        seen.append(decode(msg.data).user_id)  # type: ignore[attr-defined]

    sub = await bus.nc.subscribe(bus.subject("orders.bybit.OrderRejected"), cb=on_event)
    group = GroupCommit(pool, Outbox(bus, pool))

    def effect(name: str):  # type: ignore[no-untyped-def]
        async def apply(conn: Conn) -> bool:
            await conn.execute("INSERT INTO effects VALUES ($1)", name)
            return True

        return apply

    results = await asyncio.gather(
        *(group.commit(effect(f"u{i}"), [_event(f"u{i}")]) for i in range(20))
    )
    assert results == [True] * 20
    assert group.groups == 1
    assert await pool.fetchval("SELECT count(*) FROM effects") == 20
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0  # published, deleted

    async def all_seen() -> bool:
        return sorted(seen) == sorted(f"u{i}" for i in range(20))

    await eventually(all_seen, timeout=10)
    await sub.unsubscribe()


async def test_a_failing_outcome_fails_alone_and_a_lost_race_emits_nothing(
    pool: asyncpg.Pool, bus: Bus
) -> None:
    group = GroupCommit(pool, Outbox(bus, pool))
    await pool.execute("INSERT INTO effects VALUES ('taken')")

    def effect(name: str, result: bool = True):  # type: ignore[no-untyped-def]
        async def apply(conn: Conn) -> bool:
            await conn.execute("INSERT INTO effects VALUES ($1)", name)
            return result

        return apply

    outcomes = await asyncio.gather(
        group.commit(effect("a"), [_event("a")]),
        group.commit(effect("taken"), [_event("dup")]),  # a unique violation
        group.commit(effect("b"), [_event("b")]),
        group.commit(effect("c", result=False), [_event("c")]),
        return_exceptions=True,
    )
    assert outcomes[0] is True
    assert outcomes[2] is True
    assert isinstance(outcomes[1], asyncpg.UniqueViolationError)
    assert outcomes[3] is False
    names = {r["name"] for r in await pool.fetch("SELECT name FROM effects")}
    # the group rolled back as a whole, then each outcome was applied on its own
    assert names == {"taken", "a", "b", "c"}
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    assert group.groups == 3  # a, b and c alone; the failed group and 'taken' never committed


async def test_a_group_holds_at_most_max_items(pool: asyncpg.Pool, bus: Bus) -> None:
    with pytest.raises(ValueError, match="max_items"):
        GroupCommit(pool, Outbox(bus, pool), max_items=0)
    group = GroupCommit(pool, Outbox(bus, pool), max_items=2)

    async def nothing(conn: Conn) -> None:
        await conn.execute("SELECT 1")

    assert await asyncio.gather(*(group.commit(nothing, [_event(f"m{i}")]) for i in range(5)))
    assert group.groups == 3  # 2 + 2 at max_items, the last one on the next tick


def _entry(request: OrderRequested) -> NewEntry:
    return NewEntry(
        request=request,
        quantity=Decimal("0.001"),
        quote_amount=Decimal(50),
        reference_price=Decimal(50000),
        stop_loss_price=None,
        take_profit_price=None,
        limit_price=Decimal(50250),
        max_slippage_percent=Decimal("0.5"),
    )


async def test_the_entries_of_a_tick_are_recorded_in_one_statement_each_once(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    rows = GroupInsert(pool, clock, owner="me", lease_s=60, settle_s=15)
    requests = [_request(f"e{i}") for i in range(10)]
    recorded = await asyncio.gather(*(rows.insert(_entry(r)) for r in requests))
    assert rows.statements == 1
    for request, row in zip(requests, recorded, strict=True):
        assert row is not None
        assert row.client_order_id == request.client_order_id
        # SENDING, with the first attempt marked: from now on it may be on the exchange
        assert (row.state, row.attempts, row.maybe_sent) == ("SENDING", 1, True)
        assert row.settle_until == clock.now() + timedelta(seconds=15)
        assert row.limit_price == Decimal(50250)
    # already recorded, or twice in one tick: only the first owner gets the row
    again = await asyncio.gather(
        rows.insert(_entry(requests[0])),
        rows.insert(_entry(new := _request("new"))),
        rows.insert(_entry(new)),
    )
    assert again[0] is None
    assert again[1] is not None
    assert again[2] is None
    stored = await pool.fetchval("SELECT count(*) FROM orders WHERE lease_owner = 'me'")
    assert stored == 11


async def test_the_rows_read_in_a_tick_are_one_statement(pool: asyncpg.Pool) -> None:
    clock = ManualClock()
    inserted = GroupInsert(pool, clock, owner="me", lease_s=60, settle_s=15)
    requests = [_request(f"r{i}") for i in range(5)]
    await asyncio.gather(*(inserted.insert(_entry(r)) for r in requests))
    reads = GroupRead(pool)
    ids = [r.client_order_id for r in requests]
    # each id once, one twice, and one that has no row
    rows = await asyncio.gather(*(reads.get(cid) for cid in [*ids, ids[0], "mb-absent"]))
    assert reads.statements == 1
    assert [row.client_order_id if row else None for row in rows] == [*ids, ids[0], None]
    assert all(row.state == "SENDING" for row in rows[:-1] if row is not None)
    # a later read sees what was committed since
    await pool.execute("UPDATE orders SET state = 'PLACED' WHERE client_order_id = $1", ids[1])
    again = await reads.get(ids[1])
    assert again is not None
    assert again.state == "PLACED"
    assert reads.statements == 2


def _fill(request: OrderRequested, now: datetime) -> EntryFill:
    position = NewPosition(
        entry_client_order_id=request.client_order_id,
        request=request,
        base_asset="BTC",
        quote_asset="USDT",
        quantity=Decimal("0.001"),
        filled_quantity=Decimal("0.001"),
        entry_price=Decimal(50000),
        entry_fees_quote=Decimal("0.05"),
        entry_order_id=f"x-{request.user_id}",
        stop_loss_price=None,
        take_profit_price=None,
        opened_at=now,
        fees_estimated=False,
    )
    return EntryFill(position, now, 2.0, Phase.PROTECTED, f"x-{request.user_id}")


async def test_row_effects_of_a_group_are_one_statement_per_kind(
    pool: asyncpg.Pool, bus: Bus
) -> None:
    """Acknowledged and filled entries of one tick: one UPDATE for the placed, one
    statement for the fills (a row already final stores no position and says so); a group
    with two effects on one row applies them one by one, in order."""
    clock = ManualClock()
    entries = GroupInsert(pool, clock, owner="me", lease_s=60, settle_s=15)
    requests = [_request(f"k{i}") for i in range(6)]
    await asyncio.gather(*(entries.insert(_entry(r)) for r in requests))
    await pool.execute(
        "UPDATE orders SET state = 'REJECTED' WHERE client_order_id = $1",
        requests[5].client_order_id,
    )
    group = GroupCommit(pool, Outbox(bus, pool))
    now = clock.now()
    statements: list[str] = []

    def counted(run):  # type: ignore[no-untyped-def]
        async def wrapped(conn: Conn, args):  # type: ignore[no-untyped-def]
            statements.append(run.__name__)
            return await run(conn, args)

        return wrapped

    placed, filled = counted(Repository.set_placed_many), counted(Repository.fill_entries)
    results = await asyncio.gather(
        *(
            group.commit(
                RowEffect(placed, r.client_order_id, (r.client_order_id, now, f"x-{r.user_id}")),
                [_event(r.user_id)],
            )
            for r in requests[:3]
        ),
        *(
            group.commit(RowEffect(filled, r.client_order_id, _fill(r, now)), [_event(r.user_id)])
            for r in requests[3:]
        ),
    )
    assert results == [True, True, True, True, True, False]
    assert group.groups == 1
    assert statements == ["set_placed_many", "fill_entries"]
    states = {
        r["client_order_id"]: (r["state"], r["exchange_order_id"])
        for r in await pool.fetch("SELECT client_order_id, state, exchange_order_id FROM orders")
    }
    for r in requests[:3]:
        assert states[r.client_order_id] == ("PLACED", f"x-{r.user_id}")
    for r in requests[3:5]:
        assert states[r.client_order_id] == ("FILLED", f"x-{r.user_id}")
    assert states[requests[5].client_order_id] == ("REJECTED", None)
    positions = await pool.fetch("SELECT entry_client_order_id, phase, status FROM positions")
    assert {(p["entry_client_order_id"], p["phase"], p["status"]) for p in positions} == {
        (r.client_order_id, "PROTECTED", "OPEN") for r in requests[3:5]
    }
    # one row twice in a group: applied one after the other, in the order they came
    statements.clear()
    again = requests[0]
    results = await asyncio.gather(
        group.commit(
            RowEffect(placed, again.client_order_id, (again.client_order_id, now, "y")), []
        ),
        group.commit(RowEffect(filled, again.client_order_id, _fill(again, now)), []),
    )
    assert results == [True, True]
    assert statements == ["set_placed_many", "fill_entries"]
    state = await pool.fetchval(
        "SELECT state FROM orders WHERE client_order_id = $1", again.client_order_id
    )
    assert state == "FILLED"
