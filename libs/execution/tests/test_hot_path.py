"""The hot path's shortcuts keep the outcomes (issue 19): an entry's row is recorded with
its attempt marked, many at once; an entry with no stop loss and no take profit has no
leg to place, so its position is stored protected without a protection round trip."""

from __future__ import annotations

from decimal import Decimal

from marketbot.contracts import OrderFilled, OrderPlaced, PositionClosed, Side

from .conftest import Harness, eventually_events


async def test_entries_without_exits_are_recorded_and_opened_protected(
    venue_harness: Harness,
) -> None:
    h = venue_harness
    await h.admin.set_price("XRPUSDT", Decimal("0.5000"))
    users = [await h.add_user(Decimal(1000)) for _ in range(12)]
    await h.start()
    await h.publish([h.request(u, symbol="XRPUSDT", sl=None, tp=None) for u in users])
    filled = await eventually_events(h.log, OrderFilled, 12, timeout=30)
    assert {e.user_id for e in filled} == {u.user_id for u in users}
    assert len({e.client_order_id for e in h.log.of(OrderPlaced)}) == 12
    rows = await h.pool.fetch(
        "SELECT o.state, o.attempts, o.settle_until IS NOT NULL AS settled, p.phase, p.exits, "
        "p.protect_attempts FROM orders o JOIN positions p "
        "ON p.entry_client_order_id = o.client_order_id"
    )
    assert len(rows) == 12
    for row in rows:
        # one attempt, marked with the row itself (GroupInsert), before the send
        assert (row["state"], row["attempts"], row["settled"]) == ("FILLED", 1, True)
        # nothing to protect: stored PROTECTED, no protect attempt, no legs
        assert (row["phase"], row["protect_attempts"]) == ("PROTECTED", 0)
        assert row["exits"] in ("[]", [])
    # the only exchange orders are the entries (no leg of any kind)
    for user in users:
        orders = await h.sim_orders(user)
        assert [o["client_order_id"] for o in orders] == [
            e.client_order_id for e in filled if e.user_id == user.user_id
        ]
    # a signal's sell still closes such a position
    await h.publish([h.request(users[0], symbol="XRPUSDT", side=Side.SELL, sl=None, tp=None)])
    closed = await eventually_events(h.log, PositionClosed, 1, timeout=30)
    assert closed[0].user_id == users[0].user_id
