"""Both executors against the simulator: place, protect, track, close — exactly once."""

from __future__ import annotations

from decimal import Decimal

from marketbot.contracts import (
    CloseReason,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    PositionClosed,
    RejectReason,
    RiskLevel,
    Side,
)
from marketbot.runtime.testing import eventually

from .conftest import Harness, eventually_events, settle


def _expected_pnl(entry: dict, exit_order: dict) -> tuple[Decimal, Decimal, Decimal]:
    entry_qty = Decimal(entry["executed_qty"])
    entry_price = Decimal(entry["cum_quote"]) / entry_qty
    exit_qty = Decimal(exit_order["executed_qty"])
    exit_price = Decimal(exit_order["cum_quote"]) / exit_qty
    fees = Decimal(entry["fee"]) * entry_price + Decimal(exit_order["fee"])
    return (exit_price - entry_price) * exit_qty - fees, entry_price, exit_price


async def test_take_profit_crossing_closes_the_position_with_its_pnl(
    venue_harness: Harness,
) -> None:
    h = venue_harness
    await h.admin.set_price("SOLUSDT", Decimal("150.00"))
    users = [await h.add_user(Decimal(1000)) for _ in range(3)]
    requests = [h.request(u, symbol="SOLUSDT", sl="2", tp="3") for u in users]
    await h.start()
    await h.publish(requests)

    filled = await eventually_events(h.log, OrderFilled, 3)
    placed = h.log.of(OrderPlaced)
    assert len(placed) == 3
    for event in placed:
        # medium risk: 2% of 1000 = 20 USDT at 150 -> 0.133 SOL (step 0.001)
        assert event.quantity == Decimal("0.133")
        assert event.take_profit_price == Decimal("154.5")
        assert event.stop_loss_price == Decimal("147")
    assert {e.client_order_id for e in filled} == {r.client_order_id for r in requests}

    await h.admin.set_price("SOLUSDT", Decimal("156.00"))
    closed = await eventually_events(h.log, PositionClosed, 3, timeout=30)
    assert {e.close_reason for e in closed} == {CloseReason.TAKE_PROFIT}
    for user in users:
        event = h.log.of(PositionClosed, user_id=user.user_id)[0]
        orders = await h.sim_orders(user)
        entry = next(o for o in orders if o["client_order_id"].startswith("mb-"))
        exit_order = next(
            o for o in orders if o["side"] == "SELL" and Decimal(o["executed_qty"]) > 0
        )
        pnl, entry_price, exit_price = _expected_pnl(entry, exit_order)
        assert event.entry_price == entry_price
        assert event.exit_price == exit_price
        assert event.quantity == Decimal(exit_order["executed_qty"])
        assert abs(event.realized_pnl - pnl) < Decimal("0.000001")
        assert event.realized_pnl > 0
        # exactly one entry per user
        assert len([o for o in orders if o["client_order_id"].startswith("mb-")]) == 1


async def test_a_close_signal_sells_the_position_and_cancels_its_exits(
    venue_harness: Harness,
) -> None:
    h = venue_harness
    await h.admin.set_price("ETHUSDT", Decimal("3200.00"))
    user = await h.add_user(Decimal(2000))
    await h.start()
    await h.publish([h.request(user, symbol="ETHUSDT")])
    await eventually_events(h.log, OrderFilled, 1)

    await h.admin.set_price("ETHUSDT", Decimal("3210.00"))
    close = h.request(user, symbol="ETHUSDT", side=Side.SELL, sl=None, tp=None)
    await h.publish([close])
    closed = (await eventually_events(h.log, PositionClosed, 1))[0]
    assert closed.close_reason is CloseReason.SIGNAL
    assert closed.exit_price == Decimal("3210.00")
    orders = await h.sim_orders(user)
    sell = next(o for o in orders if o["client_order_id"] == close.client_order_id)
    assert sell["status"] == "FILLED"
    assert Decimal(sell["executed_qty"]) == closed.quantity
    still_open = [o for o in orders if o["status"] in ("NEW", "UNTRIGGERED")]
    assert still_open == []
    fills = h.log.of(OrderFilled, client_order_id=close.client_order_id)
    assert len(fills) == 1

    # A second close finds nothing to close.
    again = h.request(user, symbol="ETHUSDT", side=Side.SELL, sl=None, tp=None)
    await h.publish([again])
    rejected = (await eventually_events(h.log, OrderRejected, 1))[0]
    assert rejected.reason is RejectReason.NO_POSITION


async def test_filter_and_balance_rejections_never_reach_the_exchange(
    venue_harness: Harness,
) -> None:
    h = venue_harness
    await h.admin.set_price("BTCUSDT", Decimal("65000"))
    poor = await h.add_user(Decimal("0.5"))
    tiny = await h.add_user(Decimal(1000))
    stale_user = await h.add_user(Decimal(1000))
    # A 1 USDT floor and 0.1% risk make orders the venue's 5 USDT minimum refuses.
    await h.start(min_order_quote=Decimal(1), risk_percent_low=Decimal("0.1"))

    await h.publish(
        [
            h.request(poor),
            h.request(tiny, risk=RiskLevel.LOW),
            h.request(stale_user, age_s=3600),
        ]
    )
    rejected = await eventually_events(h.log, OrderRejected, 3)
    by_user = {e.user_id: e for e in rejected}
    assert by_user[poor.user_id].reason is RejectReason.INSUFFICIENT_BALANCE
    # 0.1% of 1000 = 1 USDT -> 0.000015 BTC: the value 0.975 USDT is below the minimum 5
    assert by_user[tiny.user_id].reason is RejectReason.FILTER
    assert "min_notional" in by_user[tiny.user_id].message
    assert "5" in by_user[tiny.user_id].message
    assert by_user[stale_user.user_id].reason is RejectReason.STALE
    await settle(0.3)
    for user in (poor, tiny, stale_user):
        assert await h.sim_orders(user) == []
    assert h.log.of(OrderPlaced) == []


async def test_a_redelivered_request_does_not_place_a_second_order(bybit: Harness) -> None:
    h = bybit
    user = await h.add_user()
    request = h.request(user)
    await h.start()
    await h.publish([request])
    await eventually_events(h.log, OrderFilled, 1)
    # The same request arriving again (a fresh message id, as a replay would be).
    await h.bus.publish_raw(
        h.bus.subject(request.subject()), request.to_json(), "replay-1", request.type
    )

    async def consumed() -> bool:
        info = await h.bus.js.consumer_info(
            h.bus.stream("ORDER_REQUESTS"), h.bus.namespace.durable("executor-bybit-pro")
        )
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(consumed)
    assert len(await h.entries(user)) == 1
    assert len(h.log.of(OrderPlaced)) == 1
