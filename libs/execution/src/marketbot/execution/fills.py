"""What a filled order cost and yielded, from the exchange's own trade records.

The fills are the order's trades (Binance: the FULL response's ``fills`` or ``myTrades``;
Bybit: ``/v5/execution/list``). Each fee stays in the asset actually charged; its value in
the quote currency is the fee itself (quote), the fee at the fill's price (base), or the fee
at the price of ``<asset><quote>`` read now and recorded with it (a third asset, e.g. BNB).
Only a third-asset fee without a price is an estimate (valued 0), and it is marked as one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from marketbot.contracts import Fill, Side
from marketbot.exchanges.venue import Fill as VenueFill
from marketbot.exchanges.venue import InstrumentFilters, OrderState
from marketbot.execution.domain.protection import fee_in_quote
from marketbot.execution.domain.sizing import round_down

PriceOf = Callable[[str], Awaitable[Decimal | None]]


class FillsIncompleteError(Exception):
    """The trade records do not (yet) add up to the order's filled quantity: read again."""


@dataclass(frozen=True, slots=True)
class FillSummary:
    fills: tuple[Fill, ...]
    quantity: Decimal
    average_price: Decimal
    quote_quantity: Decimal
    fees_quote: Decimal
    base_fees: Decimal
    estimated_fees: bool
    filled_at: datetime | None
    """The exchange's time of the last trade."""

    def held_quantity(self, side: Side, step: Decimal) -> Decimal:
        """Base left to the user by a buy (less base fees), on the step; a sell holds none."""
        if side is not Side.BUY:
            return Decimal(0)
        return round_down(self.quantity - self.base_fees, step)


def covers(state: OrderState) -> bool:
    """Whether the order report itself carries every trade (Binance's FULL response)."""
    return (
        bool(state.fills)
        and sum((f.quantity for f in state.fills), Decimal(0)) == state.filled_quantity
    )


async def summarize(
    state: OrderState,
    trades: Sequence[VenueFill],
    filters: InstrumentFilters,
    *,
    price_of: PriceOf,
) -> FillSummary:
    """Totals of a (partly) filled order from its trades."""
    quantity = sum((t.quantity for t in trades), Decimal(0))
    if quantity != state.filled_quantity or quantity <= 0:
        raise FillsIncompleteError(
            f"order {state.exchange_order_id}: trades add up to {quantity}, the order says "
            f"{state.filled_quantity} filled"
        )
    base, quote = filters.base_asset, filters.quote_asset
    quote_qty = sum((t.quantity * t.price for t in trades), Decimal(0))
    third_prices: dict[str, Decimal | None] = {}
    fills: list[Fill] = []
    estimated = False
    base_fees = Decimal(0)
    for index, trade in enumerate(trades):
        value = fee_in_quote(
            trade.fee, trade.fee_asset, base_asset=base, quote_asset=quote, price=trade.price
        )
        fee_price: Decimal | None = None
        fee_estimated = False
        if value is None:
            if trade.fee_asset not in third_prices:
                third_prices[trade.fee_asset] = await price_of(f"{trade.fee_asset}{quote}")
            fee_price = third_prices[trade.fee_asset]
            if fee_price is None:
                value, fee_estimated = Decimal(0), True
            else:
                value = trade.fee * fee_price
        if trade.fee_asset == base:
            base_fees += trade.fee
        estimated = estimated or fee_estimated
        fills.append(
            Fill(
                trade_id=trade.trade_id or f"{state.exchange_order_id}-{index}",
                price=trade.price,
                quantity=trade.quantity,
                fee=trade.fee,
                fee_asset=trade.fee_asset,
                fee_quote=value,
                fee_price=fee_price,
                fee_estimated=fee_estimated,
                filled_at=trade.filled_at,
            )
        )
    times = [t.filled_at for t in trades if t.filled_at is not None]
    return FillSummary(
        fills=tuple(fills),
        quantity=quantity,
        average_price=quote_qty / quantity,
        quote_quantity=quote_qty,
        fees_quote=sum((f.fee_quote for f in fills), Decimal(0)),
        base_fees=base_fees,
        estimated_fees=estimated,
        filled_at=max(times) if times else state.updated_at,
    )
