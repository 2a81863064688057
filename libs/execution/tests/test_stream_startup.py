"""What an executor does when an account's stream comes up, and across replicas."""

from __future__ import annotations

from decimal import Decimal

from marketbot.contracts import OrderFilled
from marketbot.runtime.testing import eventually

from .conftest import Harness, eventually_events
from .test_streams_lifecycle import STREAMS, SYMBOL, _live, _protected

BALANCE_READS = {"/v5/account/wallet-balance", "/api/v3/account"}


async def test_the_first_order_after_a_restart_sizes_from_the_stream_s_snapshot(
    venue_harness: Harness,
) -> None:
    """The balance is read when the account's stream comes up (the start-up
    reconciliation), so the first alert after a restart makes no balance request."""
    h = venue_harness
    await h.admin.set_price(SYMBOL, Decimal("100.00"))
    user = await h.add_user(Decimal(1000))
    first = await h.start(**STREAMS)
    await h.publish([h.request(user, symbol=SYMBOL, tp="5", sl="2")])
    await eventually_events(h.log, OrderFilled, 1)
    await _protected(h, 1)
    await first.stop()

    restart = await h.start(**STREAMS)
    feed = restart.feed
    assert feed is not None
    await _live(restart, user)
    await eventually(
        lambda: feed.balances.known(user.user_id), timeout=20, message="balance snapshot"
    )
    since = await h.admin.server_ms()
    await h.publish([h.request(user, symbol=SYMBOL, tp="5", sl="2")])
    await eventually_events(h.log, OrderFilled, 2)
    await _protected(h, 2)
    paths = [r[2] for r in (await h.admin.requests(since_ms=since))["requests"]]
    assert not BALANCE_READS & set(paths), paths
