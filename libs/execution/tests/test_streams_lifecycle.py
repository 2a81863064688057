"""The private streams drive the lifecycle, on both venues, against the simulator.

Real NATS, PostgreSQL and the simulator's HTTP and WebSocket ports. The simulator's request
log (every HTTP request, by account) is the ground truth for "nothing is polled".
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from marketbot.contracts import (
    CloseReason,
    Exchange,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    PositionClosed,
    RiskLevel,
)
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import HttpSettings
from marketbot.exchanges.venue import leg_client_id
from marketbot.execution.app import RunningExecutor
from marketbot.runtime.clock import SystemClock
from marketbot.runtime.testing import eventually

from .conftest import Harness, User, eventually_events, settle

SYMBOL = "SOLUSDT"
STREAMS = {
    "private_streams": True,
    "track_interval_s": 0.2,
    "track_max_interval_s": 0.5,
}


async def _protected(h: Harness, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        async with h.pool.acquire() as conn:
            rows = [dict(r) for r in await conn.fetch("SELECT * FROM positions")]
        done = [r for r in rows if r["phase"] == "PROTECTED"]
        return done if len(done) >= count else None

    found = await eventually(check, timeout=30, message=f"{count} protected positions")
    assert found is not None
    return found


async def _live(running: RunningExecutor, *users: User) -> None:
    feed = running.feed
    assert feed is not None
    await eventually(
        lambda: all(feed.live(u.user_id) for u in users), timeout=60, message="streams live"
    )
    # The start-up reconciliation of each account has run.
    await eventually(
        lambda: feed.reconciliations >= len(users), timeout=60, message="reconciliations"
    )


async def _requests(h: Harness, user: User, since_ms: int) -> list[list[Any]]:
    log = await h.admin.requests(since_ms=since_ms, account_id=user.account_id)
    return list(log["requests"])


async def test_a_take_profit_closes_the_position_from_the_stream_without_polling(
    venue_harness: Harness,
) -> None:
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    running = await h.start(**STREAMS)
    # A first order opens the user's stream, whose reconciliation reads the balance once
    # (the snapshot the wallet stream keeps); the third order is the steady state.
    await h.publish([h.request(user, symbol=SYMBOL, tp="3", sl="2")])
    await eventually_events(h.log, OrderFilled, 1)
    await _protected(h, 1)
    await _live(running, user)
    await h.publish([h.request(user, symbol=SYMBOL, tp="3", sl="2")])
    await eventually_events(h.log, OrderFilled, 2)
    await _protected(h, 2)
    assert running.feed is not None
    assert running.feed.balances.known(user.user_id)
    request = h.request(user, symbol=SYMBOL, tp="3", sl="2")
    since = await h.admin.server_ms()
    await h.publish([request])
    await eventually_events(h.log, OrderFilled, 3)
    await _protected(h, 3)
    order_requests = await _requests(h, user, since)
    # The entry (one create) and its protection; no balance read (the wallet stream's).
    paths = [r[2] for r in order_requests]
    assert not any("wallet-balance" in p or p == "/api/v3/account" for p in paths), paths

    # Steady state: two protected positions, many tracker passes, not one request.
    quiet = await h.admin.server_ms()
    await settle(2.0)
    assert await _requests(h, user, quiet) == []
    assert running.tracker.skipped > 0

    # The take profit (+3 % of 100) is reached on the simulator.
    await h.admin.set_price(SYMBOL, Decimal("103.50"))
    closed = await eventually_events(h.log, PositionClosed, 3, timeout=20)
    assert {e.close_reason for e in closed} == {CloseReason.TAKE_PROFIT}
    exits = {e.exit_client_order_id for e in closed}
    assert leg_client_id("tp", request.client_order_id, 0) in exits
    after = await _requests(h, user, quiet)
    reads = [r for r in after if r[1] == "GET"]
    if h.exchange is Exchange.BINANCE:
        # The OCO's take-profit leg executed on the exchange; its fill came by stream.
        assert after == []
    else:
        # Bybit watches the take profit: per position, the stop loss cancelled by its id
        # and one market sell; the fills came by stream (no order or trade read).
        assert sorted(r[2] for r in after) == sorted(
            ["/v5/order/cancel", "/v5/order/create"] * 3
        ), after
    assert reads == []
    # Nothing corrected: the stream said everything.
    assert running.feed is not None
    assert running.feed.corrections == 0


async def test_b_fills_missed_while_the_stream_is_cut_are_found_once_after_the_reconnect(
    venue_harness: Harness,
) -> None:
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    users = [await h.add_user(Decimal(1000)) for _ in range(3)]
    # The tracker would look at nothing for a minute: what the gap hid is found by the
    # reconciliation after the reconnect, not by a poll.
    running = await h.start(private_streams=True, track_interval_s=0.2, track_max_interval_s=60)
    requests = [h.request(u, symbol=SYMBOL, tp="5", sl="2") for u in users]
    await h.publish(requests)
    await eventually_events(h.log, OrderFilled, 3)
    await _protected(h, 3)
    await _live(running, *users)
    feed = running.feed
    assert feed is not None

    # Once the tracker has seen each account live, it leaves their positions alone.
    await eventually(
        lambda: _left_to_the_stream(h), timeout=20, message="positions left to the stream"
    )

    # An outage: every stream is cut and no new connection is accepted, while the stop
    # losses fill on the exchange.
    await h.admin.stream_settings(accepting=False)
    await h.admin.disconnect_streams()
    await eventually(lambda: not any(feed.live(u.user_id) for u in users), timeout=10)
    await h.admin.set_price(SYMBOL, Decimal("97.50"))
    await eventually(
        lambda: _all_filled(h, requests), timeout=10, message="stop losses filled on the sim"
    )
    await settle(1.0)
    assert h.log.of(PositionClosed) == [], "nothing can be known during the gap"

    await h.admin.stream_settings(accepting=True)
    closed = await eventually_events(h.log, PositionClosed, 3, timeout=40)
    await settle(2.0)
    closed = h.log.of(PositionClosed)
    assert sorted(e.client_order_id for e in closed) == sorted(
        r.client_order_id for r in requests
    ), "every missed fill found exactly once"
    assert {e.close_reason for e in closed} == {CloseReason.STOP_LOSS}
    assert feed.corrections == 3
    async with h.pool.acquire() as conn:
        open_count = await conn.fetchval("SELECT count(*) FROM positions WHERE status = 'OPEN'")
    assert open_count == 0


async def _left_to_the_stream(h: Harness) -> bool:
    async with h.pool.acquire() as conn:
        soon = await conn.fetchval(
            "SELECT count(*) FROM positions WHERE status = 'OPEN' "
            "AND next_check_at < now() + interval '30 seconds'"
        )
    return bool(soon == 0)


# What one account's open-order read is, per venue: Binance's open OCO lists
# (rest-api.md "Query Open Order lists", weight 6) and Bybit's open spot TP/SL orders
# (order_open-order.mdx, 50 a page); and its balance read (the wallet snapshot).
OPEN_READ = {
    Exchange.BINANCE: "GET /api/v3/openOrderList",
    Exchange.BYBIT: "GET /v5/order/realtime",
}
BALANCE_READ = {
    Exchange.BINANCE: "GET /api/v3/account",
    Exchange.BYBIT: "GET /v5/account/wallet-balance",
}


async def test_b_a_reconnect_reads_each_account_s_open_orders_once_not_each_position(
    venue_harness: Harness,
) -> None:
    """After a reconnect the account's open orders are read once (one page here) instead
    of each position's legs; only the positions whose legs are not in that answer (their
    stop loss filled during the gap) are looked up by id, and each of those fills is
    recorded once."""
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(10_000))
    running = await h.start(private_streams=True, track_interval_s=0.2, track_max_interval_s=60)
    near = [h.request(user, symbol=SYMBOL, tp="5", sl="2") for _ in range(2)]
    far = [h.request(user, symbol=SYMBOL, tp="5", sl="10") for _ in range(3)]
    await h.publish([*near, *far])
    await eventually_events(h.log, OrderFilled, 5)
    await _protected(h, 5)
    await _live(running, user)
    feed = running.feed
    assert feed is not None
    open_read = OPEN_READ[h.exchange]
    await eventually(
        lambda: _left_to_the_stream(h), timeout=20, message="positions left to the stream"
    )

    # The balance read after the stream came up is done (the refresh waits for the
    # orders' burst to end): only the reconnect's reads follow.
    await eventually(
        lambda: feed.balances.current(user.user_id), timeout=20, message="balance refreshed"
    )
    # A reconnect with nothing missed: one read for the account's five positions.
    before = feed.reconciliations
    cut = await h.admin.server_ms()
    await h.admin.disconnect_streams()
    await eventually(lambda: feed.reconciliations > before, timeout=30, message="reconciled")

    async def read(since: int, count: int) -> dict[str, int] | None:
        counts: dict[str, int] = (await h.admin.requests(since_ms=since))["counts"]
        done = counts.get(open_read, 0) >= count
        return counts if done and counts.get(BALANCE_READ[h.exchange], 0) >= 1 else None

    await eventually(lambda: read(cut, 1), timeout=30, message="the reconciliation's reads")
    await settle(1.0)
    counts = (await h.admin.requests(since_ms=cut))["counts"]
    assert counts == {open_read: 1, BALANCE_READ[h.exchange]: 1}, counts
    assert feed.corrections == 0

    # An outage during which the two near stop losses fill: after the reconnect, one
    # open-order read, and only those two positions are looked up by their ids.
    await h.admin.stream_settings(accepting=False)
    await h.admin.disconnect_streams()
    await eventually(lambda: not feed.live(user.user_id), timeout=10)
    await h.admin.set_price(SYMBOL, Decimal("97.50"))
    await eventually(lambda: _all_filled(h, near), timeout=10, message="near stop losses")
    gap = await h.admin.server_ms()
    await h.admin.stream_settings(accepting=True)
    closed = await eventually_events(h.log, PositionClosed, 2, timeout=40)
    await settle(2.0)
    closed = h.log.of(PositionClosed)
    assert sorted(e.client_order_id for e in closed) == sorted(r.client_order_id for r in near)
    assert feed.corrections == 2
    counts = (await h.admin.requests(since_ms=gap))["counts"]
    if h.exchange is Exchange.BINANCE:
        # Then each missing list by its id (and its legs by theirs, to see which executed).
        assert counts[open_read] == 1, counts
        assert counts["GET /api/v3/orderList"] == 2, counts
    else:
        # One page of open TP/SL orders, then each missing stop loss by its orderLinkId
        # (the lookup, and the read of the executed leg its exit is recorded from).
        assert counts[open_read] == 1 + 2 * 2, counts
        assert counts["GET /v5/execution/list"] == 2, counts
    async with h.pool.acquire() as conn:
        still_open = await conn.fetchval("SELECT count(*) FROM positions WHERE status = 'OPEN'")
    assert still_open == 3


async def _all_filled(h: Harness, requests: list[Any]) -> bool:
    ids = {leg_client_id("sl", r.client_order_id, 0) for r in requests}
    orders = await h.admin.orders()
    filled = [o for o in orders if o["client_order_id"] in ids and o["status"] == "FILLED"]
    return len(filled) == len(ids)


class SteppedClock(SystemClock):
    """The system clock, moved forward on demand (the tracker's schedule runs on it; the
    exchange's own clock and the streams' signatures keep real time)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.offset_s)

    def monotonic(self) -> float:
        return super().monotonic() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


