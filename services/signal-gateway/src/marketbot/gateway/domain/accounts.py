"""A user as the gateway keeps it, and the account events each change publishes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from marketbot.contracts import (
    Event,
    Exchange,
    Plan,
    ReferrerAssigned,
    RiskLevel,
    SubscriptionChanged,
    SubscriptionStatus,
    TradingMode,
    TradingPreferencesChanged,
    UserRegistered,
)


@dataclass(frozen=True)
class User:
    user_id: str
    email: str
    display_name: str
    plan: Plan
    subscription_status: SubscriptionStatus
    expires_at: datetime | None
    trading_mode: TradingMode
    preferred_exchange: Exchange
    risk_level: RiskLevel
    allocation: Decimal | None
    allocation_currency: str | None
    referrer_id: str | None
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        """What the API shows (no token hash: it never leaves the repository)."""
        return {
            "user_id": self.user_id,
            "email": self.email,
            "display_name": self.display_name,
            "plan": self.plan.value,
            "subscription_status": self.subscription_status.value,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "trading_mode": self.trading_mode.value,
            "preferred_exchange": self.preferred_exchange.value,
            "risk_level": self.risk_level.value,
            "allocation": format(self.allocation, "f") if self.allocation is not None else None,
            "allocation_currency": self.allocation_currency,
            "referrer_id": self.referrer_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def _envelope(now: datetime, correlation_id: str) -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "occurred_at": now, "correlation_id": correlation_id}


def subscription_event(user: User, now: datetime, correlation_id: str) -> SubscriptionChanged:
    return SubscriptionChanged(
        **_envelope(now, correlation_id),
        user_id=user.user_id,
        plan=user.plan,
        status=user.subscription_status,
        expires_at=user.expires_at,
    )


def preferences_event(user: User, now: datetime, correlation_id: str) -> TradingPreferencesChanged:
    return TradingPreferencesChanged(
        **_envelope(now, correlation_id),
        user_id=user.user_id,
        preferred_exchange=user.preferred_exchange,
        risk_level=user.risk_level,
        trading_mode=user.trading_mode,
        allocation=user.allocation,
        allocation_currency=user.allocation_currency,
    )


def referrer_event(user: User, now: datetime, correlation_id: str) -> ReferrerAssigned:
    return ReferrerAssigned(
        **_envelope(now, correlation_id), user_id=user.user_id, referrer_id=user.referrer_id
    )


def registration_events(user: User, now: datetime, correlation_id: str) -> list[Event]:
    """A new user: who they are, then their starting subscription and preferences, so a
    projection built from the account stream alone knows the whole user."""
    return [
        UserRegistered(
            **_envelope(now, correlation_id),
            user_id=user.user_id,
            email=user.email,
            display_name=user.display_name,
            referrer_id=user.referrer_id,
        ),
        subscription_event(user, now, correlation_id),
        preferences_event(user, now, correlation_id),
    ]


def with_changes(user: User, now: datetime, **changes: Any) -> User:
    return replace(user, updated_at=now, **changes)
