"""Plain async handlers: one event and a connection in, the effect written, events out.

Each handler is idempotent on its own (applying an event twice changes nothing) and
commutative with the others, so the exactly-once consumer's processed-events table is a
second line of defence, not the only one, and any delivery order gives the same tables.
"""

from __future__ import annotations

from collections.abc import Sequence

from marketbot.contracts import (
    CommissionAccrued,
    DecisionMade,
    Event,
    OperationStatusChanged,
    OrderEvent,
    OrderFilled,
    OrderRequested,
    PositionClosed,
    ReferrerAssigned,
    SignalReceived,
    UserRegistered,
    derived_id,
)
from marketbot.ledger import metrics
from marketbot.ledger.adapters import repository as repo
from marketbot.ledger.domain.commission import (
    CommissionRecord,
    ReferrerChange,
    commission_of,
    referrer_at,
)
from marketbot.ledger.domain.money import MoneyRules, commission_for
from marketbot.ledger.domain.operation import OperationEvent, OperationState, merge
from marketbot.runtime.db import Conn


async def apply_event(event: Event, conn: Conn, rules: MoneyRules) -> list[Event]:
    """Route any ledger input to its handler; events the ledger does not project are skipped."""
    if isinstance(event, OrderRequested | OrderEvent):
        return await apply_order_event(event, conn, rules)
    if isinstance(event, UserRegistered | ReferrerAssigned):
        return await apply_referrer_change(event, conn, rules)
    if isinstance(event, SignalReceived):
        await repo.save_signal(conn, event)
    elif isinstance(event, DecisionMade):
        await repo.save_decision(conn, event)
    return []


async def apply_events(events: Sequence[Event], conn: Conn, rules: MoneyRules) -> list[Event]:
    """``apply_event`` for a batch, in one transaction, with the same tables and events as
    applying them one by one in this order: the order events' operations are locked, read
    and written a statement each for the whole batch (not four statements an event)."""
    emitted: list[Event] = []
    ops = [e for e in events if isinstance(e, OrderRequested | OrderEvent)]
    for event in events:
        if not isinstance(event, OrderRequested | OrderEvent):
            emitted.extend(await apply_event(event, conn, rules))
    if ops:
        emitted.extend(await apply_order_events(ops, conn, rules))
    return emitted


async def apply_order_events(
    events: Sequence[OperationEvent], conn: Conn, rules: MoneyRules
) -> list[Event]:
    """The batch form of ``apply_order_event``: one lock statement, one read, the merges in
    memory, one write of the operations and one of the fills; then, per operation a close or
    a request of the batch touched, its commission (as the single path does, under the
    user's lock taken up front)."""
    closing = [e for e in events if isinstance(e, PositionClosed | OrderRequested)]
    await repo.lock_all(conn, [e.user_id for e in closing], [e.request_id for e in events])
    stored = await repo.load_operations(conn, [e.request_id for e in events])
    states = dict(stored)
    emitted: list[Event] = []
    fills: list[tuple[object, ...]] = []
    for event in events:
        before = states.get(event.request_id)
        after = merge(before, event, rules)
        states[event.request_id] = after
        if isinstance(event, OrderFilled):
            fills.extend(
                repo.fill_rows(after.operation_id, event.event_id, event.filled_at, event.fills)
            )
        if before is None or before.status is not after.status:
            emitted.append(status_changed(after, event))
            metrics.STATUS_CHANGES.labels(after.status.value).inc()
    changed = [s for op, s in states.items() if stored.get(op) != s]
    await repo.save_operations(conn, changed)
    await repo.save_fill_rows(conn, fills)
    last_cause = {e.request_id: e for e in closing}  # the batch's last close or request
    for operation_id, cause in last_cause.items():
        after = states[operation_id]
        if after.closed_at is None:
            continue
        history = await repo.referrer_history(conn, after.user_id)
        record = commission_of(after, referrer_at(history, after.closed_at), rules)
        emitted.extend(await _store_commission(conn, after, record, cause))
    return emitted


