"""Outcome events built from a request: deterministic ids, so a re-run re-derives them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from marketbot.contracts import (
    CloseReason,
    Fill,
    OrderFilled,
    OrderOutcomeUnknown,
    OrderPlaced,
    OrderRejected,
    OrderRequested,
    PositionClosed,
    PositionReduced,
    RejectReason,
    derived_id,
)
from marketbot.execution.domain.protection import Sale
from marketbot.execution.repository import PositionRow


def _common(request: OrderRequested, kind: str, now: datetime) -> dict[str, Any]:
    return {
        "event_id": derived_id("execution", request.client_order_id, kind),
        "occurred_at": now,
        "correlation_id": request.correlation_id,
        "causation_id": str(request.event_id),
        "request_id": request.request_id,
        "decision_id": request.decision_id,
        "signal_id": request.signal_id,
        "user_id": request.user_id,
        "exchange": request.exchange,
        "symbol": request.symbol,
        "side": request.side,
        "plan": request.plan,
        "client_order_id": request.client_order_id,
    }


def rejected(
    request: OrderRequested,
    reason: RejectReason,
    message: str,
    now: datetime,
    *,
    code: int | str | None = None,
) -> OrderRejected:
    return OrderRejected(
        **_common(request, "rejected", now),
        reason=reason,
        message=message[:1000],
        exchange_code=None if code is None else str(code),
        rejected_at=now,
    )


def outcome_unknown(request: OrderRequested, detail: str, now: datetime) -> OrderOutcomeUnknown:
    return OrderOutcomeUnknown(**_common(request, "unknown", now), detail=detail[:1000], since=now)


def placed(
    request: OrderRequested,
    *,
    exchange_order_id: str,
    quantity: Decimal,
    quote_amount: Decimal,
    reference_price: Decimal,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    now: datetime,
    limit_price: Decimal | None = None,
    max_slippage_percent: Decimal | None = None,
) -> OrderPlaced:
    return OrderPlaced(
        **_common(request, "placed", now),
        exchange_order_id=exchange_order_id,
        quantity=quantity,
        quote_amount=quote_amount,
        reference_price=reference_price,
        stop_loss_price=stop_loss,
        take_profit_price=take_profit,
        limit_price=limit_price,
        max_slippage_percent=max_slippage_percent,
        placed_at=now,
    )


def filled(
    request: OrderRequested,
    *,
    exchange_order_id: str,
    fills: tuple[Fill, ...],
    filled_quantity: Decimal,
    average_price: Decimal,
    quote_quantity: Decimal,
    fees_quote: Decimal,
    fees_estimated: bool,
    filled_at: datetime,
    now: datetime,
) -> OrderFilled:
    return OrderFilled(
        **_common(request, "filled", now),
        exchange_order_id=exchange_order_id,
        fills=fills,
        filled_quantity=filled_quantity,
        average_price=average_price,
        quote_quantity=quote_quantity,
        fees_quote=fees_quote,
        fees_estimated=fees_estimated,
        filled_at=filled_at,
    )


def position_sold(
    position: PositionRow,
    sale: Sale,
    *,
    partial: bool,
    cause: OrderRequested | None,
    exchange_order_id: str | None,
    exit_client_order_id: str,
    reason: CloseReason,
    fees_estimated: bool,
    at: datetime,
    now: datetime,
) -> PositionClosed | PositionReduced:
    """One exit order ``exit_client_order_id`` sold ``sale`` of the position: a part
    (``partial``: the rest stays open) is ``PositionReduced``, the rest of it
    ``PositionClosed``. Both carry the entry's identity (the position is the entry); the
    reduction's id is the exit order's too (an order sells one part of a position at most).
    ``cause`` is a close signal; ``fees_estimated`` is the exit's, or-ed with the entry's."""
    entry = position.request
    kind = f"reduced|{exit_client_order_id}" if partial else "closed"
    common = _common(entry, kind, now)
    if cause is not None:
        common["correlation_id"] = cause.correlation_id
        common["causation_id"] = str(cause.event_id)
    common.update(
        exchange_order_id=exchange_order_id,
        exit_client_order_id=exit_client_order_id,
        fees_estimated=position.fees_estimated or fees_estimated,
        opened_at=position.opened_at,
        entry_price=position.entry_price,
    )
    if partial:
        return PositionReduced(
            **common,
            reason=reason,
            quantity=sale.quantity,
            remaining_quantity=sale.remaining,
            exit_price=sale.exit_price,
            fees_quote=sale.fees_quote,
            realized_pnl=sale.pnl,
            sold_quantity=sale.totals.quantity,
            fees_quote_total=sale.totals.fees_quote,
            realized_pnl_total=sale.totals.pnl,
            reduced_at=at,
        )
    return PositionClosed(
        **common,
        close_reason=reason,
        quantity=sale.totals.quantity,
        exit_price=sale.average_exit_price,
        fees_quote=sale.totals.fees_quote,
        realized_pnl=sale.totals.pnl,
        closed_at=at,
    )
