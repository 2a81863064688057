"""The one ``Venue`` protocol both exchanges implement, and its exact-decimal result models.

Every per-user (signed) method takes the user's ``Signer`` first; public methods take none.
One venue instance (one pooled HTTP client) per exchange per process serves
every user.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable

from marketbot.contracts import Exchange, KeyPermissions, Side
from marketbot.exchanges.signer import Signer


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    """Immediate or cancel: what does not fill at once is cancelled (a bounded taker entry)."""


class OrderStatus(StrEnum):
    """Order status normalised across venues."""

    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    PARTIALLY_FILLED_CANCELED = "PARTIALLY_FILLED_CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    UNTRIGGERED = "UNTRIGGERED"
    TRIGGERED = "TRIGGERED"
    DEACTIVATED = "DEACTIVATED"
    PENDING = "PENDING"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.PARTIALLY_FILLED_CANCELED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED,
        OrderStatus.DEACTIVATED,
    }
)


class KlineInterval(StrEnum):
    """Candle intervals both venues offer."""

    M1 = "1m"
    M3 = "3m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H2 = "2h"
    H4 = "4h"
    H6 = "6h"
    H12 = "12h"
    D1 = "1d"
    W1 = "1w"
    MO1 = "1M"


class ExitKind(StrEnum):
    TAKE_PROFIT = "TAKE_PROFIT"
    STOP_LOSS = "STOP_LOSS"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticker:
    symbol: str
    last_price: Decimal
    bid_price: Decimal | None = None
    ask_price: Decimal | None = None
    open_price_24h: Decimal | None = None
    high_price_24h: Decimal | None = None
    low_price_24h: Decimal | None = None
    volume_24h: Decimal | None = None
    quote_volume_24h: Decimal | None = None
    change_percent_24h: Decimal | None = None
    """Percent, e.g. ``Decimal("0.68")`` for +0.68 %."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Kline:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentFilters:
    """Trading rules of one symbol; ``None`` means the rule is not set on the venue."""

    symbol: str
    base_asset: str
    quote_asset: str
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal | None
    min_notional: Decimal
    tick_size: Decimal
    max_notional: Decimal | None = None
    market_qty_step: Decimal | None = None
    market_min_qty: Decimal | None = None
    market_max_qty: Decimal | None = None
    quote_step: Decimal | None = None
    """Precision of a quote-denominated amount (market buy by value)."""
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    trading: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountInfo:
    can_trade: bool
    account_type: str
    can_withdraw: bool | None = None
    margin_mode: str | None = None
    maker_commission: Decimal | None = None
    taker_commission: Decimal | None = None
    raw: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRequest:
    """A spot order. Exactly one of ``quantity`` (base) and ``quote_quantity`` (quote)."""

    symbol: str
    side: Side
    order_type: OrderType
    client_order_id: str
    quantity: Decimal | None = None
    quote_quantity: Decimal | None = None
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    """For a LIMIT order; a MARKET order is always immediate."""

    def __post_init__(self) -> None:
        if (self.quantity is None) == (self.quote_quantity is None):
            raise ValueError("exactly one of quantity and quote_quantity is required")
        if self.order_type is OrderType.LIMIT and (self.price is None or self.quantity is None):
            raise ValueError("a LIMIT order needs price and (base) quantity")
        for amount in (self.quantity, self.quote_quantity, self.price):
            if amount is not None and amount <= 0:
                raise ValueError("amounts must be positive")
        if not self.client_order_id or len(self.client_order_id) > 36:
            raise ValueError("client_order_id must have 1..36 characters")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One execution. From a trade record (Binance ``myTrades``, Bybit ``execution/list``)
    every field is the exchange's; from a FULL order response only the first five are."""

    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    """The asset the fee was actually charged in (the exchange's commissionAsset/feeCurrency)."""
    trade_id: str | None = None
    exchange_order_id: str | None = None
    filled_at: datetime | None = None
    """The exchange's execution time."""
    is_maker: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitLeg:
    """A take-profit or stop-loss leg protecting a filled entry, known by its own client id.

    A ``native`` leg is an order resting on the exchange. A leg that is not native is a
    trigger the platform watches itself (the venue offers no order form for it next to the
    native one); when the price reaches it, the position is closed with an order carrying
    the leg's client id."""

    kind: ExitKind
    trigger_price: Decimal
    client_order_id: str
    native: bool = True
    limit_price: Decimal | None = None
    exchange_order_id: str | None = None
    status: OrderStatus | None = None
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None

    @property
    def open(self) -> bool:
        return self.native and (self.status is None or not self.status.is_final)

    @property
    def executed(self) -> bool:
        return self.native and self.filled_quantity > 0

    @property
    def executing(self) -> bool:
        """Triggered (or filling) and not final: the leg is selling the position now, even
        with nothing filled yet. Bybit's "Triggered" is the "instantaneous state for
        conditional orders from Untriggered to New" (enum.mdx): the same order then fills
        (its orderType "is the order type after the order was triggered",
        order_open-order.mdx), and it can no longer be cancelled."""
        return (
            self.native and self.status in (OrderStatus.TRIGGERED, OrderStatus.PARTIALLY_FILLED)
        ) or (self.executed and self.status is not None and not self.status.is_final)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtectionSpec:
    """What protects one position: its exit side and quantity, the TP and the SL.

    Every leg's client id is derived from ``client_id`` (the entry's) and ``generation``
    (raised only when a position has to be protected anew), so an id is never reused."""

    symbol: str
    exit_side: Side
    quantity: Decimal
    take_profit: Decimal | None
    stop_loss: Decimal | None
    client_id: str
    generation: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Protection:
    """The exit legs of one position as the exchange reports them, matched by their ids."""

    legs: tuple[ExitLeg, ...]
    list_id: str | None = None

    @property
    def executed(self) -> ExitLeg | None:
        """The leg that executed (an exit fill), if any."""
        return next((leg for leg in self.legs if leg.executed), None)

    @property
    def executing(self) -> ExitLeg | None:
        """The leg whose order is selling the position now (triggered, not final yet)."""
        return next((leg for leg in self.legs if leg.executing), None)

    @property
    def working(self) -> bool:
        """Every native leg is still open (nothing executed, nothing ended)."""
        native = [leg for leg in self.legs if leg.native]
        return bool(native) and all(leg.open for leg in native)

    @property
    def ended_unfilled(self) -> bool:
        """The native legs ended without executing (cancelled or deactivated outside us)."""
        native = [leg for leg in self.legs if leg.native]
        return bool(native) and all(not leg.open for leg in native) and self.executed is None

    def watched(self) -> tuple[ExitLeg, ...]:
        """The legs the platform triggers itself."""
        return tuple(leg for leg in self.legs if not leg.native)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderState:
    exchange_order_id: str
    client_order_id: str
    symbol: str
    side: Side
    order_type: str
    status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal
    price: Decimal | None = None
    average_price: Decimal | None = None
    quote_quantity: Decimal | None = None
    filled_quote_quantity: Decimal | None = None
    fills: tuple[Fill, ...] = ()
    fees: tuple[tuple[str, Decimal], ...] = ()
    """Cumulative fee per asset (from fills, or the venue's cumulative fee detail)."""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    reject_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    symbol: str
    side: str
    size: Decimal
    average_price: Decimal | None
    mark_price: Decimal | None
    unrealised_pnl: Decimal | None
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None


