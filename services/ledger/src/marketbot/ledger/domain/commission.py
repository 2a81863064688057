"""Who owes what on a closed operation, and who referred whom at the time."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from marketbot.contracts import OperationStatus, Plan
from marketbot.ledger.domain.money import MoneyRules, commission_for
from marketbot.ledger.domain.operation import OperationState


@dataclass(frozen=True)
class ReferrerChange:
    """A user's referrer from ``effective_at`` on (UserRegistered or ReferrerAssigned)."""

    user_id: str
    effective_at: datetime
    event_id: uuid.UUID
    referrer_id: str | None


def referrer_at(history: Iterable[ReferrerChange], at: datetime) -> str | None:
    """The referrer in force at ``at``: the latest change not after it (ties: event id)."""
    best: ReferrerChange | None = None
    for change in history:
        if change.effective_at > at:
            continue
        if best is None or (change.effective_at, str(change.event_id)) > (
            best.effective_at,
            str(best.event_id),
        ):
            best = change
    if best is None or best.referrer_id == best.user_id:
        return None  # nobody earns a share of their own commission
    return best.referrer_id


@dataclass(frozen=True)
class CommissionRecord:
    operation_id: uuid.UUID
    user_id: str
    plan: Plan
    currency: str
    rate: Decimal
    realized_pnl: Decimal
    amount: Decimal
    referrer_id: str | None
    affiliate_rate: Decimal | None
    affiliate_amount: Decimal | None
    accrued_at: datetime

    def as_row(self) -> dict[str, Any]:
        return dict(self.__dict__)


def commission_of(
    operation: OperationState, referrer_id: str | None, rules: MoneyRules
) -> CommissionRecord | None:
    """The commission a closed operation accrues (None: not closed, or nothing owed).

    The rate is the one stored on the operation when it was first seen (the request's plan),
    and the commission accrues at the close.
    """
    if (
        operation.status is not OperationStatus.CLOSED
        or operation.realized_pnl is None
        or operation.closed_at is None
    ):
        return None
    amounts = commission_for(
        operation.realized_pnl,
        operation.commission_rate,
        operation.currency,
        referrer_id,
        rules,
    )
    if amounts is None:
        return None
    return CommissionRecord(
        operation_id=operation.operation_id,
        user_id=operation.user_id,
        plan=operation.plan,
        currency=amounts.currency,
        rate=amounts.rate,
        realized_pnl=operation.realized_pnl,
        amount=amounts.amount,
        referrer_id=amounts.referrer_id,
        affiliate_rate=amounts.affiliate_rate,
        affiliate_amount=amounts.affiliate_amount,
        accrued_at=operation.closed_at,
    )
