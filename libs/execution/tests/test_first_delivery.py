"""A first delivery skips the request's row read (issue 19): every write on that path is an
insert-if-absent, so a duplicate that finds a row recorded by another delivery places
nothing more and overwrites nothing; it goes on by the existing-row path."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from marketbot.contracts import OrderFilled, OrderPlaced, OrderRejected, Side
from marketbot.execution.placement import Outcome
from marketbot.execution.repository import OrderState, Repository

from .conftest import Harness, eventually_events, settle


@pytest.mark.parametrize(
    ("side", "age_s"),
    [(Side.BUY, 0.0), (Side.SELL, 0.0), (Side.BUY, 300.0)],
    ids=["entry-sizing-rejects", "close-no-position", "stale"],
)
async def test_a_duplicate_first_delivery_leaves_a_placed_row_alone(
    bybit: Harness, side: Side, age_s: float
) -> None:
    """The row is PLACED by another delivery. This delivery, unread, would reject the
    request (no balance to size an entry, no position to close, or too old): before the
    insert-if-absent rejection, that rejection finished the PLACED row as REJECTED."""
    h = bybit
    user = await h.add_user(Decimal(0))
    running = await h.start()
    request = h.request(user, side=side, symbol="XRPUSDT", sl=None, tp=None, age_s=age_s)
    async with h.pool.acquire() as conn:
        row = await Repository.insert_sending(
            conn,
            request,
            now=datetime.now(UTC),
            owner="another-replica",
            lease_s=60.0,
            quantity=Decimal(10),
            quote_amount=Decimal(5),
            reference_price=Decimal("0.5"),
            purpose="ENTRY" if side is Side.BUY else "CLOSE",
        )
        assert row is not None
        await Repository.set_state(
            conn,
            request.client_order_id,
            OrderState.PLACED,
            datetime.now(UTC),
            exchange_order_id="placed-elsewhere",
        )

    outcome = await running.executor.execute(request, first_delivery=True)

    assert outcome is Outcome.DONE
    stored = await h.pool.fetchrow(
        "SELECT state, exchange_order_id, attempts FROM orders WHERE client_order_id = $1",
        request.client_order_id,
    )
    assert dict(stored) == {
        "state": "PLACED",
        "exchange_order_id": "placed-elsewhere",
        "attempts": 0,
    }
    await settle(0.5)
    assert h.log.of(OrderRejected, client_order_id=request.client_order_id) == []
    assert await h.sim_orders(user) == []


async def test_a_duplicate_first_delivery_of_a_rejected_request_stays_done(
    bybit: Harness,
) -> None:
    """Rejected by the first delivery; the duplicate (unread) rejects again and finds the
    row: one rejection event, the row as it was."""
    h = bybit
    user = await h.add_user(Decimal(0))
    running = await h.start()
    request = h.request(user, symbol="XRPUSDT", sl=None, tp=None)
    first = await running.executor.execute(request, first_delivery=True)
    assert first is Outcome.REJECTED
    again = await running.executor.execute(request, first_delivery=True)
    assert again is Outcome.DONE
    await settle(0.5)
    assert len(h.log.of(OrderRejected, client_order_id=request.client_order_id)) == 1


async def test_two_first_deliveries_at_once_on_two_replicas_place_one_order(
    bybit: Harness,
) -> None:
    """The same request, first delivery on each of two executors at the same moment
    (neither reads the row): one entry row, one order on the exchange, one OrderPlaced
    and one OrderFilled; the other delivery ends DONE by the existing-row path."""
    h = bybit
    await h.admin.set_price("XRPUSDT", Decimal("0.5000"))
    user = await h.add_user(Decimal(1000))
    one, two = await h.start(), await h.start()
    request = h.request(user, symbol="XRPUSDT", sl=None, tp=None)
    outcomes = await asyncio.gather(
        one.executor.execute(request, first_delivery=True),
        two.executor.execute(request, first_delivery=True),
    )
    assert sorted(outcomes) == sorted([Outcome.FILLED, Outcome.DONE])
    await eventually_events(h.log, OrderFilled, 1, client_order_id=request.client_order_id)
    await settle(0.5)
    assert len(h.log.of(OrderPlaced, client_order_id=request.client_order_id)) == 1
    assert len(h.log.of(OrderFilled, client_order_id=request.client_order_id)) == 1
    assert [o["client_order_id"] for o in await h.entries(user)] == [request.client_order_id]
    state = await h.pool.fetchval(
        "SELECT state FROM orders WHERE client_order_id = $1", request.client_order_id
    )
    assert state == "FILLED"