def leg_client_id(leg: str, client_id: str, generation: int = 0) -> str:
    """The client id of an order derived from an entry's: unique per (entry, leg, generation).

    ``leg`` is a short tag (``sl``, ``tp``, ``ol``...). At most 36 characters of
    ``[A-Za-z0-9-]``, as both venues require."""
    digest = hashlib.sha256(f"{client_id}|{leg}|{generation}".encode()).hexdigest()
    return f"{leg}-{digest[:32]}"[:36]


@runtime_checkable
class Venue(Protocol):
    """One exchange, as every service sees it."""

    @property
    def exchange(self) -> Exchange: ...

    # clock and connectivity
    async def server_time(self) -> datetime:
        """The exchange's clock (one request)."""
        ...

    async def sync_clock(self) -> int:
        """Measure the server-time offset now; returns it in milliseconds (server - local)."""
        ...

    @property
    def clock_offset_ms(self) -> int: ...

    async def check_connectivity(self) -> float:
        """Round-trip time in seconds of the venue's cheapest endpoint; raises if unreachable."""
        ...

    # market data (public, cached)
    async def ticker(self, symbol: str) -> Ticker: ...

    async def tickers(self, symbols: Sequence[str] | None = None) -> list[Ticker]: ...

    async def price(self, symbol: str) -> Decimal: ...

    async def klines(
        self,
        symbol: str,
        interval: KlineInterval,
        *,
        limit: int = 200,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Kline]:
        """Candles oldest first, whatever the venue's own order."""
        ...

    async def instrument(self, symbol: str) -> InstrumentFilters: ...

    # account (signed)
    async def account_info(self, signer: Signer) -> AccountInfo: ...

    async def balances(self, signer: Signer) -> list[Balance]: ...

    async def balance(self, signer: Signer, asset: str) -> Balance: ...

    async def key_permissions(self, signer: Signer) -> KeyPermissions: ...

    # orders (signed)
    async def place_order(
        self, signer: Signer, order: OrderRequest, *, confirm: bool = True
    ) -> OrderState:
        """Submit the order ONCE. A timeout, 5xx or duplicate id raises (``OutcomeUnknown``,
        ``DuplicateClientOrderIdError``): only the engine decides to look up and resend,
        after a committed attempt mark (one resend policy). ``confirm=False``: the caller
        follows the order on the private stream; an answer that is only an acknowledgement
        (Bybit) is returned as a NEW order, not read back."""
        ...

    async def protect(
        self, signer: Signer, spec: ProtectionSpec, *, first_attempt: bool = False
    ) -> Protection:
        """Put the position's exit legs on the exchange; idempotent.

        Legs that already exist (found by their client ids) are not placed again, so a
        retry after a crash or an unknown outcome protects the position exactly once.

        ``first_attempt``: no earlier attempt can have sent these legs (none was marked for
        this generation), so they are placed without being looked up first; a duplicate id
        still falls back to the lookup."""
        ...

    async def protection(self, signer: Signer, spec: ProtectionSpec) -> Protection | None:
        """The legs as the exchange reports them now, by id; ``None`` if none exists."""
        ...

    async def working_protections(
        self, signer: Signer, specs: Sequence[ProtectionSpec]
    ) -> dict[str, Protection]:
        """The protections among ``specs`` (one account's) whose legs are all still working,
        read from the account's open orders in one request (paged), not one per position;
        keyed by ``ProtectionSpec.client_id``. A spec missing from the answer has a leg that
        is no longer open (it executed, ended, or was never placed) or is of a form the
        venue's open-order read does not cover: look it up with ``protection``."""
        ...

    async def unprotect(self, signer: Signer, spec: ProtectionSpec) -> Protection | None:
        """Cancel the legs still working and report how they ended (one may have executed
        first: the caller then closes by that leg, not by its own order)."""
        ...

    async def cancel_order(
        self,
        signer: Signer,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> OrderState: ...

    async def get_order(
        self,
        signer: Signer,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> OrderState | None:
        """The order, or ``None`` when the exchange says it does not exist."""
        ...

    async def open_orders(self, signer: Signer, symbol: str | None = None) -> list[OrderState]: ...

    async def order_history(
        self, signer: Signer, symbol: str, *, limit: int = 50
    ) -> list[OrderState]: ...

    async def positions(self, signer: Signer, symbol: str | None = None) -> list[Position]:
        """Derivative positions (Bybit linear); spot-only venues return ``[]``."""
        ...

    async def trades(self, signer: Signer, symbol: str, *, exchange_order_id: str) -> list[Fill]:
        """The exchange's trade records of one order, oldest first (Binance ``myTrades``,
        Bybit ``execution/list``): price, quantity, the fee in the asset charged, times."""
        ...

    async def aclose(self) -> None: ...
