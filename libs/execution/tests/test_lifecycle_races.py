"""Races around one position, against the simulator: a signal's close and an exit order of
the tracker never both sell the same position; a leg still filling is not an exit yet."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from marketbot.contracts import (
    CloseReason,
    OrderFilled,
    OrderRejected,
    OrderRequested,
    PositionClosed,
    RejectReason,
    Side,
)
from marketbot.exchanges.errors import Rejected
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.venue import (
    OrderRequest,
    OrderState,
    Protection,
    ProtectionSpec,
    Venue,
    leg_client_id,
)
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


class _PriceJumpsBeforeProtection:
    """The real venue; the price passes the take profit between the fill and its
    protection, and the exit order's answer then comes later than the client waits."""

    def __init__(self, venue: Venue, h: Harness) -> None:
        self._venue = venue
        self._h = h
        self._jumped = False
        self.fault_ms = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._venue, name)

    async def price(self, symbol: str) -> Decimal:
        return await self._h.admin.price(symbol)  # uncached: the jump is seen at once

    async def protect(
        self, signer: Signer, spec: ProtectionSpec, *, first_attempt: bool = False
    ) -> Protection:
        if not self._jumped:
            self._jumped = True
            await self._h.admin.set_price(SYMBOL, Decimal("103.50"))
            self.fault_ms = int((await self._venue.server_time()).timestamp() * 1000)
            # Executed 12 s after it arrives: past the client's 10 s read timeout, and
            # past the settle time (6 s) counted from the attempt mark.
            await self._h.admin.set_fault(
                "latency", next_n=1, latency_ms=12000, path="/api/v3/order", method="POST"
            )
        return await self._venue.protect(signer, spec, first_attempt=first_attempt)


async def test_an_exit_order_with_a_late_answer_is_not_sent_again(binance: Harness) -> None:
    h = binance
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000), SOL=Decimal(1))
    entry = h.request(user, symbol=SYMBOL, tp="3", sl="2")
    venue = _PriceJumpsBeforeProtection(h.venue(), h)
    await h.start(venue=venue)
    await h.publish([entry])
    filled = (await eventually_events(h.log, OrderFilled, 1))[0]
    closed = (await eventually_events(h.log, PositionClosed, 1, timeout=60))[0]
    assert closed.close_reason is CloseReason.TAKE_PROFIT
    exit_id = closed.exit_client_order_id
    assert exit_id is not None

    async def late_one_done() -> list[dict[str, Any]] | None:
        # The delayed request executes (creates its order) 12 s after it arrived, which
        # was after the fault was set: wait for it, whatever else was sent meanwhile.
        orders = [o for o in await h.sim_orders(user) if o["client_order_id"] == exit_id]
        late = [o for o in orders if o["created_ms"] >= venue.fault_ms + 12000]
        return orders if late else None

    orders = await eventually(late_one_done, timeout=30, message="the delayed exit executed")
    # Ground truth: one exit order sold the position once; the user's own SOL is untouched.
    assert len([o for o in orders if Decimal(o["executed_qty"]) > 0]) == 1, orders
    received = filled.filled_quantity - sum(f.fee for f in filled.fills if f.fee_asset == "SOL")
    holdings = await h.admin.balances(user.account_id)
    assert holdings["SOL"] == Decimal(1) + received - closed.quantity


class _Crash(BaseException):
    """Stands for kill -9: nothing after it runs, no handler sees it."""


class _RefusesTheClose:
    """The real venue, except that the exchange refuses the one close order."""

    def __init__(self, venue: Venue, client_order_id: str) -> None:
        self._venue = venue
        self._client_order_id = client_order_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._venue, name)

    async def place_order(self, signer: Signer, order: OrderRequest) -> OrderState:
        if order.client_order_id == self._client_order_id:
            raise Rejected("refused", reason=RejectReason.EXCHANGE, exchange=self._venue.exchange)
        return await self._venue.place_order(signer, order)


async def test_a_close_that_ended_but_never_released_its_position_is_released_after_a_crash(
    venue_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    entry = h.request(user, symbol=SYMBOL)
    sell = h.request(user, symbol=SYMBOL, side=Side.SELL, sl=None, tp=None)
    first = await h.start(venue=_RefusesTheClose(h.venue(), sell.client_order_id))
    h.running.remove(first)
    await h.publish([entry])
    await eventually_events(h.log, OrderFilled, 1)
    await eventually(lambda: _is(_phase(h, entry), "PROTECTED"), timeout=30, message="protected")

    # The close is refused (its legs are cancelled already); the process dies right after
    # recording that, before the position is released.
    released = Repository.clear_closing

    async def dies(*args: Any, **kwargs: Any) -> None:
        raise _Crash

    monkeypatch.setattr(Repository, "clear_closing", staticmethod(dies))
    await h.publish([sell])
    await eventually_events(h.log, OrderRejected, 1, client_order_id=sell.client_order_id)
    await _crash(first)
    monkeypatch.setattr(Repository, "clear_closing", staticmethod(released))
    async with h.pool.acquire() as conn:
        owner = await conn.fetchval(
            "SELECT closing_order FROM positions WHERE entry_client_order_id = $1",
            entry.client_order_id,
        )
    assert owner == sell.client_order_id

    # After the restart the tracker releases it and protects it anew.
    await h.start()
    await eventually(lambda: _is(_phase(h, entry), "PROTECTED"), timeout=30, message="protected")
    async with h.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT closing_order, generation FROM positions WHERE entry_client_order_id = $1",
            entry.client_order_id,
        )
    assert row["closing_order"] is None
    assert row["generation"] == 1  # new leg ids: the cancelled ones are never reused


def _phase(h: Harness, entry: OrderRequested) -> Any:
    async def read() -> str | None:
        async with h.pool.acquire() as conn:
            value: str | None = await conn.fetchval(
                "SELECT phase FROM positions WHERE entry_client_order_id = $1",
                entry.client_order_id,
            )
        return value

    return read


async def _crash(running: Any) -> None:
    """Cancel every task of a 'killed' executor without letting it finish anything."""
    engine = running.engine
    tasks = [*running._tasks, engine._task]
    for tier in engine._tiers:
        tasks.extend(tier.inflight)
    for task in tasks:
        if task is not None:
            task.cancel()
    await asyncio.wait([t for t in tasks if t is not None], timeout=5)
