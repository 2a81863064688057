"""Stop-loss / take-profit prices from the request's percents, and the closing arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from marketbot.contracts import Side
from marketbot.contracts.sizing import HUNDRED


@dataclass(frozen=True, slots=True)
class Protection:
    stop_loss: Decimal | None
    take_profit: Decimal | None


def protection_prices(
    side: Side,
    price: Decimal,
    *,
    stop_loss_percent: Decimal | None,
    take_profit_percent: Decimal | None,
) -> Protection:
    """A long is protected below (SL) and above (TP) the entry; a short the other way."""
    sign = Decimal(1) if side is Side.BUY else Decimal(-1)
    stop_loss = (
        price * (1 - sign * stop_loss_percent / HUNDRED) if stop_loss_percent is not None else None
    )
    take_profit = (
        price * (1 + sign * take_profit_percent / HUNDRED)
        if take_profit_percent is not None
        else None
    )
    return Protection(stop_loss=stop_loss, take_profit=take_profit)


def fee_in_quote(
    fee: Decimal, fee_asset: str, *, base_asset: str, quote_asset: str, price: Decimal
) -> Decimal | None:
    """A fee valued in the quote currency; ``None`` for a third asset (needs its own price)."""
    if fee_asset == quote_asset or fee == 0:
        return fee
    if fee_asset == base_asset:
        return fee * price
    return None


def realized_pnl(
    entry_side: Side,
    quantity: Decimal,
    entry_price: Decimal,
    exit_price: Decimal,
    fees_quote: Decimal,
) -> Decimal:
    """Profit in quote of closing ``quantity``, net of entry and exit fees.

    For a long bought at ``entry_price`` whose base fee left ``quantity`` to sell, this equals
    the quote received minus the quote paid: ``(exit - entry) * quantity - fees`` with the
    entry fee valued at the entry price.
    """
    direction = Decimal(1) if entry_side is Side.BUY else Decimal(-1)
    return direction * (exit_price - entry_price) * quantity - fees_quote
