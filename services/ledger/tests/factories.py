"""Order event sequences for one operation, as an executor would publish them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from marketbot.contracts import (
    DEFAULT_PLANS,
    CloseReason,
    DecisionAction,
    DecisionMade,
    Event,
    Exchange,
    Fill,
    MarketContext,
    OrderFilled,
    OrderOutcomeUnknown,
    OrderPlaced,
    OrderRejected,
    OrderRequested,
    Plan,
    PositionClosed,
    PositionReduced,
    ReferrerAssigned,
    RejectReason,
    RiskLevel,
    Side,
    SignalAction,
    SignalReceived,
    SubscriptionChanged,
    SubscriptionStatus,
    UserRegistered,
    client_order_id_for,
    derived_id,
    request_id_for,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FIRST_SIGNAL = uuid.UUID(int=1)


def signal_events(signal_id: uuid.UUID, at: datetime = T0) -> tuple[SignalReceived, DecisionMade]:
    signal = SignalReceived(
        event_id=signal_id,
        occurred_at=at,
        correlation_id=str(signal_id),
        signal_id=signal_id,
        source="tv-main",
        symbol="BTCUSDT",
        action=SignalAction.BUY,
        price="95000",
        received_at=at,
    )
    decision_id = derived_id("decision", signal_id)
    decision = DecisionMade(
        event_id=decision_id,
        occurred_at=at,
        correlation_id=str(signal_id),
        decision_id=decision_id,
        signal_id=signal_id,
        symbol="BTCUSDT",
        signal_action=SignalAction.BUY,
        action=DecisionAction.BUY,
        confidence=80,
        reasons=(),
        context=MarketContext(),
        decided_at=at,
    )
    return signal, decision


@dataclass(frozen=True)
class Script:
    """One user's operation for one decision, and the events that tell its story."""

    user_id: str
    plan: Plan = Plan.PRO
    signal_id: uuid.UUID = FIRST_SIGNAL
    symbol: str = "BTCUSDT"
    exchange: Exchange = Exchange.BYBIT
    quantity: Decimal = Decimal("0.001")
    entry: Decimal = Decimal("95000")
    exit: Decimal = Decimal("96000")
    fees: Decimal = Decimal("0.19")
    start: datetime = T0

    @property
    def decision_id(self) -> uuid.UUID:
        return derived_id("decision", self.signal_id)

    @property
    def request_id(self) -> uuid.UUID:
        return request_id_for(self.decision_id, self.user_id)

    @property
    def realized_pnl(self) -> Decimal:
        return (self.exit - self.entry) * self.quantity - self.fees

    def _common(self, kind: str, minutes: int) -> dict[str, object]:
        return {
            "event_id": derived_id("test", kind, self.request_id),
            "occurred_at": self.start + timedelta(minutes=minutes),
            "correlation_id": str(self.signal_id),
            "request_id": self.request_id,
            "decision_id": self.decision_id,
            "signal_id": self.signal_id,
            "user_id": self.user_id,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "side": Side.BUY,
            "plan": self.plan,
            "client_order_id": client_order_id_for(self.decision_id, self.user_id),
        }

    def requested(self) -> OrderRequested:
        common = self._common("requested", 0)
        return OrderRequested(
            **common,
            priority={Plan.PRO: 1, Plan.FLEX: 2, Plan.TRIAL: 3}[self.plan],
            not_before=self.start,
            risk_level=RiskLevel.MEDIUM,
            reference_price=self.entry,
            requested_at=self.start,
            commission_rate=DEFAULT_PLANS[self.plan].commission_rate,
        )

    def placed(self) -> OrderPlaced:
        return OrderPlaced(
            **self._common("placed", 1),
            exchange_order_id=f"x-{self.request_id.hex[:8]}",
            quantity=self.quantity,
            quote_amount=self.quantity * self.entry,
            reference_price=self.entry,
            placed_at=self.start + timedelta(minutes=1),
        )

    def filled(self) -> OrderFilled:
        entry_fee = self.fees / 2
        return OrderFilled(
            **self._common("filled", 2),
            exchange_order_id=f"x-{self.request_id.hex[:8]}",
            fills=(
                Fill(
                    trade_id="t1",
                    price=self.entry,
                    quantity=self.quantity,
                    fee=entry_fee,
                    fee_asset="USDT",
                    fee_quote=entry_fee,
                ),
            ),
            filled_quantity=self.quantity,
            average_price=self.entry,
            quote_quantity=self.quantity * self.entry,
            fees_quote=entry_fee,
            filled_at=self.start + timedelta(minutes=2),
        )

    def closed(self, at_minutes: int = 60) -> PositionClosed:
        return PositionClosed(
            **self._common("closed", at_minutes),
            exchange_order_id=f"x-{self.request_id.hex[:8]}",
            close_reason=CloseReason.TAKE_PROFIT,
            quantity=self.quantity,
            entry_price=self.entry,
            exit_price=self.exit,
            fees_quote=self.fees,
            realized_pnl=self.realized_pnl,
            closed_at=self.start + timedelta(minutes=at_minutes),
        )

    def reduced(self, part: int, of: int, at_minutes: int) -> PositionReduced:
        """The ``part``-th of ``of`` equal parts sold (the last one is the close's)."""
        piece = self.quantity / of
        pnl = self.realized_pnl / of
        fees = self.fees / of
        return PositionReduced(
            **self._common(f"reduced-{part}", at_minutes),
            exchange_order_id=f"sl-{part}",
            exit_client_order_id=f"sl-{part}",
            reason=CloseReason.STOP_LOSS,
            quantity=piece,
            remaining_quantity=self.quantity - piece * part,
            entry_price=self.entry,
            exit_price=self.exit,
            fees_quote=fees,
            realized_pnl=pnl,
            sold_quantity=piece * part,
            fees_quote_total=fees * part,
            realized_pnl_total=pnl * part,
            reduced_at=self.start + timedelta(minutes=at_minutes),
        )

    def rejected(self) -> OrderRejected:
        return OrderRejected(
            **self._common("rejected", 1),
            reason=RejectReason.INSUFFICIENT_BALANCE,
            message="available 3 USDT < minimum 10 USDT",
            rejected_at=self.start + timedelta(minutes=1),
        )

    def unknown(self) -> OrderOutcomeUnknown:
        return OrderOutcomeUnknown(
            **self._common("unknown", 1),
            detail="timeout after sending",
            since=self.start + timedelta(seconds=30),
        )

    def story(self, outcome: str = "closed") -> list[Event]:
        if outcome == "rejected":
            return [self.requested(), self.rejected()]
        if outcome == "unknown":
            return [self.requested(), self.unknown()]
        if outcome == "unknown_then_closed":
            return [self.requested(), self.unknown(), self.placed(), self.filled(), self.closed()]
        if outcome == "open":
            return [self.requested(), self.placed(), self.filled()]
        return [self.requested(), self.placed(), self.filled(), self.closed()]


def registered(user_id: str, referrer_id: str | None, at: datetime = T0) -> UserRegistered:
    return UserRegistered(
        event_id=derived_id("test-registered", user_id),
        occurred_at=at,
        correlation_id=f"user-{user_id}",
        user_id=user_id,
        email=f"{user_id}@example.com",
        display_name=user_id,
        referrer_id=referrer_id,
    )


def referrer_assigned(user_id: str, referrer_id: str | None, at: datetime) -> ReferrerAssigned:
    return ReferrerAssigned(
        event_id=derived_id("test-referrer", user_id, referrer_id, at),
        occurred_at=at,
        correlation_id=f"user-{user_id}",
        user_id=user_id,
        referrer_id=referrer_id,
    )


def plan_changed(user_id: str, plan: Plan, at: datetime) -> SubscriptionChanged:
    return SubscriptionChanged(
        event_id=derived_id("test-plan", user_id, plan, at),
        occurred_at=at,
        correlation_id=f"user-{user_id}",
        user_id=user_id,
        plan=plan,
        status=SubscriptionStatus.ACTIVE,
    )
