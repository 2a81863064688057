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
    Protection,
    ProtectionSpec,
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
    ) -> None:
        self.http = http
        self.clock = http.clock
        self.cache = TTLCache(http.clock, default_ttl_s=market_ttl_s)
        self.instrument_ttl_s = instrument_ttl_s

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

    # ---- order placement ------------------------------------------------------------
    async def place_order(
        self, signer: Signer, order: OrderRequest, *, confirm: bool = True
    ) -> OrderState:
        """Submit once. An unknown outcome or a duplicate id is raised to the caller, which
        owns the one resend policy (a committed attempt mark, then a lookup by id).

        ``confirm=False``: the caller follows the order on the private stream, so a venue
        whose create answer is only an acknowledgement does not read the order back."""
        filters = await self.instrument(order.symbol)
        return await self._submit(signer, order, filters, confirm=confirm)

    # ---- venue specifics ------------------------------------------------------------
    @abstractmethod
    async def _ping(self) -> None: ...

    @abstractmethod
    async def _submit(
        self,
        signer: Signer,
        order: OrderRequest,
        filters: InstrumentFilters,
        *,
        confirm: bool = True,
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
    async def protect(
        self, signer: Signer, spec: ProtectionSpec, *, first_attempt: bool = False
    ) -> Protection: ...

    @abstractmethod
    async def protection(self, signer: Signer, spec: ProtectionSpec) -> Protection | None: ...

    @abstractmethod
    async def working_protections(
        self, signer: Signer, specs: Sequence[ProtectionSpec]
    ) -> dict[str, Protection]: ...

    @abstractmethod
    async def unprotect(self, signer: Signer, spec: ProtectionSpec) -> Protection | None: ...

    @abstractmethod
    async def positions(self, signer: Signer, symbol: str | None = None) -> list[Position]: ...

    @abstractmethod
    async def trades(
        self, signer: Signer, symbol: str, *, exchange_order_id: str
    ) -> list[Fill]: ...

    async def aclose(self) -> None:
        await self.http.aclose()
