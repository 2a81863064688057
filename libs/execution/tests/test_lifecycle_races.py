"""Races around one position, against the simulator: a signal's close and an exit order of
the tracker never both sell the same position; a leg still filling is not an exit yet."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marketbot.contracts import (
    CloseReason,
    OrderFilled,
    OrderRejected,
    PositionClosed,
    RejectReason,
    Side,
)
from marketbot.exchanges.venue import leg_client_id
from marketbot.execution.repository import Repository
from marketbot.runtime.testing import eventually

from .conftest import Harness, eventually_events

SYMBOL = "SOLUSDT"
OPEN = ("NEW", "UNTRIGGERED", "PARTIALLY_FILLED")


async def _order_row(h: Harness, client_order_id: str) -> dict[str, Any] | None:
    async with h.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM orders WHERE client_order_id = $1", client_order_id
        )
    return dict(row) if row is not None else None


async def test_a_sell_while_a_watched_exit_is_in_flight_sells_the_position_once(
    bybit: Harness,
) -> None:
    h = bybit
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    # The user also holds SOL of their own: a second sell of the position would take it.
    user = await h.add_user(Decimal(1000), SOL=Decimal(1))
    entry = h.request(user, symbol=SYMBOL, tp="1", sl="5")
    await h.start()
    await h.publish([entry])
    filled = (await eventually_events(h.log, OrderFilled, 1))[0]

    async def protected() -> bool:
        async with h.pool.acquire() as conn:
            phase = await conn.fetchval(
                "SELECT phase FROM positions WHERE entry_client_order_id = $1",
                entry.client_order_id,
            )
        return phase == "PROTECTED"

    await eventually(protected, timeout=30, message="protected")
    # The take profit's sell is answered "timed out" and executes 4 s later (less than the
    # settle time): its outcome is unknown while the sell signal arrives.
    await h.admin.set_fault(
        "executed_late", next_n=1, latency_ms=4000, path="/v5/order/create", method="POST"
    )
    await h.admin.set_price(SYMBOL, Decimal("101.50"))
    tp_id = leg_client_id("tp", entry.client_order_id, 0)

    async def exit_sent() -> bool:
        row = await _order_row(h, tp_id)
        return row is not None and row["attempts"] > 0

    await eventually(exit_sent, timeout=30, message="the take profit's exit order sent")
    sell = h.request(user, symbol=SYMBOL, side=Side.SELL, sl=None, tp=None)
    await h.publish([sell])

    closed = (await eventually_events(h.log, PositionClosed, 1, timeout=60))[0]
    assert closed.close_reason is CloseReason.TAKE_PROFIT
    assert closed.exit_client_order_id == tp_id
    (rejected,) = await eventually_events(
        h.log, OrderRejected, 1, client_order_id=sell.client_order_id
    )
    assert rejected.reason is RejectReason.NO_POSITION
    # Ground truth: the position was sold once; the user's own SOL is untouched.
    received = filled.filled_quantity - sum(f.fee for f in filled.fills if f.fee_asset == "SOL")
    holdings = await h.admin.balances(user.account_id)
    assert holdings["SOL"] == Decimal(1) + received - closed.quantity
    sells = [o for o in await h.sim_orders(user) if o["side"].upper() == "SELL"]
    executed = [o for o in sells if Decimal(o["executed_qty"]) > 0]
    assert [o["client_order_id"] for o in executed] == [tp_id]


async def test_a_position_whose_exits_a_failing_close_cancelled_is_counted_unprotected(
    venue_harness: Harness,
) -> None:
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    entry = h.request(user, symbol=SYMBOL)
    await h.start()
    await h.publish([entry])
    await eventually_events(h.log, OrderFilled, 1)

    async def phase() -> str | None:
        async with h.pool.acquire() as conn:
            value: str | None = await conn.fetchval(
                "SELECT phase FROM positions WHERE entry_client_order_id = $1",
                entry.client_order_id,
            )
        return value

    await eventually(lambda: _is(phase, "PROTECTED"), timeout=30, message="protected")
    # Every new order fails from now on: the sell signal cancels the exits, then cannot sell.
    create = "/v5/order/create" if h.exchange.value == "bybit" else "/api/v3/order"
    await h.admin.set_fault("http_5xx", rate=1.0, path=create, method="POST")
    sell = h.request(user, symbol=SYMBOL, side=Side.SELL, sl=None, tp=None)
    await h.publish([sell])

    async def legs_cancelled() -> bool:
        legs = [
            o
            for o in await h.sim_orders(user)
            if o["client_order_id"]
            in {leg_client_id(t, entry.client_order_id) for t in ("tp", "sl")}
        ]
        return bool(legs) and all(o["status"] not in OPEN for o in legs)

    await eventually(legs_cancelled, timeout=30, message="the exits cancelled")
    # No working exit on the exchange: the platform says so, and counts it.
    await eventually(lambda: _is(phase, "UNPROTECTED"), timeout=10, message="UNPROTECTED")
    async with h.pool.acquire() as conn:
        assert await Repository.unprotected_count(conn) == 1

    await h.admin.clear_faults()
    closed = (await eventually_events(h.log, PositionClosed, 1, timeout=60))[0]
    assert closed.close_reason is CloseReason.SIGNAL
    assert closed.exit_client_order_id == sell.client_order_id


async def _is(read: Any, value: str) -> bool:
    return bool(await read() == value)
