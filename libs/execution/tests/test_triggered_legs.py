"""A Bybit stop loss reported "Triggered" with nothing filled is executing, not dead.

Bybit's enum.mdx: "`Triggered` instantaneous state for conditional orders from Untriggered
to New"; the same order then fills: its ``orderType`` "For TP/SL orders, is the order type
after the order was triggered" (order_open-order.mdx). "Triggered" is listed among the
*closed* statuses, so it is neither in the open orders (``openOnly=0``) nor cancellable,
yet nothing has filled. The simulator holds triggered orders in that state on request
(``hold_triggers``), which makes the instant observable.
"""

from __future__ import annotations

from decimal import Decimal

from marketbot.contracts import CloseReason, OrderFilled, OrderRejected, PositionClosed, Side
from marketbot.exchanges.venue import leg_client_id
from marketbot.runtime.testing import eventually

from .conftest import Harness, eventually_events, settle
from .test_streams_lifecycle import SYMBOL, _left_to_the_stream, _live, _protected


async def _triggered(h: Harness, client_order_id: str) -> bool:
    orders = await h.admin.orders()
    return any(
        o["client_order_id"] == client_order_id and o["status"] == "TRIGGERED" for o in orders
    )


async def test_a_triggered_stop_loss_is_left_to_fill_by_a_close_and_a_reconnect(
    bybit: Harness,
) -> None:
    h = bybit
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    running = await h.start(private_streams=True, track_interval_s=0.2, track_max_interval_s=60)
    buy = h.request(user, symbol=SYMBOL, tp="5", sl="2")
    await h.publish([buy])
    await eventually_events(h.log, OrderFilled, 1)
    await _protected(h, 1)
    await _live(running, user)
    await eventually(lambda: _left_to_the_stream(h), timeout=20, message="left to the stream")
    feed = running.feed
    assert feed is not None
    stop_id = leg_client_id("sl", buy.client_order_id, 0)

    # The stop loss triggers; its market order has not executed yet.
    await h.admin.hold_triggers(True)
    await h.admin.set_price(SYMBOL, Decimal("97.50"))
    await eventually(lambda: _triggered(h, stop_id), timeout=10, message="stop loss triggered")

    # A SELL now must not sell what the stop loss is selling: its cancel is refused, the
    # read says "Triggered", and the close leaves the position to its own leg.
    since = await h.admin.server_ms()
    sell = h.request(user, symbol=SYMBOL, side=Side.SELL)
    await h.publish([sell])
    (rejected,) = await eventually_events(
        h.log, OrderRejected, 1, client_order_id=sell.client_order_id
    )
    assert "closed by their own exit legs" in rejected.message
    paths = [r[2] for r in (await h.admin.requests(since_ms=since))["requests"]]
    assert "/v5/order/create" not in paths, paths

    # A reconnect meanwhile: the reconciliation reads the leg "Triggered" and waits for its
    # fill (no new legs: it is not dead).
    before = feed.reconciliations
    await h.admin.disconnect_streams()
    await eventually(lambda: feed.reconciliations > before, timeout=30, message="reconciled")
    await settle(1.0)
    async with h.pool.acquire() as conn:
        generation = await conn.fetchval(
            "SELECT generation FROM positions WHERE entry_client_order_id = $1",
            buy.client_order_id,
        )
    assert generation == 0
    assert h.log.of(PositionClosed) == []

    # Its order executes: the position is closed by the stop loss, once.
    assert await h.admin.hold_triggers(False) == 1
    (closed,) = await eventually_events(h.log, PositionClosed, 1, timeout=30)
    assert closed.close_reason is CloseReason.STOP_LOSS
    assert closed.exit_client_order_id == stop_id
    await settle(1.0)
    assert len(h.log.of(PositionClosed)) == 1
    sim_sells = [o for o in await h.sim_orders(user) if o["side"] == "SELL"]
    assert [o["client_order_id"] for o in sim_sells] == [stop_id]
