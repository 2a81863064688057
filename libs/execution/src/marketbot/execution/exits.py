"""Finding a position's exit orders on the venue, venue-neutrally.

Exit legs the venue identified when they were placed (an OCO list's orders) are queried by
id. Legs the venue creates on its own (TP/SL attached to the entry) carry no id of ours: they
are recognised in the recent order history as orders on the exit side, created after the
entry, for exactly the protected quantity.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta

from marketbot.contracts import Side
from marketbot.exchanges.errors import Rejected
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.venue import ExitKind, OrderState, OrderStatus, Venue
from marketbot.execution.repository import ExitRef, PositionRow

_CLOCK_SLACK = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class ExitOrder:
    kind: ExitKind | None
    state: OrderState

    @property
    def filled(self) -> bool:
        return self.state.filled_quantity > 0 and (
            self.state.status is OrderStatus.FILLED or self.state.status.is_final
        )

    @property
    def open(self) -> bool:
        return not self.state.status.is_final


def exit_side(position: PositionRow) -> Side:
    return Side.SELL if position.side is Side.BUY else Side.BUY


async def exit_orders(venue: Venue, signer: Signer, position: PositionRow) -> list[ExitOrder]:
    found: list[ExitOrder] = []
    anonymous = False
    for ref in position.exits:
        if ref.exchange_order_id or ref.client_order_id:
            state = await venue.get_order(
                signer,
                position.symbol,
                exchange_order_id=ref.exchange_order_id,
                client_order_id=None if ref.exchange_order_id else ref.client_order_id,
            )
            if state is not None:
                found.append(ExitOrder(_kind(ref), state))
        else:
            anonymous = True
    if anonymous:
        side = exit_side(position)
        since = position.opened_at - _CLOCK_SLACK
        for state in await venue.order_history(signer, position.symbol, limit=50):
            if (
                state.side is side
                and state.client_order_id != position.entry_client_order_id
                and state.quantity == position.quantity
                and (state.created_at is None or state.created_at >= since)
            ):
                found.append(ExitOrder(None, state))
    return found


def _kind(ref: ExitRef) -> ExitKind | None:
    try:
        return ExitKind(ref.kind) if ref.kind else None
    except ValueError:
        return None


def exit_kind(position: PositionRow, order: ExitOrder) -> ExitKind:
    """The leg's kind, or (for an anonymous leg) the trigger its fill price is nearer."""
    if order.kind is not None:
        return order.kind
    price = order.state.average_price or order.state.price or position.entry_price
    tp, sl = position.take_profit_price, position.stop_loss_price
    if tp is None:
        return ExitKind.STOP_LOSS
    if sl is None:
        return ExitKind.TAKE_PROFIT
    return ExitKind.TAKE_PROFIT if abs(price - tp) <= abs(price - sl) else ExitKind.STOP_LOSS


async def cancel_open_exits(
    venue: Venue, signer: Signer, position: PositionRow, orders: list[ExitOrder]
) -> None:
    """Cancel the legs still open (cancelling one OCO leg may end the other: ignore that)."""
    for order in orders:
        if order.open:
            with contextlib.suppress(Rejected):
                await venue.cancel_order(
                    signer, position.symbol, exchange_order_id=order.state.exchange_order_id
                )
