"""Builders for the decision tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from marketbot.contracts import (
    ApiKeyRevoked,
    ApiKeyStored,
    ApiKeyVerified,
    Event,
    Exchange,
    KeyPermissions,
    MarketContext,
    Plan,
    RiskLevel,
    SignalAction,
    SignalReceived,
    SubscriptionChanged,
    SubscriptionStatus,
    TradingMode,
    TradingPreferencesChanged,
    UserRegistered,
)

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def neutral_context(**overrides: Any) -> MarketContext:
    """Every input present and neutral: the score is the base minus nothing."""
    fields: dict[str, Any] = {
        "fear_greed": 50,
        "fear_greed_label": "Neutral",
        "btc_dominance": Decimal("55"),
        "market_cap_change_24h": Decimal("0"),
        "btc_change_24h": Decimal("0"),
        "top100_up_share": Decimal("0.5"),
        "top100_median_change": Decimal("0"),
        "ticker_price": Decimal("100000"),
        "ticker_exchange": Exchange.BYBIT,
        "ticker_change_24h": Decimal("0"),
    }
    fields.update(overrides)
    return MarketContext(**fields)


def signal(
    action: SignalAction = SignalAction.BUY,
    *,
    price: str | None = "100000",
    symbol: str = "BTCUSDT",
    age_s: float = 0.0,
    exchange: Exchange | None = None,
    signal_id: uuid.UUID | None = None,
    received_at: datetime = NOW,
) -> SignalReceived:
    sid = signal_id or uuid.uuid4()
    return SignalReceived(
        event_id=sid,
        occurred_at=received_at,
        correlation_id=str(sid),
        signal_id=sid,
        source="tradingview",
        symbol=symbol,
        action=action,
        price=None if price is None else Decimal(price),
        alert_time=received_at - timedelta(seconds=age_s),
        received_at=received_at,
        stop_loss_percent=Decimal("2"),
        take_profit_percent=Decimal("4"),
        exchange=exchange,
    )


def _env(user_id: str, at: datetime) -> dict[str, Any]:
    return {"occurred_at": at, "correlation_id": f"admin-{user_id}"}


def user_events(
    user_id: str,
    *,
    plan: Plan = Plan.PRO,
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    expires_at: datetime | None = None,
    exchange: Exchange = Exchange.BYBIT,
    mode: TradingMode = TradingMode.PERSONAL,
    risk: RiskLevel = RiskLevel.MEDIUM,
    key_exchange: Exchange | None = None,
    key: str = "verified",
    at: datetime = NOW - timedelta(days=1),
) -> list[Event]:
    """The account and key events of one user; ``key``: verified | stored | revoked | none."""
    events: list[Event] = [
        UserRegistered(
            **_env(user_id, at), user_id=user_id, email=f"{user_id}@x.io", display_name=user_id
        ),
        SubscriptionChanged(
            **_env(user_id, at), user_id=user_id, plan=plan, status=status, expires_at=expires_at
        ),
        TradingPreferencesChanged(
            **_env(user_id, at),
            user_id=user_id,
            preferred_exchange=exchange,
            risk_level=risk,
            trading_mode=mode,
            allocation=Decimal("100"),
            allocation_currency="USDT",
        ),
    ]
    if key == "none":
        return events
    credential = uuid.uuid5(uuid.NAMESPACE_URL, user_id)
    kx = key_exchange or exchange
    later = at + timedelta(minutes=1)
    events.append(
        ApiKeyStored(
            **_env(user_id, at),
            user_id=user_id,
            exchange=kx,
            credential_id=credential,
            masked_key="ab***yz",
        )
    )
    if key in ("verified", "revoked"):
        events.append(
            ApiKeyVerified(
                **_env(user_id, later),
                user_id=user_id,
                exchange=kx,
                credential_id=credential,
                permissions=KeyPermissions(
                    can_read=True, can_trade=True, can_withdraw=False, ip_bound=False
                ),
                verified_at=later,
            )
        )
    if key == "revoked":
        events.append(
            ApiKeyRevoked(
                **_env(user_id, later + timedelta(minutes=1)),
                user_id=user_id,
                exchange=kx,
                credential_id=credential,
                reason="user request",
            )
        )
    return events