async def apply_order_event(event: OperationEvent, conn: Conn, rules: MoneyRules) -> list[Event]:
    # A close accrues the commission; a request can change the rate of a closed operation
    # (it arrived after the close): both recompute it, under the user's lock.
    closing = isinstance(event, PositionClosed | OrderRequested)
    if closing:
        # Taken before the operation row, as apply_referrer_change does: no lock cycle.
        await repo.lock_user(conn, event.user_id)
    # Two statements, not one: a statement reads the snapshot taken before its lock is granted.
    await repo.lock_operation(conn, event.request_id)
    before = await repo.load_operation(conn, event.request_id)
    after = merge(before, event, rules)
    emitted: list[Event] = []
    if after != before:
        await repo.save_operation(conn, after)
    if isinstance(event, OrderFilled):
        await repo.save_fills(
            conn, after.operation_id, event.event_id, event.filled_at, event.fills
        )
    if before is None or before.status is not after.status:
        emitted.append(status_changed(after, event))
        metrics.STATUS_CHANGES.labels(after.status.value).inc()
    if closing and after.closed_at is not None:
        history = await repo.referrer_history(conn, after.user_id)
        referrer = referrer_at(history, after.closed_at) if after.closed_at else None
        record = commission_of(after, referrer, rules)
        emitted.extend(await _store_commission(conn, after, record, event))
    return emitted


async def _store_commission(
    conn: Conn, operation: OperationState, record: CommissionRecord | None, cause: Event
) -> list[Event]:
    existing = await repo.load_commission(conn, operation.operation_id)
    if record == existing:
        return []
    if record is None:
        await repo.delete_commission(conn, operation.operation_id)
        await repo.set_operation_commission(conn, operation.operation_id, None)
        return []
    await repo.save_commission(conn, record)
    await repo.set_operation_commission(conn, operation.operation_id, record.amount)
    metrics.COMMISSIONS.labels(record.plan.value, record.currency).inc()
    return [commission_accrued(record, cause)]


async def apply_referrer_change(
    event: UserRegistered | ReferrerAssigned, conn: Conn, rules: MoneyRules
) -> list[Event]:
    """Record the change; commissions accrued since it take the referrer now in force."""
    change = ReferrerChange(event.user_id, event.occurred_at, event.event_id, event.referrer_id)
    await repo.lock_user(conn, event.user_id)
    if not await repo.add_referrer_change(conn, change):
        return []
    history = await repo.referrer_history(conn, event.user_id)
    emitted: list[Event] = []
    for record in await repo.commissions_since(conn, event.user_id, change.effective_at):
        referrer = referrer_at(history, record.accrued_at)
        if referrer == record.referrer_id:
            continue
        amounts = commission_for(record.realized_pnl, record.rate, record.currency, referrer, rules)
        if amounts is None:  # cannot happen for a stored commission; keep it as it was
            continue
        updated = CommissionRecord(
            **{
                **record.as_row(),
                "referrer_id": amounts.referrer_id,
                "affiliate_rate": amounts.affiliate_rate,
                "affiliate_amount": amounts.affiliate_amount,
            }
        )
        await repo.save_commission(conn, updated)
        emitted.append(commission_accrued(updated, event))
    return emitted


def status_changed(operation: OperationState, cause: Event) -> OperationStatusChanged:
    detail = (
        operation.reject_message
        or operation.close_reason
        or (operation.unknown_detail if operation.status.value == "UNKNOWN" else None)
    )
    return OperationStatusChanged(
        # One id per (operation, status): a replay or a redelivery can never notify twice.
        event_id=derived_id(
            "ledger.OperationStatusChanged", operation.operation_id, operation.status
        ),
        occurred_at=cause.occurred_at,
        **cause.caused(),
        operation_id=operation.operation_id,
        user_id=operation.user_id,
        exchange=operation.exchange,
        symbol=operation.symbol,
        side=operation.side,
        status=operation.status,
        detail=detail,
        realized_pnl=operation.realized_pnl,
    )


def commission_accrued(record: CommissionRecord, cause: Event) -> CommissionAccrued:
    return CommissionAccrued(
        # The same commission always has the same id; a correction (new referrer) a new one.
        event_id=derived_id(
            "ledger.CommissionAccrued",
            record.operation_id,
            record.amount,
            record.referrer_id,
            record.affiliate_amount,
        ),
        occurred_at=cause.occurred_at,
        **cause.caused(),
        operation_id=record.operation_id,
        user_id=record.user_id,
        plan=record.plan,
        rate=record.rate,
        realized_pnl=record.realized_pnl,
        amount=record.amount,
        currency=record.currency,
        referrer_id=record.referrer_id,
        affiliate_rate=record.affiliate_rate,
        affiliate_amount=record.affiliate_amount,
    )
