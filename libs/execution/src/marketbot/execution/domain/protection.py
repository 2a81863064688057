"""Stop-loss / take-profit prices from the request's percents, and the closing arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from marketbot.contracts import Side
from marketbot.contracts.sizing import HUNDRED
from marketbot.exchanges.venue import InstrumentFilters


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


@dataclass(frozen=True, slots=True)
class Sold:
    """What a position has sold so far, over its parts: base quantity, exit notional, fees
    (the entry fees charged to the parts and their exit fees) and realised profit."""

    quantity: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    fees_quote: Decimal = Decimal(0)
    pnl: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Sale:
    """One part of a position sold: its own figures, what stays open, and the totals."""

    quantity: Decimal
    exit_price: Decimal
    fees_quote: Decimal
    pnl: Decimal
    remaining: Decimal
    remaining_entry_fees: Decimal
    totals: Sold

    @property
    def average_exit_price(self) -> Decimal:
        """The exit price over every part (this one's alone when it is the first)."""
        if self.totals.quantity == self.quantity:
            return self.exit_price
        return self.totals.quote / self.totals.quantity


def sell_part(
    entry_side: Side,
    *,
    held: Decimal,
    entry_price: Decimal,
    entry_fees_quote: Decimal,
    quantity: Decimal,
    exit_price: Decimal,
    exit_fees_quote: Decimal,
    sold: Sold,
) -> Sale:
    """``quantity`` of a position holding ``held`` sold at ``exit_price``. The part bears
    its share of the entry fees still carried (``entry_fees_quote``, pro rata to what it
    sells; all of them when it sells everything) and its own exit fees."""
    part = min(quantity, held)
    entry_share = entry_fees_quote if part >= held else entry_fees_quote * part / held
    fees = entry_share + exit_fees_quote
    pnl = realized_pnl(entry_side, part, entry_price, exit_price, fees)
    return Sale(
        quantity=part,
        exit_price=exit_price,
        fees_quote=fees,
        pnl=pnl,
        remaining=held - part,
        remaining_entry_fees=entry_fees_quote - entry_share,
        totals=Sold(
            quantity=sold.quantity + part,
            quote=sold.quote + part * exit_price,
            fees_quote=sold.fees_quote + fees,
            pnl=sold.pnl + pnl,
        ),
    )


def remainder_sellable(remaining: Decimal, price: Decimal, filters: InstrumentFilters) -> bool:
    """Whether what stays open can still be protected and sold: at least the minimum
    quantity once on the lot step, and the minimum notional at ``price``. A smaller
    remainder (dust) cannot: the part sold closes the position."""
    quantity = (remaining // filters.qty_step) * filters.qty_step if filters.qty_step else remaining
    return quantity > 0 and quantity >= filters.min_qty and quantity * price >= filters.min_notional
