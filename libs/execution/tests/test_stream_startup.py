"""What an executor does when an account's stream comes up, and across replicas."""

from __future__ import annotations

from decimal import Decimal

from marketbot.contracts import OrderFilled, PositionClosed
from marketbot.runtime.testing import eventually

from .conftest import Harness, User, eventually_events, settle
from .test_streams_lifecycle import STREAMS, SYMBOL, _live, _protected

BALANCE_READS = {"/v5/account/wallet-balance", "/api/v3/account"}


async def test_the_first_order_after_a_restart_sizes_from_the_stream_s_snapshot(
    venue_harness: Harness,
) -> None:
    """The balance snapshot is kept across the restart, and read again in the background
    once the account's stream is up: the first alert after the restart makes no balance
    request (test_balance_snapshots.py: before that refresh too)."""
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    first = await h.start(**STREAMS)
    await h.publish([h.request(user, symbol=SYMBOL, tp="5", sl="2")])
    await eventually_events(h.log, OrderFilled, 1)
    await _protected(h, 1)
    assert first.feed is not None
    kept = first.feed.balances
    # The first executor's snapshot became current (read once its stream was up): that
    # is what it keeps for the next start.
    await eventually(lambda: kept.current(user.user_id), timeout=20, message="current")
    await first.stop()

    restart = await h.start(**STREAMS)
    feed = restart.feed
    assert feed is not None
    await _live(restart, user)
    assert feed.balances.known(user.user_id)  # kept from the first executor's stream
    await eventually(
        lambda: feed.balances.current(user.user_id), timeout=20, message="balance refreshed"
    )
    since = await h.admin.server_ms()
    await h.publish([h.request(user, symbol=SYMBOL, tp="5", sl="2")])
    await eventually_events(h.log, OrderFilled, 2)
    await _protected(h, 2)
    paths = [r[2] for r in (await h.admin.requests(since_ms=since))["requests"]]
    assert not BALANCE_READS & set(paths), paths


# A long lease (a loaded machine never lets it lapse by itself), renewed often: the test
# makes it lapse when it means to.
LEASES = {"stream_follow_lease_s": 10.0, "stream_lease_renew_s": 0.2}


async def _followers(h: Harness, user: User) -> int:
    """Open stream connections on the simulator carrying the account."""
    described = await h.admin.streams()
    return sum(1 for c in described["connections"] if user.account_id in c["accounts"])


async def test_one_replica_follows_an_account_and_another_takes_over_a_lapsed_lease(
    venue_harness: Harness,
) -> None:
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    first = await h.start(**STREAMS, **LEASES)
    await h.publish([h.request(user, symbol=SYMBOL, tp="5", sl="2")])
    await eventually_events(h.log, OrderFilled, 1)
    await _protected(h, 1)
    await _live(first, user)
    a, b = first.feed, None
    assert a is not None

    # A second replica on the same database wants the account (it has an open position)
    # but leaves it to the first: one stream for the account, its positions left alone.
    second = await h.start(**STREAMS, **LEASES)
    b = second.feed
    assert b is not None
    await settle(1.0)
    assert b.streams.users() == []
    assert b.covers(user.user_id), "the first replica's stream answers for it"
    assert await _followers(h, user) == 1

    # An order the second replica handles (the first one's engine is stopped; its stream
    # still follows the account): the balance is read by REST, the order works.
    await first.engine.stop()
    since = await h.admin.server_ms()
    await h.publish([h.request(user, symbol=SYMBOL, tp="5", sl="2")])
    await eventually_events(h.log, OrderFilled, 2)
    await _protected(h, 2)
    paths = [r[2] for r in (await h.admin.requests(since_ms=since))["requests"]]
    assert BALANCE_READS & set(paths), paths
    assert b.streams.users() == []
    assert await _followers(h, user) == 1

    # The first replica stalls (no renewals) and its lease lapses: the second takes the
    # account over; when the first comes back it finds the lease gone and lets go.
    renew = a.renew

    async def stalled() -> None:
        return None

    a.renew = stalled  # type: ignore[method-assign]
    async with h.pool.acquire() as conn:
        await conn.execute("UPDATE stream_followers SET expires_at = now() - interval '1s'")
    await eventually(lambda: b.live(user.user_id), timeout=20, message="taken over")
    a.renew = renew  # type: ignore[method-assign]
    await eventually(lambda: not a.streams.users(), timeout=10, message="let go")
    await eventually(lambda: _single(h, user), timeout=10, message="one follower")
    assert not a.live(user.user_id)

    # The second replica stops: it releases its lease and the first follows the account
    # again at once (not after a lapse).
    await second.stop()
    await eventually(lambda: a.live(user.user_id), timeout=20, message="followed again")
    await eventually(lambda: _single(h, user), timeout=10, message="one follower")


