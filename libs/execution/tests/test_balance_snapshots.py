"""Balance snapshots kept across executor restarts (balances.py, snapshots.py).

The real stack: embedded PostgreSQL and NATS, the simulator over HTTP and WebSocket. An
executor stops (its snapshots written), a new one starts on the same database, and the
simulator's request log says which balance reads were made before the orders.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from marketbot.contracts import OrderFilled, OrderRejected, RejectReason
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import HttpSettings
from marketbot.execution.app import RunningExecutor
from marketbot.execution.snapshots import BalanceRefresher
from marketbot.runtime.testing import eventually

from .conftest import Harness, User, eventually_events
from .test_streams_lifecycle import STREAMS, SYMBOL, _live

BALANCE_READS = {"/v5/account/wallet-balance", "/api/v3/account"}
CREATES = {"/v5/order/create", "/api/v3/order"}


def _reads(h: Harness, source: str) -> float:
    """Balances the executor used to size orders, by source (its own counter)."""
    value = REGISTRY.get_sample_value(
        "marketbot_execution_balance_reads_total",
        {"exchange": h.exchange.value, "source": source},
    )
    return value or 0.0


async def _snapshot_rows(h: Harness) -> dict[str, dict[str, Any]]:
    async with h.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT user_id, balances::text AS b, taken_at FROM balance_snapshots"
        )
    return {
        r["user_id"]: {
            "usdt": next(
                (Decimal(x["free"]) for x in json.loads(r["b"]) if x["asset"] == "USDT"),
                None,
            ),
            "taken_at": r["taken_at"],
        }
        for r in rows
    }


async def _set_snapshot_usdt(h: Harness, user: User, free: Decimal, age_s: float = 0.0) -> None:
    """What the table says the account held (as if the balance changed while no
    executor ran), and how long ago it was known current."""
    async with h.pool.acquire() as conn:
        await conn.execute(
            "UPDATE balance_snapshots SET balances = $2::jsonb, "
            "taken_at = now() - make_interval(secs => $3) WHERE user_id = $1",
            user.user_id,
            json.dumps([{"asset": "USDT", "free": str(free), "locked": "0"}]),
            age_s,
        )


async def _notional(h: Harness, client_order_id: str) -> Decimal:
    async with h.pool.acquire() as conn:
        value = await conn.fetchval(
            "SELECT quote_amount FROM orders WHERE client_order_id = $1", client_order_id
        )
    assert value is not None
    return Decimal(value)


async def _sim_usdt(h: Harness, user: User) -> Decimal:
    return (await h.admin.balances_detail(user.account_id))["USDT"]["free"]


async def _first_run(h: Harness, users: list[User]) -> RunningExecutor:
    """One order per user through a first executor, whose streams keep the balances; it
    stops, and its snapshots are in the table."""
    first = await h.start(**STREAMS)
    await h.publish([h.request(u, symbol=SYMBOL, tp="5", sl="2") for u in users])
    await eventually_events(h.log, OrderFilled, len(users), timeout=60)
    feed = first.feed
    assert feed is not None
    await eventually(
        lambda: all(feed.balances.current(u.user_id) for u in users),
        timeout=60,
        message="every balance refreshed while the streams are up",
    )
    await first.stop()
    rows = await _snapshot_rows(h)
    assert set(rows) >= {u.user_id for u in users}
    return first


async def test_a_restart_with_limits_on_serves_many_binance_accounts_from_their_snapshots(
    binance: Harness,
) -> None:
    """40 Binance accounts, and a weight limit on which reading each balance first (40 x
    20 = 800 weight) does not fit beside the restart's own requests: the orders after the
    restart size from the kept snapshots (no order reads a balance), none waits past its
    age, and the background refresh reads only what a quarter of the budget allows."""
    h = binance
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    users = [await h.add_user(Decimal(1000)) for _ in range(40)]
    await _first_run(h, users)
    try:
        # Budget 900 (0.9 of 1,000), the balance refresh's share a quarter of it: at most
        # 11 balance reads of 20 weight in the minute, whatever else the restart spends.
        await h.admin.set_limits(True, weight_limit=1000, ban_seconds=5)
        restarted = await h.admin.server_ms()
        # As a deployed executor does: the exchange's own limits (exchangeInfo.rateLimits)
        # are read before the first request.
        venue = create_venue(
            h.exchange, h.url, settings=VenueSettings(http=HttpSettings(limits_refresh_s=300))
        )
        h.venues.append(venue)
        running = await h.start(venue=venue, **STREAMS)
        feed = running.feed
        assert feed is not None
        await _live(running, *users)
        await eventually(
            lambda: feed.reconciled >= len(users), timeout=60, message="reconciliations"
        )
        rest, kept, stream = _reads(h, "rest"), _reads(h, "snapshot"), _reads(h, "stream")
        await h.publish([h.request(u, symbol=SYMBOL, tp="5", sl="2") for u in users])
        await eventually_events(h.log, OrderFilled, 2 * len(users), timeout=60)
        assert h.log.of(OrderRejected) == []  # nothing STALE, nothing refused
        # No order read its balance: each sized from its kept snapshot, or from the one
        # the background refresh had read by then.
        assert _reads(h, "rest") == rest
        used = (_reads(h, "snapshot") - kept) + (_reads(h, "stream") - stream)
        assert used == len(users)
        log = (await h.admin.requests(since_ms=restarted))["requests"]
        last_create = max(r[0] for r in log if r[2] in CREATES)
        before = [r for r in log if r[2] in BALANCE_READS and r[0] <= last_create]
        assert len(before) <= 900 // 4 // 20 < len(users), len(before)
        # The refresh goes on in the background, paced by the budget, and ends current.
        assert _reads(h, "snapshot") - kept > 0
    finally:
        await h.admin.set_limits(False, weight_limit=6000)


async def test_a_kept_snapshot_sizes_the_first_order_and_the_refresh_corrects_it(
    venue_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account's balance changed while no executor ran (the table says 5,000 USDT, the
    exchange about 980): the first order after the restart sizes from the snapshot, reads
    no balance; the background refresh (held here until that order is placed) then reads
    the exchange's balance, which replaces the snapshot in memory and in the table, and
    the next order sizes from it."""
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    await _first_run(h, [user])
    first_notional = await _notional(h, h.log.of(OrderFilled)[0].client_order_id)
    await _set_snapshot_usdt(h, user, Decimal(5000))

    start = BalanceRefresher.start
    monkeypatch.setattr(BalanceRefresher, "start", lambda self: None)
    running = await h.start(**STREAMS)
    feed = running.feed
    assert feed is not None
    await _live(running, user)
    assert feed.balances.usable(user.user_id)
    assert not feed.balances.current(user.user_id)
    since = await h.admin.server_ms()
    request = h.request(user, symbol=SYMBOL, tp="5", sl="2")
    await h.publish([request])
    await eventually_events(h.log, OrderFilled, 2)
    paths = [r[2] for r in (await h.admin.requests(since_ms=since))["requests"]]
    assert not BALANCE_READS & set(paths), paths
    kept_notional = await _notional(h, request.client_order_id)
    assert kept_notional > 3 * first_notional, (kept_notional, first_notional)

    start(feed.refresher)  # the background refresh, after the stream came up
    await eventually(lambda: feed.balances.current(user.user_id), timeout=30, message="refreshed")
    actual = await _sim_usdt(h, user)
    held = {b.asset: b.free for b in feed.balances.snapshot(user.user_id)}
    assert held["USDT"] == actual

    async def written() -> bool:
        return (await _snapshot_rows(h))[user.user_id]["usdt"] == actual

    await eventually(written, timeout=10, message="the table has the refreshed balance")
    request = h.request(user, symbol=SYMBOL, tp="5", sl="2")
    await h.publish([request])
    await eventually_events(h.log, OrderFilled, 3)
    assert await _notional(h, request.client_order_id) < 2 * first_notional


