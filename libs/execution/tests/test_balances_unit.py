"""The balance snapshot's rules (balances.StreamBalances), at the Venue port with a fake."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, cast

from marketbot.contracts import Exchange
from marketbot.exchanges.reports import BalanceReport
from marketbot.exchanges.signer import LocalSigner
from marketbot.exchanges.venue import Balance, Venue
from marketbot.execution.balances import StreamBalances
from marketbot.runtime.clock import ManualClock

D = Decimal
SIGNER = LocalSigner("key", "secret")


class FakeVenue:
    """The exchange's balance reads: ``held`` is the account; a read may be held open."""

    exchange = Exchange.BINANCE

    def __init__(self, usdt: Decimal) -> None:
        self.held = {"USDT": usdt}
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def balances(self, signer: Any) -> list[Balance]:
        self.reads += 1
        seen = dict(self.held)  # what the exchange answers is as of the request
        if self.gate is not None:
            await self.gate.wait()
        return [Balance(asset=a, free=v, locked=D(0)) for a, v in seen.items()]

    async def balance(self, signer: Any, asset: str) -> Balance:
        self.reads += 1
        return Balance(asset=asset, free=self.held.get(asset, D(0)), locked=D(0))


def _source(venue: FakeVenue, clock: ManualClock, live: set[str], max_age_s: float = 60.0) -> Any:
    return StreamBalances(
        cast(Venue, venue),
        live=lambda user_id: user_id in live,
        monotonic=clock.monotonic,
        max_age_s=max_age_s,
    )


def _report(usdt: Decimal, *, complete: bool = False) -> BalanceReport:
    return BalanceReport(
        exchange=Exchange.BINANCE,
        user_id="u",
        balances=(Balance(asset="USDT", free=usdt, locked=D(0)),),
        complete=complete,
        event_ms=None,
        received_ms=0,
    )


async def _usdt(source: StreamBalances) -> Decimal:
    return (await source.balance("u", SIGNER, "USDT")).free


async def test_a_wallet_message_during_the_refresh_is_applied_on_top_of_it() -> None:
    venue, clock = FakeVenue(D(1000)), ManualClock()
    source = _source(venue, clock, {"u"})
    source.connected("u")
    venue.gate = asyncio.Event()
    refresh = asyncio.create_task(source.refresh("u", SIGNER))
    await asyncio.sleep(0)
    source.apply(_report(D(900)))  # a buy filled while the read was on its way
    venue.gate.set()
    assert await refresh is True
    assert source.current("u")
    assert await _usdt(source) == D(900)
    assert venue.reads == 1


async def test_a_refresh_that_spans_a_reconnect_is_kept_not_current() -> None:
    venue, clock = FakeVenue(D(1000)), ManualClock()
    source = _source(venue, clock, {"u"})
    source.connected("u")
    venue.gate = asyncio.Event()
    refresh = asyncio.create_task(source.refresh("u", SIGNER))
    await asyncio.sleep(0)
    source.connected("u")  # the stream fell and came up again during the read
    venue.gate.set()
    assert await refresh is False
    assert source.known("u")
    assert not source.current("u")
    assert source.usable("u")  # kept, as of the read, within the bound


async def test_a_kept_snapshot_sizes_orders_only_within_its_age_bound_and_while_live() -> None:
    venue, clock = FakeVenue(D(1000)), ManualClock()
    live: set[str] = set()
    source = _source(venue, clock, live, max_age_s=60.0)
    source.restore("u", [Balance(asset="USDT", free=D(5000), locked=D(0))], age_s=20.0)
    # Not live yet: read by REST, the kept snapshot stays for when the stream is up.
    assert await _usdt(source) == D(1000)
    assert venue.reads == 1
    live.add("u")
    source.connected("u")
    assert await _usdt(source) == D(5000)  # kept: 20 s old
    assert venue.reads == 1
    source.apply(_report(D(4500)))  # a partial wallet message applies on top
    assert await _usdt(source) == D(4500)
    assert "u" not in source.dirty  # a kept snapshot is not written back as current
    clock.advance(41.0)  # 61 s since it was known current
    assert not source.usable("u")
    assert await _usdt(source) == D(1000)  # read by REST, current from now on
    assert venue.reads == 2
    assert source.current("u")
    assert "u" in source.dirty
    clock.advance(3600.0)
    assert source.usable("u")  # current: kept so by the stream, whatever its age


async def test_a_current_snapshot_is_kept_across_a_gap_from_its_last_confirmation() -> None:
    venue, clock = FakeVenue(D(1000)), ManualClock()
    live = {"u"}
    source = _source(venue, clock, live, max_age_s=60.0)
    source.connected("u")
    await source.refresh("u", SIGNER)
    clock.advance(100.0)
    assert source.confirm_live() == ["u"]
    live.discard("u")  # the stream falls
    clock.advance(30.0)
    assert source.confirm_live() == []
    assert not source.current("u")
    live.add("u")
    source.connected("u")  # the reconnect: kept, 30 s old
    assert source.usable("u")
    clock.advance(31.0)
    assert not source.usable("u")


async def test_a_complete_wallet_message_makes_the_snapshot_current() -> None:
    venue, clock = FakeVenue(D(1000)), ManualClock()
    source = _source(venue, clock, {"u"}, max_age_s=0.0)
    source.connected("u")
    source.apply(_report(D(700)))  # partial, no snapshot yet: not one
    assert not source.known("u")
    source.apply(_report(D(800), complete=True))  # Bybit's wallet topic: every coin
    assert source.current("u")
    assert await _usdt(source) == D(800)
    assert venue.reads == 0


async def test_the_background_refresh_waits_for_a_burst_of_orders_but_never_starves() -> None:
    from marketbot.execution.snapshots import BalanceRefresher
    from marketbot.runtime.testing import eventually

    venue, clock = FakeVenue(D(1000)), ManualClock()
    source = _source(venue, clock, {"u"})
    source.restore("u", [Balance(asset="USDT", free=D(5000), locked=D(0))], age_s=0.0)
    source.connected("u")
    assert await _usdt(source) == D(5000)  # an order sized now, from the kept snapshot
    waiting = BalanceRefresher(
        source, lambda _u: SIGNER, followed=lambda _u: True, quiet_s=3600, max_defer_s=3600
    )
    waiting.start()
    waiting.enqueue("u")
    await asyncio.sleep(0.2)  # a bounded pause: proves the read does NOT happen
    assert venue.reads == 0
    await waiting.stop()

    bounded = BalanceRefresher(
        source, lambda _u: SIGNER, followed=lambda _u: True, quiet_s=3600, max_defer_s=0.05
    )
    bounded.start()
    bounded.enqueue("u")
    await eventually(lambda: source.current("u"), timeout=10, message="refreshed at last")
    assert venue.reads == 1
    assert await _usdt(source) == D(1000)
    await bounded.stop()
