"""Where an order's sizing balance comes from: the ``BalanceSource`` port.

``RestBalances`` reads it from the exchange before each order (one signed request; on
Binance the account endpoint weighs 20). ``StreamBalances`` keeps every account's balances
from the wallet stream (Bybit ``wallet``, Binance ``outboundAccountPosition``, as
``BalanceReport``s). Each account's snapshot is one of:

* **current**: read by REST while the account's stream was up (or a complete wallet
  message arrived), and kept by the stream since: every order sizes from it, no request;
* **kept** (provisional): a snapshot from before a gap in the stream (an executor restart:
  loaded from the ``balance_snapshots`` table, ``snapshots.py``; a reconnect; a Binance
  ``eventStreamTerminated``). What changed during the gap is unknown until the background
  refresh reads it again (``snapshots.BalanceRefresher``, after the stream is up, so no
  change is missed): meanwhile an order sizes from it only while it is younger than
  ``max_age_s`` (counted from the last moment it was known current) and the stream is up
  (the wallet stream applies what changes from then on). A stale balance at worst sizes
  an order the exchange refuses (Binance -2010 "Account has insufficient balance for
  requested action.", Bybit 170131 "Balance insufficient": an ordinary rejection,
  ``errors.py`` of each venue) or a smaller one than the user's risk level would give.

An account with no usable snapshot reads it by REST at its order (that read becomes the
current snapshot). While the stream is down every order reads by REST. A refresh replaces
the snapshot; a wallet message that arrives during the read is applied again on top of it
(it may be newer than the read; if older, the newer change's own message follows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

from marketbot.exchanges.reports import BalanceReport
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.venue import Balance, Venue
from marketbot.execution import metrics


class BalanceSource(Protocol):
    async def balance(self, user_id: str, signer: Signer, asset: str) -> Balance:
        """The account's balance of ``asset`` now."""
        ...

    def refused(self, user_id: str) -> None:
        """The exchange refused an entry sized from this source for the account's balance."""
        ...