async def test_a_snapshot_older_than_the_bound_is_not_used(
    venue_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known current an hour ago, with a bound of ten minutes: not loaded; the first order
    after the restart reads the balance by REST before it is sent, and sizes from it."""
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    await _first_run(h, [user])
    first_notional = await _notional(h, h.log.of(OrderFilled)[0].client_order_id)
    await _set_snapshot_usdt(h, user, Decimal(5000), age_s=3600)

    monkeypatch.setattr(BalanceRefresher, "start", lambda self: None)  # no background read
    rest = _reads(h, "rest")
    running = await h.start(**STREAMS, balance_snapshot_max_age_s=600)
    feed = running.feed
    assert feed is not None
    assert not feed.balances.known(user.user_id)
    await _live(running, user)
    since = await h.admin.server_ms()
    request = h.request(user, symbol=SYMBOL, tp="5", sl="2")
    await h.publish([request])
    await eventually_events(h.log, OrderFilled, 2)
    log = [r for r in (await h.admin.requests(since_ms=since))["requests"]]
    first_read = min(r[0] for r in log if r[2] in BALANCE_READS)
    first_create = min(r[0] for r in log if r[2] in CREATES)
    assert first_read <= first_create, log
    assert _reads(h, "rest") == rest + 1
    assert await _notional(h, request.client_order_id) < 2 * first_notional


async def test_a_stale_snapshot_too_large_for_the_account_is_an_ordinary_rejection(
    venue_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account was emptied while no executor ran, and the kept snapshot still says
    5,000 USDT (1 USDT is left): the order sized from it is refused by the exchange for the balance
    (Binance -2010 "Account has insufficient balance for requested action.", Bybit 170131
    "Balance insufficient"), an ordinary OrderRejected, not an unknown outcome. The refusal
    retires the kept snapshot: the account's next order sizes from a fresh read."""
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    await _first_run(h, [user])
    left = await _sim_usdt(h, user)
    await h.admin.fund(user.account_id, "USDT", -left + Decimal(1))
    await _set_snapshot_usdt(h, user, Decimal(5000))

    monkeypatch.setattr(BalanceRefresher, "start", lambda self: None)
    running = await h.start(**STREAMS)
    feed = running.feed
    assert feed is not None
    other = "someone-else-waiting"
    feed.refresher.enqueue(other)
    await _live(running, user)
    await h.publish([h.request(user, symbol=SYMBOL, tp="5", sl="2")])
    rejected = await eventually_events(h.log, OrderRejected, 1)
    assert rejected[0].reason is RejectReason.INSUFFICIENT_BALANCE, rejected[0]
    # The refusal says the kept snapshot is wrong: it sizes nothing more, and the account's
    # refresh goes before every other one waiting.
    assert not feed.balances.usable(user.user_id)
    assert list(feed.refresher._queue)[:2] == [user.user_id, other]

    # The account is funded again: the next order sizes from what it holds (read by REST,
    # or pushed whole by Bybit's wallet stream), not from the 5,000 kept, and fills.
    await h.admin.fund(user.account_id, "USDT", Decimal(500))
    request = h.request(user, symbol=SYMBOL, tp="5", sl="2")
    await h.publish([request])
    await eventually_events(h.log, OrderFilled, 2)
    assert await _notional(h, request.client_order_id) <= Decimal(501)
