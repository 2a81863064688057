"""The ledger's configuration, read once from ``MARKETBOT_LEDGER_*`` (plus the shared names)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from marketbot.contracts import Plan
from marketbot.ledger.domain.money import MoneyRules
from marketbot.runtime.settings import ServiceSettings, service_config


class LedgerSettings(ServiceSettings):
    """``MARKETBOT_LEDGER_AFFILIATE_RATE=0.10`` etc. Commission rates are the plan table's
    (``MARKETBOT_PLANS``); each operation is charged the rate its ``OrderRequested`` carries."""

    model_config = service_config("MARKETBOT_LEDGER_")

    service_name: str = "ledger"
    affiliate_rate: Decimal = Field(
        default=Decimal("0.10"), ge=0, le=1, description="referrer's share of the commission"
    )
    currency_decimals: dict[str, int] = Field(
        default_factory=lambda: {"USDT": 8, "USDC": 8, "FDUSD": 8, "BTC": 8, "ETH": 8, "BRL": 2},
        description="decimal places money is quantized to, per quote currency",
    )
    default_decimals: int = Field(default=8, ge=0, le=18)
    max_commission_entries: int = Field(
        default=1000, ge=1, description="entries returned by one CommissionsQuery (newest first)"
    )
    lag_poll_seconds: float = Field(default=5.0, gt=0)

    def money_rules(self) -> MoneyRules:
        return MoneyRules(
            # only for an order event whose request the ledger has not seen yet; the request's
            # own rate replaces it when it arrives
            commission_rates={plan: self.plans.commission_rate(plan) for plan in Plan},
            affiliate_rate=self.affiliate_rate,
            currency_decimals=dict(self.currency_decimals),
            default_decimals=self.default_decimals,
        )