class RestBalances:
    """One read of the exchange per order."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue

    async def balance(self, user_id: str, signer: Signer, asset: str) -> Balance:
        del user_id
        metrics.BALANCE_READS.labels(self.venue.exchange.value, "rest").inc()
        return await self.venue.balance(signer, asset)

    def refused(self, user_id: str) -> None:
        del user_id  # read just before the order: nothing kept to correct


class StreamBalances:
    """Balances kept from the wallet stream; REST only while no usable snapshot exists."""

    def __init__(
        self,
        venue: Venue,
        *,
        live: Callable[[str], bool],
        monotonic: Callable[[], float],
        max_age_s: float = 0.0,
    ) -> None:
        self.venue = venue
        self._live = live
        """Whether the account's stream is up now: a snapshot is only kept current while it is."""
        self._monotonic = monotonic
        self.max_age_s = max_age_s
        """How old a kept snapshot may be and still size an order (0: never)."""
        self._accounts: dict[str, dict[str, Balance]] = {}
        self._current: set[str] = set()
        """Accounts whose snapshot the stream keeps current (refreshed since it came up)."""
        self._confirmed: dict[str, float] = {}
        """When each snapshot was last known current (monotonic)."""
        self._epoch: dict[str, int] = {}
        """Times each account's stream came up: a refresh that spans a (re)connect is not
        known current (the new subscription may have come up after the read)."""
        self._during: dict[str, list[list[BalanceReport]]] = {}
        """Wallet messages received while a snapshot is being read, per account and read
        (an order's own read may overlap the background one)."""
        self.dirty: set[str] = set()
        """Current snapshots changed since they were last persisted."""
        self.sized_at = float("-inf")
        """When an order last asked for a balance (event-loop time): the background refresh
        yields the CPU to a burst of orders (``snapshots.BalanceRefresher``)."""
        self.on_refused: Callable[[str], None] = lambda _user_id: None
        """Set by the stream feed: read this account's balance again before any other."""

    # ---- state ------------------------------------------------------------------------

    def live(self, user_id: str) -> bool:
        """Whether the account's stream is up now."""
        return self._live(user_id)

    def known(self, user_id: str) -> bool:
        """A snapshot exists (current or kept)."""
        return user_id in self._accounts

    def current(self, user_id: str) -> bool:
        """The snapshot is current: read (or pushed whole) since the stream last came up."""
        return user_id in self._current and self._live(user_id)

    def usable(self, user_id: str) -> bool:
        """An order may size from the snapshot without reading (the stream must be up)."""
        if user_id not in self._accounts or not self._live(user_id):
            return False
        if user_id in self._current:
            return True
        confirmed = self._confirmed.get(user_id)
        return confirmed is not None and self._monotonic() - confirmed < self.max_age_s

    def snapshot(self, user_id: str) -> list[Balance]:
        return list(self._accounts.get(user_id, {}).values())

    def age_s(self, user_id: str) -> float | None:
        """Seconds since the snapshot was last known current (0 while current)."""
        if self.current(user_id):
            return 0.0
        confirmed = self._confirmed.get(user_id)
        return None if confirmed is None else self._monotonic() - confirmed

    # ---- the stream's side --------------------------------------------------------------

    def connected(self, user_id: str) -> None:
        """The account's stream came up (start-up, reconnect, a renewed subscription): a
        current snapshot is kept from here, until the refresh reads it again."""
        self._epoch[user_id] = self._epoch.get(user_id, 0) + 1
        self.interrupted(user_id)

    def interrupted(self, user_id: str) -> None:
        """What the stream reported may have a gap from now on: the snapshot is kept
        (known current until the last ``confirm_live``), no longer current."""
        if user_id in self._current:
            self._current.discard(user_id)
            self.dirty.discard(user_id)

    def confirm_live(self) -> list[str]:
        """Note that every current snapshot of a live account is current now (called
        every second or so: how old a kept snapshot is counts from the last call); returns
        those accounts."""
        now = self._monotonic()
        confirmed = []
        for user_id in list(self._current):
            if self._live(user_id):
                self._confirmed[user_id] = now
                confirmed.append(user_id)
            else:
                self.interrupted(user_id)  # the stream fell: the reconnect refreshes it
        return confirmed

    def apply(self, report: BalanceReport) -> None:
        """A wallet message: absolute balances of the assets it names (every asset when
        ``complete``, which makes the snapshot current). Before any snapshot, a partial
        message is not a snapshot."""
        user_id = report.user_id
        for during in self._during.get(user_id, ()):
            during.append(report)
        current = self._accounts.get(user_id)
        if current is None and not report.complete:
            return
        updated = {} if report.complete or current is None else dict(current)
        for item in report.balances:
            updated[item.asset] = item
        self._accounts[user_id] = updated
        if report.complete and self._live(user_id):
            self._make_current(user_id)
        elif user_id in self._current:
            self.dirty.add(user_id)

    def restore(self, user_id: str, balances: list[Balance], age_s: float) -> None:
        """A persisted snapshot, last known current ``age_s`` ago (an executor restart, or
        an account taken over from another replica): kept, not current. A snapshot this
        process already has is not replaced (it is at least as new)."""
        if user_id in self._accounts:
            return
        self._accounts[user_id] = {item.asset: item for item in balances}
        self._confirmed[user_id] = self._monotonic() - max(0.0, age_s)

    def seed(self, user_id: str, balances: list[Balance]) -> None:
        """A balance read by REST while the account's stream is up: current."""
        self._accounts[user_id] = {item.asset: item for item in balances}
        self._make_current(user_id)

    def refused(self, user_id: str) -> None:
        """An entry sized from this account's snapshot was refused for the balance. A kept
        snapshot is then no longer used (the next order reads by REST, unless the refresh,
        moved to the front of its queue, read it first); a current one is read again too
        (the stream keeps it, but the exchange's answer is the truth)."""
        if user_id not in self._current:
            self._confirmed.pop(user_id, None)
        self.on_refused(user_id)

    def forget(self, user_id: str) -> None:
        self._accounts.pop(user_id, None)
        self._current.discard(user_id)
        self._confirmed.pop(user_id, None)
        self._epoch.pop(user_id, None)
        self.dirty.discard(user_id)

    def _make_current(self, user_id: str) -> None:
        self._current.add(user_id)
        self._confirmed[user_id] = self._monotonic()
        self.dirty.add(user_id)

    async def refresh(self, user_id: str, signer: Signer) -> bool:
        """Read every balance by REST and keep it as the snapshot (reconciliation). A
        wallet message that arrived during the read is applied again on top: it may be
        newer than the read (if older, the newer change's own message follows). Returns
        whether the snapshot is current now: not when the stream was down, or came up
        again, during the read (then it is kept as of the read, and the reconnect's own
        refresh follows)."""
        epoch = self._epoch.get(user_id, 0)
        started = self._monotonic()
        during: list[BalanceReport] = []
        reads = self._during.setdefault(user_id, [])
        reads.append(during)
        try:
            balances = await self.venue.balances(signer)
        finally:
            reads.remove(during)
            if not reads and self._during.get(user_id) is reads:
                del self._during[user_id]
        if self._live(user_id) and self._epoch.get(user_id, 0) == epoch:
            self.seed(user_id, balances)
        else:
            self._accounts[user_id] = {item.asset: item for item in balances}
            self._current.discard(user_id)
            self._confirmed[user_id] = started
        for report in during:
            self.apply(report)
        return self.current(user_id)

    # ---- the order's side -------------------------------------------------------------

    async def balance(self, user_id: str, signer: Signer, asset: str) -> Balance:
        exchange = self.venue.exchange.value
        self.sized_at = asyncio.get_running_loop().time()
        if not self._live(user_id):
            # Down (or not up yet): what changes meanwhile is not reported. The snapshot is
            # kept for the reconnect (the refresh after it reads it again).
            self.interrupted(user_id)
            metrics.BALANCE_READS.labels(exchange, "rest").inc()
            return await self.venue.balance(signer, asset)
        if self.usable(user_id):
            source = "stream" if user_id in self._current else "snapshot"
            metrics.BALANCE_READS.labels(exchange, source).inc()
        else:
            metrics.BALANCE_READS.labels(exchange, "rest").inc()
            await self.refresh(user_id, signer)
        found = self._accounts.get(user_id, {}).get(asset)
        if found is None:
            return Balance(asset=asset, free=Decimal(0), locked=Decimal(0))
        return found
