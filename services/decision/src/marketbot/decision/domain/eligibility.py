"""Who receives an order for a decision (blueprint: the eligibility rule).

Eligible: subscription ACTIVE and not past ``expires_at`` at decision time, trading mode
PERSONAL, and an API key for the user's preferred exchange that is active (not revoked),
enabled (trade permission, not past its own expiry) and verified. When the decision names an
exchange, only users whose preferred exchange is that exchange are eligible: a user's
preferred exchange decides where their order goes, and a signal for one venue is not
re-routed to the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from marketbot.contracts import Exchange, Plan, RiskLevel, SubscriptionStatus, TradingMode


class KeyStatus(StrEnum):
    STORED = "STORED"
    VERIFIED = "VERIFIED"
    REJECTED = "REJECTED"
    REVOKED = "REVOKED"


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A user with their subscription, preferences and the key for their preferred exchange."""

    user_id: str
    plan: Plan | None
    subscription_status: SubscriptionStatus | None
    expires_at: datetime | None
    preferred_exchange: Exchange | None
    trading_mode: TradingMode | None
    risk_level: RiskLevel | None
    allocation: Decimal | None = None
    allocation_currency: str | None = None
    key_status: KeyStatus | None = None
    key_can_trade: bool = False
    key_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EligibleUser:
    user_id: str
    plan: Plan
    exchange: Exchange
    risk_level: RiskLevel
    allocation: Decimal | None = None
    allocation_currency: str | None = None


def ineligibility(candidate: Candidate, at: datetime, exchange: Exchange | None) -> str | None:
    """Why the user gets nothing for a decision made ``at`` (``None`` when eligible)."""
    c = candidate
    if c.plan is None or c.subscription_status is not SubscriptionStatus.ACTIVE:
        return "subscription not active"
    if c.expires_at is not None and c.expires_at <= at:
        return "subscription expired"
    if c.trading_mode is not TradingMode.PERSONAL:
        return "trading mode is not PERSONAL"
    if c.preferred_exchange is None or c.risk_level is None:
        return "no trading preferences"
    if exchange is not None and c.preferred_exchange is not exchange:
        return "the signal is for another exchange"
    if c.key_status is not KeyStatus.VERIFIED:
        return "no verified key for the preferred exchange"
    if not c.key_can_trade:
        return "the key cannot trade"
    if c.key_expires_at is not None and c.key_expires_at <= at:
        return "the key expired"
    return None


def eligible(candidate: Candidate, at: datetime, exchange: Exchange | None) -> EligibleUser | None:
    if ineligibility(candidate, at, exchange) is not None:
        return None
    assert candidate.plan is not None
    assert candidate.preferred_exchange is not None
    assert candidate.risk_level is not None
    return EligibleUser(
        user_id=candidate.user_id,
        plan=candidate.plan,
        exchange=candidate.preferred_exchange,
        risk_level=candidate.risk_level,
        allocation=candidate.allocation,
        allocation_currency=candidate.allocation_currency,
    )
