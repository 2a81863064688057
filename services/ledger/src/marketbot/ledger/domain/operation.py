"""One operation per (decision, user), merged from its events in any order.

Every event owns a *section* of the row (the request, the placement, the fill, the close, a
rejection, an unknown outcome). A section is replaced only by an event that sorts after the
one that wrote it (by its own timestamp, then its event id), and the status is derived from
which sections exist, the furthest one winning:

    CLOSED > REJECTED > OPEN (filled) > PLACED > UNKNOWN > REQUESTED

A position sold in parts stays OPEN: each ``PositionReduced`` carries the totals sold so
far, so the "reduced" section keeps the one with the largest sold quantity.

So the merge is commutative, associative and idempotent: any order of delivery, with any
duplicates, converges to the same row, which is what lets a rebuild equal the live table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from marketbot.contracts import (
    Exchange,
    OperationStatus,
    OrderEvent,
    OrderFilled,
    OrderOutcomeUnknown,
    OrderPlaced,
    OrderRejected,
    OrderRequested,
    Plan,
    PositionClosed,
    PositionReduced,
    Side,
)
from marketbot.ledger.domain.money import MoneyRules

OperationEvent = OrderRequested | OrderEvent


@dataclass(frozen=True)
class OperationState:
    operation_id: uuid.UUID
    signal_id: uuid.UUID
    decision_id: uuid.UUID
    user_id: str
    exchange: Exchange
    symbol: str
    side: Side
    plan: Plan
    client_order_id: str
    currency: str
    commission_rate: Decimal
    identity_event_id: uuid.UUID
    identity_rank: int
    status: OperationStatus = OperationStatus.REQUESTED
    sort_at: datetime | None = None
    updated_at: datetime | None = None
    # the request (ORDER_REQUESTS)
    requested_event_id: uuid.UUID | None = None
    requested_at: datetime | None = None
    priority: int | None = None
    requested_price: Decimal | None = None
    allocation: Decimal | None = None
    allocation_currency: str | None = None
    # the placement
    placed_event_id: uuid.UUID | None = None
    placed_at: datetime | None = None
    placed_order_id: str | None = None
    placed_quantity: Decimal | None = None
    placed_quote_amount: Decimal | None = None
    placed_price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    limit_price: Decimal | None = None
    max_slippage_percent: Decimal | None = None
    # an unknown outcome (sent, no answer)
    unknown_event_id: uuid.UUID | None = None
    unknown_since: datetime | None = None
    unknown_detail: str | None = None
    # a rejection
    rejected_event_id: uuid.UUID | None = None
    rejected_at: datetime | None = None
    reject_reason: str | None = None
    reject_message: str | None = None
    reject_code: str | None = None
    # the fill (cumulative: the fill with the largest quantity wins)
    filled_event_id: uuid.UUID | None = None
    filled_at: datetime | None = None
    filled_order_id: str | None = None
    filled_quantity: Decimal | None = None
    average_price: Decimal | None = None
    filled_quote: Decimal | None = None
    entry_fees: Decimal | None = None
    entry_fees_estimated: bool | None = None
    # parts sold before the close (cumulative: the reduction with the largest sold
    # quantity wins; the close then carries the totals over every part)
    reduced_event_id: uuid.UUID | None = None
    reduced_at: datetime | None = None
    reduced_quantity: Decimal | None = None
    remaining_quantity: Decimal | None = None
    reduced_fees: Decimal | None = None
    reduced_pnl: Decimal | None = None
    # the close
    closed_event_id: uuid.UUID | None = None
    closed_at: datetime | None = None
    closed_order_id: str | None = None
    close_reason: str | None = None
    closed_quantity: Decimal | None = None
    entry_price: Decimal | None = None
    exit_price: Decimal | None = None
    fees_quote: Decimal | None = None
    realized_pnl: Decimal | None = None
    exit_client_order_id: str | None = None
    fees_estimated: bool | None = None

    @property
    def exchange_order_id(self) -> str | None:
        return self.placed_order_id or self.filled_order_id or self.closed_order_id

    @property
    def exit_notional(self) -> Decimal | None:
        if self.closed_quantity is None or self.exit_price is None:
            return None
        return self.closed_quantity * self.exit_price

    def as_row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(OperationState))


def _section(event: OperationEvent) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """(section, ordering key, values) an event writes. The greatest key owns the section."""
    eid = event.event_id
    if isinstance(event, OrderRequested):
        return (
            "requested",
            (event.requested_at, str(eid)),
            {
                "requested_event_id": eid,
                "requested_at": event.requested_at,
                "priority": event.priority,
                "requested_price": event.reference_price,
                "allocation": event.allocation,
                "allocation_currency": event.allocation_currency,
            },
        )
    if isinstance(event, OrderPlaced):
        return (
            "placed",
            (event.placed_at, str(eid)),
            {
                "placed_event_id": eid,
                "placed_at": event.placed_at,
                "placed_order_id": event.exchange_order_id,
                "placed_quantity": event.quantity,
                "placed_quote_amount": event.quote_amount,
                "placed_price": event.reference_price,
                "stop_loss_price": event.stop_loss_price,
                "take_profit_price": event.take_profit_price,
                "limit_price": event.limit_price,
                "max_slippage_percent": event.max_slippage_percent,
            },
        )
    if isinstance(event, OrderFilled):
        return (
            "filled",
            (event.filled_quantity, event.filled_at, str(eid)),
            {
                "filled_event_id": eid,
                "filled_at": event.filled_at,
                "filled_order_id": event.exchange_order_id,
                "filled_quantity": event.filled_quantity,
                "average_price": event.average_price,
                "filled_quote": event.quote_quantity,
                "entry_fees": event.fees_quote,
                "entry_fees_estimated": event.fees_estimated,
            },
        )
    if isinstance(event, OrderRejected):
        return (
            "rejected",
            (event.rejected_at, str(eid)),
            {
                "rejected_event_id": eid,
                "rejected_at": event.rejected_at,
                "reject_reason": event.reason.value,
                "reject_message": event.message,
                "reject_code": event.exchange_code,
            },
        )
    if isinstance(event, OrderOutcomeUnknown):
        return (
            "unknown",
            (event.since, str(eid)),
            {"unknown_event_id": eid, "unknown_since": event.since, "unknown_detail": event.detail},
        )
    if isinstance(event, PositionReduced):
        return (
            "reduced",
            (event.sold_quantity, event.reduced_at, str(eid)),
            {
                "reduced_event_id": eid,
                "reduced_at": event.reduced_at,
                "reduced_quantity": event.sold_quantity,
                "remaining_quantity": event.remaining_quantity,
                "reduced_fees": event.fees_quote_total,
                "reduced_pnl": event.realized_pnl_total,
            },
        )
    if isinstance(event, PositionClosed):
        return (
            "closed",
            (event.closed_at, str(eid)),
            {
                "closed_event_id": eid,
                "closed_at": event.closed_at,
                "closed_order_id": event.exchange_order_id,
                "close_reason": event.close_reason.value,
                "closed_quantity": event.quantity,
                "entry_price": event.entry_price,
                "exit_price": event.exit_price,
                "fees_quote": event.fees_quote,
                "realized_pnl": event.realized_pnl,
                "exit_client_order_id": event.exit_client_order_id,
                "fees_estimated": event.fees_estimated,
            },
        )
    raise TypeError(f"not an operation event: {type(event).__name__}")


def _section_key(state: OperationState, section: str) -> tuple[Any, ...] | None:
    eid = getattr(state, f"{section}_event_id")
    if eid is None:
        return None
    if section == "filled":
        return (state.filled_quantity, state.filled_at, str(eid))
    if section == "reduced":
        return (state.reduced_quantity, state.reduced_at, str(eid))
    at = state.unknown_since if section == "unknown" else getattr(state, f"{section}_at")
    return (at, str(eid))


def _identity(event: OperationEvent, rules: MoneyRules) -> dict[str, Any]:
    return {
        "operation_id": event.request_id,
        "signal_id": event.signal_id,
        "decision_id": event.decision_id,
        "user_id": event.user_id,
        "exchange": event.exchange,
        "symbol": event.symbol,
        "side": event.side,
        "plan": event.plan,
        "client_order_id": event.client_order_id,
        "currency": rules.quote_currency(event.symbol),
        # The rate in force when the order was requested, carried by the request itself, so
        # a later change of the plan table (or a rebuild after it) does not touch it. An
        # order event seen before its request takes the table's rate until the request comes.
        "commission_rate": (
            event.commission_rate
            if isinstance(event, OrderRequested)
            else rules.rate_for(event.plan)
        ),
        "identity_event_id": event.event_id,
        "identity_rank": 0 if isinstance(event, OrderRequested) else 1,
    }


def derive_status(state: OperationState) -> OperationStatus:
    if state.closed_at is not None:
        return OperationStatus.CLOSED
    if state.rejected_at is not None:
        return OperationStatus.REJECTED
    if state.filled_at is not None:
        return OperationStatus.OPEN
    if state.placed_at is not None:
        return OperationStatus.PLACED
    if state.unknown_since is not None:
        return OperationStatus.UNKNOWN
    return OperationStatus.REQUESTED


def _times(state: OperationState) -> list[datetime]:
    candidates = (
        state.requested_at,
        state.placed_at,
        state.unknown_since,
        state.rejected_at,
        state.filled_at,
        state.reduced_at,
        state.closed_at,
    )
    return [t for t in candidates if t is not None]


def merge(state: OperationState | None, event: OperationEvent, rules: MoneyRules) -> OperationState:
    """The operation after ``event``; the same whatever order the events come in."""
    identity = _identity(event, rules)
    if state is None:
        state = OperationState(**identity)
    elif (identity["identity_rank"], str(event.event_id)) < (
        state.identity_rank,
        str(state.identity_event_id),
    ):
        state = replace(state, **identity)
    section, key, values = _section(event)
    current = _section_key(state, section)
    if current is None or key > current:
        state = replace(state, **values)
    times = _times(state)
    return replace(
        state,
        status=derive_status(state),
        sort_at=state.requested_at or min(times),
        updated_at=max(times),
    )