@pytest.mark.slow
async def test_c_a_thousand_open_positions_tracked_for_five_minutes_cost_no_requests(
    binance: Harness,
) -> None:
    h = binance
    users_n, per_user = 100, 10
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    users = [await h.add_user(Decimal(100_000)) for _ in range(users_n)]
    clock = SteppedClock()
    # Setting up 1,000 positions quickly: the client's own per-IP budget is lifted (the
    # simulator's limits are off); what is measured is the simulator's request log.
    venue = create_venue(
        h.exchange, h.url, settings=VenueSettings(http=HttpSettings(rate_limit_scale=1e6))
    )
    h.venues.append(venue)
    running = await h.start(
        venue=venue,
        clock=clock,
        private_streams=True,
        track_interval_s=2.0,
        track_max_interval_s=30.0,
        track_batch=2000,
        tier_concurrency=64,
        max_request_age_s=900.0,
    )
    feed = running.feed
    assert feed is not None
    requests = [
        h.request(u, symbol=SYMBOL, tp="20", sl="20", risk=RiskLevel.LOW)
        for u in users
        for _ in range(per_user)
    ]
    await h.publish(requests)
    total = users_n * per_user
    await eventually(
        lambda: len(h.log.of(OrderFilled)) + len(h.log.of(OrderRejected)) >= total,
        timeout=600,
        message=f"{total} order outcomes",
    )
    assert h.log.of(OrderRejected) == []
    await _protected(h, total)
    await _live(running, *users)

    # Five minutes of the tracker's time, in 30 s steps (its longest interval): every
    # position comes due ten times; each time it is left to the stream.
    start = await h.admin.server_ms()
    skipped = running.tracker.skipped
    for _ in range(10):
        clock.advance(30.0)
        await running.tracker.tick()
    assert running.tracker.skipped - skipped >= 10 * total
    log = await h.admin.requests(since_ms=start)
    assert log["total"] == 0, log["counts"]

    # A reconnect: the reconciliation reads each account's open order lists once (weight
    # 6), not each position's list, and its balances (the snapshot the wallet stream keeps
    # from there); nothing else, nothing found the stream had missed.
    cut = await h.admin.server_ms()
    await h.admin.disconnect_streams()
    await eventually(lambda: feed.reconciliations >= 2 * users_n, timeout=120)

    async def reconciled() -> dict[str, int] | None:
        counts: dict[str, int] = (await h.admin.requests(since_ms=cut))["counts"]
        done = counts.get("GET /api/v3/openOrderList", 0) >= users_n
        return counts if done and counts.get("GET /api/v3/account", 0) >= users_n else None

    counts = await eventually(reconciled, timeout=120, message="reconciliation reads")
    await settle(1.0)
    counts = (await h.admin.requests(since_ms=cut))["counts"]
    assert counts == {"GET /api/v3/openOrderList": users_n, "GET /api/v3/account": users_n}
    assert feed.corrections == 0


