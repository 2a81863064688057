"""The whole ledger as a pure fold over a set of events, in memory.

The rebuild uses it to replay the streams and bulk-load fresh tables; the tests use it as
the reference the incremental SQL handlers must agree with. Memory: about 1-2 KB per
operation (a million operations fit in a couple of GB).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from marketbot.contracts import (
    DecisionMade,
    Event,
    Fill,
    OrderEvent,
    OrderFilled,
    OrderRequested,
    ReferrerAssigned,
    SignalReceived,
    UserRegistered,
)
from marketbot.ledger.domain.commission import (
    CommissionRecord,
    ReferrerChange,
    commission_of,
    referrer_at,
)
from marketbot.ledger.domain.money import MoneyRules
from marketbot.ledger.domain.operation import OperationState, merge
from marketbot.ledger.domain.statement import DayLine, statement_lines


@dataclass(frozen=True)
class FillRecord:
    operation_id: uuid.UUID
    event_id: uuid.UUID
    fill: Fill
    filled_at: object


@dataclass
class Projection:
    rules: MoneyRules
    operations: dict[uuid.UUID, OperationState] = field(default_factory=dict)
    history: dict[str, dict[uuid.UUID, ReferrerChange]] = field(default_factory=dict)
    fills: dict[tuple[uuid.UUID, str], FillRecord] = field(default_factory=dict)
    signals: dict[uuid.UUID, SignalReceived] = field(default_factory=dict)
    decisions: dict[uuid.UUID, DecisionMade] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        if isinstance(event, OrderRequested | OrderEvent):
            op_id = event.request_id
            self.operations[op_id] = merge(self.operations.get(op_id), event, self.rules)
            if isinstance(event, OrderFilled):
                for fill in event.fills:
                    key = (op_id, fill.trade_id)
                    known = self.fills.get(key)
                    if known is None or str(event.event_id) > str(known.event_id):
                        self.fills[key] = FillRecord(op_id, event.event_id, fill, event.filled_at)
        elif isinstance(event, UserRegistered | ReferrerAssigned):
            change = ReferrerChange(
                event.user_id, event.occurred_at, event.event_id, event.referrer_id
            )
            self.history.setdefault(event.user_id, {})[event.event_id] = change
        elif isinstance(event, SignalReceived):
            known_signal = self.signals.get(event.signal_id)
            if known_signal is None or str(event.event_id) > str(known_signal.event_id):
                self.signals[event.signal_id] = event
        elif isinstance(event, DecisionMade):
            known_decision = self.decisions.get(event.decision_id)
            if known_decision is None or str(event.event_id) > str(known_decision.event_id):
                self.decisions[event.decision_id] = event

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

    def referrer_changes(self) -> list[ReferrerChange]:
        return [c for changes in self.history.values() for c in changes.values()]

    def statement(self, user_id: str | None = None) -> list[DayLine]:
        ops = [o for o in self.operations.values() if user_id in (None, o.user_id)]
        return statement_lines(ops, self.commissions())


def fold(events: Iterable[Event], rules: MoneyRules) -> Projection:
    projection = Projection(rules)
    for event in events:
        projection.apply(event)
    return projection
