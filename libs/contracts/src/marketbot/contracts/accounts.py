"""Users, plans and trading preferences, as published by the gateway's admin API."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from marketbot.contracts.enums import (
    Exchange,
    Plan,
    RiskLevel,
    SubscriptionStatus,
    TradingMode,
)
from marketbot.contracts.envelope import Event, Money
from marketbot.contracts.orders import AllocationCurrency


class AccountEvent(Event):
    user_id: str = Field(min_length=1, max_length=64)

    def subject(self) -> str:
        return f"accounts.{self.TYPE}"


class UserRegistered(AccountEvent):
    TYPE = "UserRegistered"

    email: str = Field(min_length=3, max_length=254)
    display_name: str = Field(min_length=1, max_length=128)
    referrer_id: str | None = Field(default=None, max_length=64)


class ReferrerAssigned(AccountEvent):
    TYPE = "ReferrerAssigned"

    referrer_id: str | None = Field(max_length=64)


class SubscriptionChanged(AccountEvent):
    TYPE = "SubscriptionChanged"

    plan: Plan
    status: SubscriptionStatus
    expires_at: AwareDatetime | None = None


class TradingPreferencesChanged(AccountEvent):
    TYPE = "TradingPreferencesChanged"

    preferred_exchange: Exchange
    risk_level: RiskLevel
    trading_mode: TradingMode
    allocation: Money | None = Field(default=None, gt=0)
    allocation_currency: AllocationCurrency | None = None