async def test_an_account_with_nothing_open_stops_being_followed(bybit: Harness) -> None:
    h = bybit
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    holder = await h.add_user(Decimal(1000))
    broke = await h.add_user(Decimal(1))
    running = await h.start(private_streams=True)
    feed = running.feed
    assert feed is not None
    await h.publish([h.request(holder, symbol=SYMBOL), h.request(broke, symbol=SYMBOL)])
    await eventually_events(h.log, OrderFilled, 1)
    await eventually_events(h.log, OrderRejected, 1)
    await _live(running, holder, broke)
    feed.config = replace(feed.config, idle_s=0.0)
    # The account with an open position keeps its stream; the other one's is closed.
    assert await feed.sweep() == [broke.user_id]
    assert feed.streams.users() == [holder.user_id]
    await eventually(lambda: not feed.live(broke.user_id))
    assert feed.live(holder.user_id)


async def test_b_an_entry_whose_fill_report_was_cut_off_is_recorded_once_by_reconciliation(
    bybit: Harness,
) -> None:
    """Bybit's create answer is only an acknowledgement: with the stream up the fill is
    expected on the ``order`` and ``execution`` topics. The connection stalls (open and
    silent, as a half-open TCP connection) just before the order: its reports never come;
    the heartbeat notices, and the reconciliation after the reconnect records the fill,
    once."""
    h = bybit
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    running = await h.start(
        private_streams=True,
        stream_fill_grace_s=120.0,
        stream_ping_interval_s=1.0,
        stream_pong_timeout_s=1.0,
    )
    feed = running.feed
    assert feed is not None
    await h.publish([h.request(user, symbol=SYMBOL, tp=None, sl=None)])
    await eventually_events(h.log, OrderFilled, 1)
    await _live(running, user)
    request = h.request(user, symbol=SYMBOL, tp=None, sl=None)
    # The connection stalls; no new connection is accepted until the test says so.
    await h.admin.stream_settings(accepting=False)
    await h.admin.disconnect_streams(user.account_id, mode="stall")
    await h.publish([request])
    entries = await eventually(
        lambda: _entry_filled_on_sim(h, user, request.client_order_id), timeout=20
    )
    assert entries
    await eventually(lambda: not feed.live(user.user_id), timeout=10)
    await settle(1.0)
    assert len(h.log.of(OrderFilled)) == 1, "the fill cannot be known yet"
    placed = h.log.of(OrderPlaced, client_order_id=request.client_order_id)
    assert len(placed) == 1, "acknowledged, followed on the stream"
    await h.admin.stream_settings(accepting=True)
    await eventually_events(h.log, OrderFilled, 2, timeout=40)
    await settle(1.0)
    filled = h.log.of(OrderFilled, client_order_id=request.client_order_id)
    assert len(filled) == 1
    assert feed.corrections == 1


async def _entry_filled_on_sim(h: Harness, user: User, client_order_id: str) -> bool:
    orders = await h.sim_orders(user)
    return any(o["client_order_id"] == client_order_id and o["status"] == "FILLED" for o in orders)
