"""A close or an exit leg that sells only part of a position, on both venues.

The simulator's liquidity cap (``set_liquidity``: the most one taker order executes) makes a
market sell fill in part and its remainder end, as a thin book does: Binance reports the
order ``EXPIRED`` with its ``executedQty`` ("LIMIT IOC or MARKET orders that partially
fill", enums.md), Bybit ``PartiallyFilledCanceled`` ("Only spot has this order status",
enum.mdx). The position's open quantity drops by what was sold (``PositionReduced``), the
rest is protected anew by new legs for the new quantity, and the ``PositionClosed`` that
ends it carries the totals over every part.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

from marketbot.contracts import (
    CloseReason,
    OrderFilled,
    PositionClosed,
    PositionReduced,
    Side,
)
from marketbot.exchanges.venue import leg_client_id
from marketbot.runtime.testing import eventually

from .conftest import Harness, eventually_events, settle
from .test_streams_lifecycle import STREAMS, SYMBOL, _left_to_the_stream, _live, _protected

STEP = Decimal("0.001")  # the simulator's SOLUSDT lot step on both venues


async def _position(h: Harness, entry_id: str) -> dict[str, Any]:
    async with h.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM positions WHERE entry_client_order_id = $1", entry_id
        )
    assert row is not None
    return dict(row)


async def _protected_for(h: Harness, entry_id: str, generation: int) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        row = await _position(h, entry_id)
        done = row["phase"] == "PROTECTED" and row["generation"] == generation
        return row if done else None

    found = await eventually(check, timeout=30, message=f"protected at generation {generation}")
    assert found is not None
    return found


async def _stop_loss_on_sim(h: Harness, entry_id: str, generation: int) -> dict[str, Any]:
    cid = leg_client_id("sl", entry_id, generation)
    orders = [o for o in await h.admin.orders() if o["client_order_id"] == cid]
    assert len(orders) == 1, orders
    return orders[0]


def _consistent(closed: PositionClosed) -> None:
    """The totals hold together: profit = (average exit - entry) x quantity - fees."""
    expected = (closed.exit_price - closed.entry_price) * closed.quantity - closed.fees_quote
    assert abs(closed.realized_pnl - expected) < Decimal("1e-12"), (closed, expected)


async def test_a_close_that_sells_part_reduces_the_position_and_protects_the_rest(
    venue_harness: Harness,
) -> None:
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    running = await h.start(**STREAMS)
    buy = h.request(user, symbol=SYMBOL, tp="5", sl="2")
    await h.publish([buy])
    await eventually_events(h.log, OrderFilled, 1)
    (row,) = await _protected(h, 1)
    await _live(running, user)
    held: Decimal = row["quantity"]
    entry_fees: Decimal = row["entry_fees_quote"]
    part = (held * Decimal("0.6")).quantize(STEP, rounding=ROUND_DOWN)

    # A SELL signal while the market takes only ``part``: the close's remainder ends.
    await h.admin.set_liquidity(SYMBOL, part)
    sell = h.request(user, symbol=SYMBOL, side=Side.SELL)
    await h.publish([sell])
    (reduced,) = await eventually_events(h.log, PositionReduced, 1)
    assert reduced.client_order_id == buy.client_order_id
    assert reduced.exit_client_order_id == sell.client_order_id
    assert reduced.reason is CloseReason.SIGNAL
    assert reduced.quantity == part
    assert reduced.remaining_quantity == held - part
    assert reduced.sold_quantity == part
    assert reduced.realized_pnl_total == reduced.realized_pnl
    # The part bears its share of the entry fees, pro rata.
    exit_fees = reduced.fees_quote - entry_fees * part / held
    assert exit_fees >= 0
    assert h.log.of(PositionClosed) == []

    # The rest is protected anew: new legs (next generation) for the new quantity.
    rest = await _protected_for(h, buy.client_order_id, 1)
    assert rest["status"] == "OPEN"
    assert rest["quantity"] == held - part
    assert rest["sold_quantity"] == part
    stop = await _stop_loss_on_sim(h, buy.client_order_id, 1)
    assert Decimal(stop["qty"]) == held - part
    assert stop["status"] in ("NEW", "UNTRIGGERED")

    # Liquidity back: a second SELL closes the rest; the close carries the totals.
    await h.admin.set_liquidity(SYMBOL, None)
    again = h.request(user, symbol=SYMBOL, side=Side.SELL)
    await h.publish([again])
    (closed,) = await eventually_events(h.log, PositionClosed, 1)
    assert closed.client_order_id == buy.client_order_id
    assert closed.exit_client_order_id == again.client_order_id
    assert closed.quantity == held
    assert closed.fees_quote > reduced.fees_quote
    _consistent(closed)
    done = await _position(h, buy.client_order_id)
    assert done["status"] == "CLOSED"
    assert done["realized_pnl"] == closed.realized_pnl
    await settle(1.0)
    assert len(h.log.of(PositionReduced)) == 1
    assert len(h.log.of(PositionClosed)) == 1


async def test_a_stop_loss_that_sells_part_is_found_after_a_gap_and_the_rest_closes_later(
    venue_harness: Harness,
) -> None:
    """The stop loss triggers during a stream outage and its market order fills in part;
    the reconciliation after the reconnect records the part once, protects the rest with
    new legs, and the take profit later closes it."""
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    running = await h.start(private_streams=True, track_interval_s=0.2, track_max_interval_s=60)
    buy = h.request(user, symbol=SYMBOL, tp="5", sl="2")
    await h.publish([buy])
    await eventually_events(h.log, OrderFilled, 1)
    (row,) = await _protected(h, 1)
    await _live(running, user)
    await eventually(lambda: _left_to_the_stream(h), timeout=20, message="left to the stream")
    feed = running.feed
    assert feed is not None
    held: Decimal = row["quantity"]
    part = (held * Decimal("0.4")).quantize(STEP, rounding=ROUND_DOWN)

    await h.admin.stream_settings(accepting=False)
    await h.admin.disconnect_streams()
    await eventually(lambda: not feed.live(user.user_id), timeout=10)
    await h.admin.set_liquidity(SYMBOL, part)
    await h.admin.set_price(SYMBOL, Decimal("97.50"))
    stop = await _stop_loss_on_sim(h, buy.client_order_id, 0)
    assert Decimal(stop["executed_qty"]) == part, stop
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    await h.admin.set_liquidity(SYMBOL, None)
    await h.admin.stream_settings(accepting=True)

    (reduced,) = await eventually_events(h.log, PositionReduced, 1, timeout=40)
    assert reduced.reason is CloseReason.STOP_LOSS
    assert reduced.exit_client_order_id == leg_client_id("sl", buy.client_order_id, 0)
    assert reduced.quantity == part
    assert reduced.remaining_quantity == held - part
    rest = await _protected_for(h, buy.client_order_id, 1)
    assert rest["quantity"] == held - part
    new_stop = await _stop_loss_on_sim(h, buy.client_order_id, 1)
    assert Decimal(new_stop["qty"]) == held - part

    # The take profit (+5 % of 100) closes the rest, from the stream.
    await h.admin.set_price(SYMBOL, Decimal("105.50"))
    (closed,) = await eventually_events(h.log, PositionClosed, 1, timeout=30)
    assert closed.close_reason is CloseReason.TAKE_PROFIT
    assert closed.exit_client_order_id == leg_client_id("tp", buy.client_order_id, 1)
    assert closed.quantity == held
    assert closed.realized_pnl > reduced.realized_pnl_total
    _consistent(closed)
    await settle(1.0)
    assert len(h.log.of(PositionReduced)) == 1
    assert len(h.log.of(PositionClosed)) == 1


async def test_a_sell_that_finds_its_stop_loss_sold_part_records_the_part_and_sells_the_rest(
    venue_harness: Harness,
) -> None:
    """The stop loss sold part of the position while the stream was down; a SELL then
    cancels the legs, finds that part (the leg ended with a fill), records it once and
    sells only what is left; the close carries the totals."""
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    running = await h.start(private_streams=True, track_interval_s=0.2, track_max_interval_s=60)
    buy = h.request(user, symbol=SYMBOL, tp="5", sl="2")
    await h.publish([buy])
    await eventually_events(h.log, OrderFilled, 1)
    (row,) = await _protected(h, 1)
    await _live(running, user)
    await eventually(lambda: _left_to_the_stream(h), timeout=20, message="left to the stream")
    feed = running.feed
    assert feed is not None
    held: Decimal = row["quantity"]
    part = (held * Decimal("0.5")).quantize(STEP, rounding=ROUND_DOWN)

    await h.admin.stream_settings(accepting=False)
    await h.admin.disconnect_streams()
    await eventually(lambda: not feed.live(user.user_id), timeout=10)
    await h.admin.set_liquidity(SYMBOL, part)
    await h.admin.set_price(SYMBOL, Decimal("97.50"))
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    await h.admin.set_liquidity(SYMBOL, None)

    sell = h.request(user, symbol=SYMBOL, side=Side.SELL)
    await h.publish([sell])
    (closed,) = await eventually_events(h.log, PositionClosed, 1, timeout=30)
    (reduced,) = h.log.of(PositionReduced)
    assert reduced.reason is CloseReason.STOP_LOSS
    assert reduced.quantity == part
    assert closed.close_reason is CloseReason.SIGNAL
    assert closed.exit_client_order_id == sell.client_order_id
    assert closed.quantity == held
    _consistent(closed)
    (sold,) = [o for o in await h.sim_orders(user) if o["client_order_id"] == sell.client_order_id]
    assert Decimal(sold["executed_qty"]) == held - part

    # The stream back: its reconciliation finds nothing more to record.
    await h.admin.stream_settings(accepting=True)
    await eventually(lambda: feed.live(user.user_id), timeout=30, message="stream back")
    await settle(2.0)
    assert len(h.log.of(PositionReduced)) == 1
    assert len(h.log.of(PositionClosed)) == 1
