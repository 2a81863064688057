"""Positions the way the exchanges run them, on both venues, against the simulator.

Each position is one bounded entry plus exit legs known by their own client ids; an exit
closes exactly the position whose leg it is; what the exchange holds is what the platform
says the user holds.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from marketbot.contracts import (
    CloseReason,
    Exchange,
    OrderFilled,
    OrderPlaced,
    OrderRequested,
    PositionClosed,
    Side,
)
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.venue import Protection, ProtectionSpec, Venue, leg_client_id
from marketbot.runtime.testing import eventually

from .conftest import Harness, eventually_events

SYMBOL = "SOLUSDT"
OPEN = ("NEW", "UNTRIGGERED", "PARTIALLY_FILLED")


async def _positions(h: Harness) -> list[dict[str, Any]]:
    async with h.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM positions ORDER BY opened_at")
    return [dict(r) for r in rows]


async def _all_protected(h: Harness, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        rows = await _positions(h)
        done = [r for r in rows if r["phase"] == "PROTECTED"]
        return rows if len(done) >= count else None

    result = await eventually(check, timeout=30, message=f"{count} protected positions")
    assert result is not None
    return result


def _legs_on_exchange(orders: list[dict[str, Any]], entry_id: str) -> list[dict[str, Any]]:
    """The exchange's orders that are this position's legs, by their derived ids only."""
    ids = {leg_client_id(tag, entry_id, 0) for tag in ("tp", "sl")}
    return [o for o in orders if o["client_order_id"] in ids]


async def test_five_alerts_on_one_bar_then_one_tp_one_sl_then_a_sell(
    venue_harness: Harness,
) -> None:
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    # Five buy alerts on one bar, same price; alert i asks TP i % and SL (6 - i) %, so
    # position 1 has the nearest TP (101) and position 5 the nearest SL (99).
    requests = [h.request(user, symbol=SYMBOL, tp=str(i), sl=str(6 - i)) for i in range(1, 6)]
    await h.start()
    await h.publish(requests)
    await eventually_events(h.log, OrderFilled, 5)
    await _all_protected(h, 5)
    ids = [r.client_order_id for r in requests]
    orders = await h.sim_orders(user)
    for entry_id in ids:
        legs = _legs_on_exchange(orders, entry_id)
        native = 2 if h.exchange is Exchange.BINANCE else 1  # Bybit: SL native, TP watched
        assert len(legs) == native, f"{entry_id}: {legs}"
        assert all(o["status"] in OPEN for o in legs)

    # The price reaches position 1's TP only.
    await h.admin.set_price(SYMBOL, Decimal("101.50"))
    tp = (await eventually_events(h.log, PositionClosed, 1))[0]
    assert tp.client_order_id == ids[0]
    assert tp.close_reason is CloseReason.TAKE_PROFIT
    assert tp.exit_client_order_id == leg_client_id("tp", ids[0], 0)

    # Then position 5's SL only.
    await h.admin.set_price(SYMBOL, Decimal("98.50"))
    await eventually_events(h.log, PositionClosed, 2)
    sl = next(e for e in h.log.of(PositionClosed) if e.client_order_id != ids[0])
    assert sl.client_order_id == ids[4]
    assert sl.close_reason is CloseReason.STOP_LOSS
    assert sl.exit_client_order_id == leg_client_id("sl", ids[4], 0)

    # A sell signal closes what is left (positions 2, 3, 4), each with its share.
    sell = h.request(user, symbol=SYMBOL, side=Side.SELL, sl=None, tp=None)
    await h.publish([sell])
    closed = await eventually_events(h.log, PositionClosed, 5)
    by_signal = [e for e in closed if e.close_reason is CloseReason.SIGNAL]
    assert sorted(e.client_order_id for e in by_signal) == sorted(ids[1:4])
    assert {e.exit_client_order_id for e in by_signal} == {sell.client_order_id}
    assert len({e.client_order_id for e in closed}) == 5, "each position closed once"

    # Ground truth: every exit that closed a position executed on the exchange under the
    # id the event names, for exactly the quantity closed; nothing is left working.
    orders = await h.sim_orders(user)
    by_id = {o["client_order_id"]: o for o in orders}
    for event in (tp, sl):
        assert event.exit_client_order_id is not None
        executed = by_id[event.exit_client_order_id]
        assert Decimal(executed["executed_qty"]) == event.quantity
    close = by_id[sell.client_order_id]
    assert Decimal(close["executed_qty"]) == sum(e.quantity for e in by_signal)
    assert [o for o in orders if o["status"] in OPEN] == []
    # What the exchange holds equals what the platform says: no open position, and the
    # only SOL left is the dust each entry's lot-step rounding left behind.
    fills = {e.client_order_id: e for e in h.log.of(OrderFilled) if e.side is Side.BUY}
    received = sum(
        f.filled_quantity - sum(x.fee for x in f.fills if x.fee_asset == "SOL")
        for f in fills.values()
    )
    sold = sum(e.quantity for e in closed)
    holdings = await h.admin.balances(user.account_id)
    assert holdings.get("SOL", Decimal(0)) == received - sold
    assert [p for p in await _positions(h) if p["status"] == "OPEN"] == []
    # The entries were bounded IOC limit orders and say so.
    for placed in h.log.of(OrderPlaced, side=Side.BUY):
        assert placed.max_slippage_percent == Decimal("0.5")
        assert placed.limit_price == Decimal("100.50")


async def test_a_partial_fill_is_protected_for_what_filled(venue_harness: Harness) -> None:
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    await h.admin.set_liquidity(SYMBOL, Decimal("0.1"))  # the entry asks 0.2 (20 USDT at 100)
    user = await h.add_user(Decimal(1000))
    request = h.request(user, symbol=SYMBOL)
    await h.start()
    await h.publish([request])
    filled = (await eventually_events(h.log, OrderFilled, 1))[0]
    assert filled.filled_quantity == Decimal("0.1")
    position = (await _all_protected(h, 1))[0]
    fee = sum(f.fee for f in filled.fills if f.fee_asset == "SOL")
    assert position["quantity"] == Decimal("0.1") - fee - (Decimal("0.1") - fee) % Decimal("0.001")
    legs = _legs_on_exchange(await h.sim_orders(user), request.client_order_id)
    assert legs
    for leg in legs:
        assert Decimal(leg["qty"]) == position["quantity"]


class _Crash(BaseException):
    """Stands for kill -9: nothing after it runs, no handler sees it."""


class _DyingVenue:
    """The real venue, except that the process dies around the first ``protect`` call."""

    def __init__(self, venue: Venue, *, after_send: bool) -> None:
        self._venue = venue
        self._after_send = after_send
        self.died = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._venue, name)

    async def protect(
        self, signer: Signer, spec: ProtectionSpec, *, first_attempt: bool = False
    ) -> Protection:
        if self._after_send:
            await self._venue.protect(
                signer, spec, first_attempt=first_attempt
            )  # the legs exist; the record never comes
        self.died.set()
        raise _Crash


async def _crash(running: Any) -> None:
    """Cancel every task of a 'killed' executor without letting it finish anything."""
    engine = running.engine
    tasks = [*running._tasks, engine._task]
    for tier in engine._tiers:
        tasks.extend(tier.inflight)
    for task in tasks:
        task.cancel()
    await asyncio.wait([t for t in tasks if t is not None], timeout=5)


@pytest.mark.parametrize("after_send", [False, True], ids=["before-protect", "after-protect"])
async def test_an_executor_killed_between_fill_and_protection_protects_once(
    venue_harness: Harness, after_send: bool
) -> None:
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    request: OrderRequested = h.request(user, symbol=SYMBOL)
    dying = _DyingVenue(h.venue(), after_send=after_send)
    first = await h.start(venue=dying, protect_settle_s=1.0)
    h.running.remove(first)
    await h.publish([request])
    await asyncio.wait_for(dying.died.wait(), timeout=30)
    await _crash(first)
    positions = await _positions(h)
    assert len(positions) == 1
    assert positions[0]["phase"] == "UNPROTECTED"

    await h.start(protect_settle_s=1.0)
    await _all_protected(h, 1)
    legs = _legs_on_exchange(await h.sim_orders(user), request.client_order_id)
    native = 2 if h.exchange is Exchange.BINANCE else 1
    assert len(legs) == native, "protected exactly once"
    entries = await h.entries(user)
    assert len(entries) == 1
