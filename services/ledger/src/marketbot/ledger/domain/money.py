"""Commission and affiliate math, with the rounding rules written down once.

Rounding rules (quote currency amounts):

- every amount the ledger *computes* is quantized to the currency's decimals
  (``currency_decimals``, default 8 for USDT/USDC/crypto, 2 for BRL);
- the platform commission on an operation is ``realized_pnl * rate`` rounded
  ``ROUND_HALF_EVEN`` (banker's rounding: no bias over many operations);
- the referrer's share is ``commission * affiliate_rate`` rounded ``ROUND_DOWN`` (the
  platform never pays out more than the exact share, so ``affiliate <= commission``);
- the platform keeps ``commission - affiliate`` exactly (no further rounding);
- amounts reported by the exchange (prices, quantities, fees, realized PnL) are stored as
  received, never rounded;
- totals are sums of the per-operation quantized amounts, never re-rounded, so the sum of
  the users' commissions equals the platform's commission income to the last unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

from marketbot.contracts import Plan

ZERO = Decimal("0")


@dataclass(frozen=True)
class MoneyRules:
    commission_rates: dict[Plan, Decimal]
    affiliate_rate: Decimal
    currency_decimals: dict[str, int] = field(default_factory=lambda: {"USDT": 8})
    default_decimals: int = 8
    default_currency: str = "USDT"

    def rate_for(self, plan: Plan) -> Decimal:
        return self.commission_rates.get(plan, ZERO)

    def quantum(self, currency: str) -> Decimal:
        places = self.currency_decimals.get(currency, self.default_decimals)
        return Decimal(1).scaleb(-places)

    def quote_currency(self, symbol: str) -> str:
        """The quote asset of a spot symbol: the longest configured currency it ends with."""
        for currency in sorted(self.currency_decimals, key=len, reverse=True):
            if symbol.endswith(currency) and len(symbol) > len(currency):
                return currency
        return self.default_currency


@dataclass(frozen=True)
class CommissionAmounts:
    currency: str
    rate: Decimal
    amount: Decimal
    referrer_id: str | None
    affiliate_rate: Decimal | None
    affiliate_amount: Decimal | None

    @property
    def platform_net(self) -> Decimal:
        return self.amount - (self.affiliate_amount or ZERO)


def commission_for(
    realized_pnl: Decimal,
    rate: Decimal,
    currency: str,
    referrer_id: str | None,
    rules: MoneyRules,
) -> CommissionAmounts | None:
    """The commission on one closed operation, or None when nothing is owed."""
    if realized_pnl <= 0 or rate <= 0:
        return None
    amount = (realized_pnl * rate).quantize(rules.quantum(currency), rounding=ROUND_HALF_EVEN)
    if amount <= 0:
        return None
    affiliate_rate: Decimal | None = None
    affiliate_amount: Decimal | None = None
    if referrer_id is not None:
        affiliate_rate = rules.affiliate_rate
        affiliate_amount = (amount * affiliate_rate).quantize(
            rules.quantum(currency), rounding=ROUND_DOWN
        )
    return CommissionAmounts(currency, rate, amount, referrer_id, affiliate_rate, affiliate_amount)
