"""A reference model of the ledger: the pure domain folded over a set of events in memory.

The SQL projection must converge to exactly this, whatever the delivery order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from marketbot.contracts import Event, OrderEvent, OrderRequested, ReferrerAssigned, UserRegistered
from marketbot.ledger.domain.commission import (
    CommissionRecord,
    ReferrerChange,
    commission_of,
    referrer_at,
)
from marketbot.ledger.domain.money import MoneyRules
from marketbot.ledger.domain.operation import OperationState, merge
from marketbot.ledger.domain.statement import DayLine, statement_lines


@dataclass
class Model:
    rules: MoneyRules
    operations: dict[uuid.UUID, OperationState] = field(default_factory=dict)
    history: dict[str, dict[uuid.UUID, ReferrerChange]] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        if isinstance(event, OrderRequested | OrderEvent):
            self.operations[event.request_id] = merge(
                self.operations.get(event.request_id), event, self.rules
            )
        elif isinstance(event, UserRegistered | ReferrerAssigned):
            change = ReferrerChange(
                event.user_id, event.occurred_at, event.event_id, event.referrer_id
            )
            self.history.setdefault(event.user_id, {})[event.event_id] = change

    def commissions(self) -> dict[uuid.UUID, CommissionRecord]:
        result: dict[uuid.UUID, CommissionRecord] = {}
        for op in self.operations.values():
            if op.closed_at is None:
                continue
            referrer = referrer_at(self.history.get(op.user_id, {}).values(), op.closed_at)
            record = commission_of(op, referrer, self.rules)
            if record is not None:
                result[op.operation_id] = record
        return result

    def statement(self, user_id: str | None = None) -> list[DayLine]:
        ops = [o for o in self.operations.values() if user_id in (None, o.user_id)]
        return statement_lines(ops, self.commissions())


def fold(events: Iterable[Event], rules: MoneyRules) -> Model:
    model = Model(rules)
    for event in events:
        model.apply(event)
    return model


def canonical(events: Iterable[Event]) -> list[Event]:
    """Distinct events in one fixed order (by event id): the 'rebuild' order."""
    return sorted({e.event_id: e for e in events}.values(), key=lambda e: str(e.event_id))


def total(values: Iterable[Decimal]) -> Decimal:
    return sum(values, Decimal(0))
