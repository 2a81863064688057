"""Statements by day: what an account (or the platform) traded, earned and paid.

A day is a UTC calendar day. An operation counts towards:
- the day it was filled: one operation, and its entry notional as volume;
- the day it was closed: its exit notional as volume, its realized PnL and its commission.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal

from marketbot.ledger.domain.commission import CommissionRecord
from marketbot.ledger.domain.money import ZERO
from marketbot.ledger.domain.operation import OperationState


@dataclass(frozen=True)
class DayLine:
    day: date
    operations: int = 0
    volume: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    commissions: Decimal = ZERO

    def __add__(self, other: DayLine) -> DayLine:
        return DayLine(
            self.day,
            self.operations + other.operations,
            self.volume + other.volume,
            self.realized_pnl + other.realized_pnl,
            self.commissions + other.commissions,
        )


def statement_lines(
    operations: Iterable[OperationState],
    commissions: Mapping[uuid.UUID, CommissionRecord],
) -> list[DayLine]:
    """The reference computation the SQL statement query is checked against."""
    days: dict[date, DayLine] = {}

    def add(line: DayLine) -> None:
        days[line.day] = days.get(line.day, DayLine(line.day)) + line

    for op in operations:
        if op.filled_at is not None and op.filled_quote is not None:
            add(DayLine(op.filled_at.astimezone(UTC).date(), 1, op.filled_quote))
        if op.closed_at is not None and op.realized_pnl is not None:
            commission = commissions.get(op.operation_id)
            add(
                DayLine(
                    op.closed_at.astimezone(UTC).date(),
                    0,
                    op.exit_notional or ZERO,
                    op.realized_pnl,
                    commission.amount if commission else ZERO,
                )
            )
    return [days[d] for d in sorted(days)]
