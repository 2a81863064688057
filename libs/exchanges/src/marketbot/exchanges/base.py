"""What both venues share above the wire: caching and order-outcome reconciliation."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

from marketbot.contracts import Exchange, KeyPermissions
from marketbot.exchanges.cache import TTLCache
from marketbot.exchanges.errors import (
    DuplicateClientOrderIdError,
    ExchangeError,
    OutcomeUnknown,
    Rejected,
)
from marketbot.exchanges.http import VenueHttp
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.venue import (
    AccountInfo,
    Balance,
    Fill,
    InstrumentFilters,
    Kline,
    KlineInterval,
    OrderRequest,
    OrderState,
    Position,
    Ticker,
)

T = TypeVar("T")


class BaseVenue(ABC):
    """Common behaviour; subclasses implement the venue's endpoints."""

    def __init__(
        self,
        http: VenueHttp,
        *,
        market_ttl_s: float = 2.0,
        instrument_ttl_s: float = 300.0,
        resolve_poll_s: float = 0.25,
    ) -> None:
        self.http = http
        self.clock = http.clock
        self.cache = TTLCache(http.clock, default_ttl_s=market_ttl_s)
        self.instrument_ttl_s = instrument_ttl_s
        self.resolve_poll_s = resolve_poll_s

    @property
    def exchange(self) -> Exchange:
        return self.http.exchange

    @property
    def clock_offset_ms(self) -> int:
        return self.http.time.offset_ms

    async def sync_clock(self) -> int:
        return await self.http.time.measure()

    async def server_time(self) -> datetime:
        return datetime.fromtimestamp(await self.http.fetch_server_time_ms() / 1000, tz=UTC)

    async def check_connectivity(self) -> float:
        started = time.perf_counter()
        await self._ping()
        return time.perf_counter() - started

    async def cached(
        self, key: Hashable, loader: Callable[[], Awaitable[T]], *, ttl_s: float | None = None
    ) -> T:
        return await self.cache.get_or_load((self.exchange, key), loader, ttl_s=ttl_s)

    async def price(self, symbol: str) -> Decimal:
        return (await self.ticker(symbol)).last_price

    async def balance(self, signer: Signer, asset: str) -> Balance:
        for item in await self.balances(signer):
            if item.asset == asset:
                return item
        return Balance(asset=asset, free=Decimal(0), locked=Decimal(0))

    # ---- order placement with reconciliation ----------------------------------------
    async def place_order(self, signer: Signer, order: OrderRequest) -> OrderState:
        """Submit once; an unknown outcome (or a duplicate id) is resolved by client id.

        If the order provably does not exist once the original request can no longer be
        accepted (its timestamp is past the receive window), it is submitted once more
        with the same client order id; never otherwise.
        """
        filters = await self.instrument(order.symbol)
        entry = await self._place_entry(signer, order, filters)
        return await self._after_entry(signer, order, filters, entry)

    async def _place_entry(
        self, signer: Signer, order: OrderRequest, filters: InstrumentFilters
    ) -> OrderState:
        for attempt in (1, 2):
            try:
                return await self._submit(signer, order, filters)
            except (OutcomeUnknown, DuplicateClientOrderIdError) as exc:
                found = await self._resolve(signer, order)
                if found is not None:
                    return found
                if attempt == 2:
                    raise OutcomeUnknown(
                        f"order {order.client_order_id}: outcome unknown after resubmission",
                        exchange=self.exchange,
                        client_order_id=order.client_order_id,
                    ) from exc
        raise AssertionError("unreachable")

    async def _resolve(self, signer: Signer, order: OrderRequest) -> OrderState | None:
        """Find the order by client id; ``None`` only once it provably was not placed."""
        window_s = self.http.settings.recv_window_ms / 1000
        # The request was signed before it was sent; past this moment the exchange refuses it.
        deadline = self.clock.monotonic() + window_s + 1.0
        give_up = deadline + 10 * window_s
        while True:
            try:
                found = await self.get_order(
                    signer, order.symbol, client_order_id=order.client_order_id
                )
            except Rejected:
                raise
            except ExchangeError as exc:
                if self.clock.monotonic() >= give_up:
                    raise OutcomeUnknown(
                        f"order {order.client_order_id} could not be reconciled: {exc}",
                        exchange=self.exchange,
                        client_order_id=order.client_order_id,
                    ) from exc
            else:
                if found is not None:
                    return found
                if self.clock.monotonic() >= deadline:
                    return None
            await self.clock.sleep(self.resolve_poll_s)

    async def _after_entry(
        self, signer: Signer, order: OrderRequest, filters: InstrumentFilters, entry: OrderState
    ) -> OrderState:
        """Hook for venues that protect an entry with separate exit orders."""
        return entry

    # ---- venue specifics ------------------------------------------------------------
    @abstractmethod
    async def _ping(self) -> None: ...

    @abstractmethod
    async def _submit(
        self, signer: Signer, order: OrderRequest, filters: InstrumentFilters
    ) -> OrderState: ...

    @abstractmethod
    async def ticker(self, symbol: str) -> Ticker: ...

    @abstractmethod
    async def tickers(self, symbols: Sequence[str] | None = None) -> list[Ticker]: ...

    @abstractmethod
    async def klines(
        self,
        symbol: str,
        interval: KlineInterval,
        *,
        limit: int = 200,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Kline]: ...

    @abstractmethod
    async def instrument(self, symbol: str) -> InstrumentFilters: ...

    @abstractmethod
    async def account_info(self, signer: Signer) -> AccountInfo: ...

    @abstractmethod
    async def balances(self, signer: Signer) -> list[Balance]: ...

    @abstractmethod
    async def key_permissions(self, signer: Signer) -> KeyPermissions: ...

    @abstractmethod
    async def get_order(
        self,
        signer: Signer,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> OrderState | None: ...

    @abstractmethod
    async def cancel_order(
        self,
        signer: Signer,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> OrderState: ...

    @abstractmethod
    async def open_orders(self, signer: Signer, symbol: str | None = None) -> list[OrderState]: ...

    @abstractmethod
    async def order_history(
        self, signer: Signer, symbol: str, *, limit: int = 50
    ) -> list[OrderState]: ...

    @abstractmethod
    async def positions(self, signer: Signer, symbol: str | None = None) -> list[Position]: ...

    @abstractmethod
    async def trades(
        self, signer: Signer, symbol: str, *, exchange_order_id: str
    ) -> list[Fill]: ...

    async def aclose(self) -> None:
        await self.http.aclose()