async def _single(h: Harness, user: User) -> bool:
    return await _followers(h, user) == 1


async def _open_protected(h: Harness, count: int) -> None:
    async def check() -> bool:
        async with h.pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT count(*) FROM positions WHERE status = 'OPEN' AND phase = 'PROTECTED'"
            )
        return int(found) >= count

    await eventually(check, timeout=30, message=f"{count} open protected positions")


async def _exit_requests(h: Harness, since_ms: int) -> list[str]:
    log = (await h.admin.requests(since_ms=since_ms))["requests"]
    return sorted(r[2] for r in log if r[1] == "POST")


async def test_only_the_follower_fires_an_account_s_watched_exits_and_another_takes_over(
    bybit: Harness,
) -> None:
    """Two executors on one database, Bybit (its take profit is watched, fired from the
    pushed price): the replica holding the accounts' leases fires each exit, once; the
    other does nothing for them. When the holder stops, the other takes the leases over,
    with the watched exits, and fires the next ones."""
    h = bybit
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    users = [await h.add_user(Decimal(1000)) for _ in range(3)]
    first = await h.start(**STREAMS, **LEASES)
    await h.publish([h.request(u, symbol=SYMBOL, tp="5", sl="2") for u in users])
    await eventually_events(h.log, OrderFilled, 3)
    await _open_protected(h, 3)
    await _live(first, *users)
    second = await h.start(**STREAMS, **LEASES)
    a, b = first.feed, second.feed
    assert a is not None
    assert b is not None
    await settle(1.0)  # several renewals of both replicas
    assert b.streams.users() == []
    await eventually(lambda: a.watching(SYMBOL), timeout=20, message="prices pushed")

    # +6 %: every take profit (+5 %) is reached. One stop-loss cancel and one sell each,
    # all from the first replica.
    since = await h.admin.server_ms()
    await h.admin.set_price(SYMBOL, Decimal("106.00"))
    await eventually_events(h.log, PositionClosed, 3, timeout=30)
    await settle(1.0)
    assert await _exit_requests(h, since) == sorted(["/v5/order/cancel", "/v5/order/create"] * 3)
    assert (a.fired, b.fired) == (3, 0)

    # New positions (take profit at +5 % of 106), then the holder stops: it releases its
    # leases, and the other replica follows the accounts and watches their exits.
    await h.publish([h.request(u, symbol=SYMBOL, tp="5", sl="2") for u in users])
    await eventually_events(h.log, OrderFilled, 6)
    await _open_protected(h, 3)
    await first.stop()
    await eventually(
        lambda: all(b.live(u.user_id) for u in users), timeout=30, message="taken over"
    )
    await eventually(lambda: b.watching(SYMBOL), timeout=20, message="prices pushed to b")
    await eventually(
        lambda: sum(len(w) for w in b._watched.values()) == 3,
        timeout=20,
        message="the exits watched by b",
    )
    since = await h.admin.server_ms()
    await h.admin.set_price(SYMBOL, Decimal("112.00"))
    await eventually_events(h.log, PositionClosed, 6, timeout=30)
    await settle(1.0)
    assert await _exit_requests(h, since) == sorted(["/v5/order/cancel", "/v5/order/create"] * 3)
    assert (a.fired, b.fired) == (3, 3)
