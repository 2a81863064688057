"""Position sizing exactly as the blueprint states it, every number from configuration.

```
available    = quote balance on the exchange (capped by the user's allocation, BRL converted)
max_position = available * risk_percent[risk_level]
size_quote   = max(min_order_quote, min(max_position, available * max_balance_percent))
quantity     = size_quote / price, rounded DOWN to the instrument's step,
               then checked against min quantity and min notional
```

The formula itself lives in ``marketbot.contracts.sizing`` (the key vault bounds orders by
it too); this module rounds the size to the instrument and checks its filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from marketbot.contracts import RejectReason, RiskLevel
from marketbot.contracts.sizing import (
    SizingRules,
    available_quote,
    position_size_quote,
)
from marketbot.exchanges.venue import InstrumentFilters


@dataclass(frozen=True, slots=True)
class LotRules:
    """The instrument filters sizing checks (venue-neutral names)."""

    qty_step: Decimal
    min_qty: Decimal
    min_notional: Decimal
    max_qty: Decimal | None = None
    max_notional: Decimal | None = None
    market_qty_step: Decimal | None = None
    market_min_qty: Decimal | None = None
    market_max_qty: Decimal | None = None

    @classmethod
    def from_filters(cls, filters: InstrumentFilters) -> LotRules:
        return cls(
            qty_step=filters.qty_step,
            min_qty=filters.min_qty,
            min_notional=filters.min_notional,
            max_qty=filters.max_qty,
            max_notional=filters.max_notional,
            market_qty_step=filters.market_qty_step,
            market_min_qty=filters.market_min_qty,
            market_max_qty=filters.market_max_qty,
        )


@dataclass(frozen=True, slots=True)
class SizedOrder:
    available: Decimal
    size_quote: Decimal
    price: Decimal
    quantity: Decimal

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.price


@dataclass(frozen=True, slots=True)
class SizingRejection:
    """An order that must not be sent; ``message`` names the filter and the numbers."""

    reason: RejectReason
    filter: str
    message: str


def round_down(value: Decimal, step: Decimal | None) -> Decimal:
    if step is None or step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def _n(value: Decimal) -> str:
    return format(value.normalize(), "f")


def size_order(
    *,
    balance: Decimal,
    risk_level: RiskLevel,
    price: Decimal,
    lot: LotRules,
    rules: SizingRules,
    allocation: Decimal | None = None,
    allocation_currency: str | None = None,
) -> SizedOrder | SizingRejection:
    """The base quantity to buy, or why no order may be sent."""
    available = available_quote(
        balance, rules, allocation=allocation, allocation_currency=allocation_currency
    )
    size = position_size_quote(available, risk_level, rules)
    quote = rules.quote_asset
    if size > available:
        return SizingRejection(
            RejectReason.INSUFFICIENT_BALANCE,
            "balance",
            f"position size {_n(size)} {quote} exceeds the available {_n(available)} {quote}",
        )
    if price <= 0:
        return SizingRejection(RejectReason.EXCHANGE, "price", f"no usable price ({_n(price)})")
    quantity = round_down(size / price, lot.qty_step)
    quantity = round_down(quantity, lot.market_qty_step)
    sized = SizedOrder(available=available, size_quote=size, price=price, quantity=quantity)
    at = f"(size {_n(size)} {quote} at price {_n(price)})"
    for name, minimum in (("min_qty", lot.min_qty), ("market_min_qty", lot.market_min_qty)):
        if minimum is not None and quantity < minimum:
            return SizingRejection(
                RejectReason.FILTER,
                name,
                f"{name}: quantity {_n(quantity)} is below the minimum {_n(minimum)} {at}",
            )
    if quantity <= 0:
        step = lot.market_qty_step or lot.qty_step
        return SizingRejection(
            RejectReason.FILTER,
            "qty_step",
            f"qty_step: quantity rounds down to 0 at step {_n(step)} {at}",
        )
    name, maximum = (
        ("market_max_qty", lot.market_max_qty) if lot.market_max_qty else ("max_qty", lot.max_qty)
    )
    if maximum is not None and maximum > 0 and quantity > maximum:
        return SizingRejection(
            RejectReason.FILTER,
            name,
            f"{name}: quantity {_n(quantity)} is above the maximum {_n(maximum)} {at}",
        )
    notional = sized.notional
    if notional < lot.min_notional:
        return SizingRejection(
            RejectReason.FILTER,
            "min_notional",
            f"min_notional: order value {_n(notional)} {quote} is below the minimum "
            f"{_n(lot.min_notional)} {quote} (quantity {_n(quantity)} at price {_n(price)})",
        )
    if lot.max_notional is not None and lot.max_notional > 0 and notional > lot.max_notional:
        return SizingRejection(
            RejectReason.FILTER,
            "max_notional",
            f"max_notional: order value {_n(notional)} {quote} is above the maximum "
            f"{_n(lot.max_notional)} {quote}",
        )
    return sized
