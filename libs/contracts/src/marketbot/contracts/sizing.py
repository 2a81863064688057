"""The blueprint's position-size formula, shared by the executors (which size an order) and
the key vault (which refuses to sign one larger than it). Every number is configuration.

```
available    = quote balance on the exchange (capped by the user's allocation, BRL converted)
max_position = available * risk_percent[risk_level]
size_quote   = max(min_order_quote, min(max_position, available * max_balance_percent))
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import BaseModel

from marketbot.contracts.enums import RiskLevel

HUNDRED = Decimal(100)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class SizingRules:
    """The configurable numbers of the formula; percents are percents (``2`` = 2 %)."""

    risk_percents: Mapping[RiskLevel, Decimal] = field(
        default_factory=lambda: {
            RiskLevel.LOW: Decimal(1),
            RiskLevel.MEDIUM: Decimal(2),
            RiskLevel.HIGH: Decimal(5),
        }
    )
    min_order_quote: Decimal = Decimal(10)
    max_balance_percent: Decimal = Decimal(10)
    brl_per_quote: Decimal = Decimal("5.5")
    quote_asset: str = "USDT"


class SizingSettings(BaseModel):
    """The formula's numbers as settings, for the services that size (the executors) or
    bound (the key vault) an order: each reads them under its own env prefix."""

    risk_percent_low: Decimal = Decimal(1)
    risk_percent_medium: Decimal = Decimal(2)
    risk_percent_high: Decimal = Decimal(5)
    min_order_quote: Decimal = Decimal(10)
    max_balance_percent: Decimal = Decimal(10)
    brl_per_quote: Decimal = Decimal("5.5")
    quote_asset: str = "USDT"

    def sizing_rules(self) -> SizingRules:
        return SizingRules(
            risk_percents={
                RiskLevel.LOW: self.risk_percent_low,
                RiskLevel.MEDIUM: self.risk_percent_medium,
                RiskLevel.HIGH: self.risk_percent_high,
            },
            min_order_quote=self.min_order_quote,
            max_balance_percent=self.max_balance_percent,
            brl_per_quote=self.brl_per_quote,
            quote_asset=self.quote_asset,
        )


def available_quote(
    balance: Decimal,
    rules: SizingRules,
    *,
    allocation: Decimal | None = None,
    allocation_currency: str | None = None,
) -> Decimal:
    """The exchange's free quote balance, capped by the user's allocation when one is set."""
    available = max(balance, ZERO)
    if allocation is None:
        return available
    cap = allocation / rules.brl_per_quote if allocation_currency == "BRL" else allocation
    return min(available, cap)


def position_size_quote(available: Decimal, risk_level: RiskLevel, rules: SizingRules) -> Decimal:
    risk_percent = rules.risk_percents[risk_level]
    max_position = available * risk_percent / HUNDRED
    cap = available * rules.max_balance_percent / HUNDRED
    return max(rules.min_order_quote, min(max_position, cap))
