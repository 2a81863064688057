"""Open positions valued at the market: pure Decimal arithmetic."""

from __future__ import annotations

from decimal import Decimal

from marketbot.contracts import Side
from marketbot.contracts.ledger import Operation

OPEN_STATUSES = ("OPEN", "PLACED")


def unrealized_pnl(operation: Operation, mark: Decimal | None) -> Decimal | None:
    """(mark - entry) * filled quantity for a spot BUY, before exit fees; None when the
    position has no fill yet or no mark price is known."""
    if (
        mark is None
        or operation.average_price is None
        or not operation.filled_quantity
        or operation.side is not Side.BUY
    ):
        return None
    return (mark - operation.average_price) * operation.filled_quantity
