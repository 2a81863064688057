"""Where an order's sizing balance comes from: the ``BalanceSource`` port.

``RestBalances`` reads it from the exchange before each order (one signed request; on
Binance the account endpoint weighs 20). ``StreamBalances`` keeps every account's balances
from the wallet stream (Bybit ``wallet``, Binance ``outboundAccountPosition``, as
``BalanceReport``s) and reads by REST only for an account it has no snapshot of yet (the
wallet topics push on change, not on subscribe): that read becomes the snapshot the stream
then keeps current. The snapshot is taken when the account's stream comes up (start-up and
every reconnect: the feed's reconciliation calls ``refresh``), so the first order after a
restart reads no balance; an order that comes before it reads one itself. While the stream
is down every order reads by REST.
"""

from __future__ import annotations

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


class RestBalances:
    """One read of the exchange per order."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue

    async def balance(self, user_id: str, signer: Signer, asset: str) -> Balance:
        del user_id
        metrics.BALANCE_READS.labels(self.venue.exchange.value, "rest").inc()
        return await self.venue.balance(signer, asset)


class StreamBalances:
    """Balances kept from the wallet stream; REST only while no snapshot exists."""

    def __init__(self, venue: Venue, *, live: Callable[[str], bool]) -> None:
        self.venue = venue
        self._live = live
        """Whether the account's stream is up now: a snapshot is only current while it is."""
        self._accounts: dict[str, dict[str, Balance]] = {}
        self._during: dict[str, list[BalanceReport]] = {}
        """Wallet messages received while a snapshot is being read, per account."""

    def known(self, user_id: str) -> bool:
        return user_id in self._accounts

    def apply(self, report: BalanceReport) -> None:
        """A wallet message: absolute balances of the assets it names (every asset when
        ``complete``). Before any snapshot, a partial message is not a snapshot."""
        during = self._during.get(report.user_id)
        if during is not None:
            during.append(report)
        current = self._accounts.get(report.user_id)
        if current is None and not report.complete:
            return
        updated = {} if report.complete or current is None else dict(current)
        for item in report.balances:
            updated[item.asset] = item
        self._accounts[report.user_id] = updated

    def seed(self, user_id: str, balances: list[Balance]) -> None:
        self._accounts[user_id] = {item.asset: item for item in balances}

    def forget(self, user_id: str) -> None:
        self._accounts.pop(user_id, None)

    async def refresh(self, user_id: str, signer: Signer) -> None:
        """Read every balance by REST and keep it as the snapshot (reconciliation). A
        wallet message that arrived during the read is applied again on top: it may be
        newer than the read (if older, the newer change's own message follows)."""
        during: list[BalanceReport] = []
        self._during[user_id] = during
        try:
            balances = await self.venue.balances(signer)
        finally:
            if self._during.get(user_id) is during:
                del self._during[user_id]
        self.seed(user_id, balances)
        for report in during:
            self.apply(report)

    async def balance(self, user_id: str, signer: Signer, asset: str) -> Balance:
        exchange = self.venue.exchange.value
        if not self._live(user_id):
            # Down (or not up yet): what changed meanwhile is unknown; the reconciliation
            # after the (re)connect takes a new snapshot.
            self._accounts.pop(user_id, None)
            metrics.BALANCE_READS.labels(exchange, "rest").inc()
            return await self.venue.balance(signer, asset)
        account = self._accounts.get(user_id)
        if account is None:
            metrics.BALANCE_READS.labels(exchange, "rest").inc()
            await self.refresh(user_id, signer)
            account = self._accounts[user_id]
        else:
            metrics.BALANCE_READS.labels(exchange, "stream").inc()
        found = account.get(asset)
        if found is None:
            return Balance(asset=asset, free=Decimal(0), locked=Decimal(0))
        return found
