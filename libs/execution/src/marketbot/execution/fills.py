"""What a filled order cost and yielded: fills, average price, fees in quote."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from marketbot.contracts import Fill, Side
from marketbot.exchanges.venue import InstrumentFilters, OrderState
from marketbot.execution.domain.protection import fee_in_quote
from marketbot.execution.domain.sizing import round_down

FeeRate = Callable[[], Awaitable[Decimal]]
PriceOf = Callable[[str], Awaitable[Decimal | None]]


@dataclass(frozen=True, slots=True)
class FillSummary:
    fills: tuple[Fill, ...]
    quantity: Decimal
    average_price: Decimal
    quote_quantity: Decimal
    fees_quote: Decimal
    base_fees: Decimal
    estimated_fees: bool

    def held_quantity(self, side: Side, step: Decimal) -> Decimal:
        """Base left to the user by a buy (less base fees), on the step; a sell holds none."""
        if side is not Side.BUY:
            return Decimal(0)
        return round_down(self.quantity - self.base_fees, step)


async def summarize(
    state: OrderState,
    filters: InstrumentFilters,
    *,
    fee_rate: FeeRate,
    price_of: PriceOf,
) -> FillSummary:
    """Totals of a (partly) filled order. A venue that reports no fees (an order queried
    after the fact) gets them estimated at the account's taker rate: a buy pays in base, a
    sell in quote, as spot venues charge by default."""
    quantity = state.filled_quantity
    quote_qty = state.filled_quote_quantity
    average = state.average_price
    if average is None and quote_qty and quantity > 0:
        average = quote_qty / quantity
    if average is None:
        average = state.price or Decimal(0)
    if quote_qty is None or quote_qty <= 0:
        quote_qty = quantity * average
    base, quote = filters.base_asset, filters.quote_asset
    fees: list[tuple[str, Decimal]] = list(state.fees)
    estimated = False
    if not fees:
        rate = await fee_rate()
        estimated = True
        fees = [(base, quantity * rate)] if state.side is Side.BUY else [(quote, quote_qty * rate)]

    async def to_quote(fee: Decimal, asset: str, price: Decimal) -> Decimal:
        value = fee_in_quote(fee, asset, base_asset=base, quote_asset=quote, price=price)
        if value is not None:
            return value
        asset_price = await price_of(f"{asset}{quote}")
        return fee * asset_price if asset_price is not None else Decimal(0)

    fees_quote = Decimal(0)
    for asset, fee in fees:
        fees_quote += await to_quote(fee, asset, average)
    base_fees = sum((fee for asset, fee in fees if asset == base), Decimal(0))
    contract_fills: list[Fill] = []
    if state.fills and not estimated:
        for index, fill in enumerate(state.fills):
            contract_fills.append(
                Fill(
                    trade_id=fill.trade_id or f"{state.exchange_order_id}-{index}",
                    price=fill.price,
                    quantity=fill.quantity,
                    fee=fill.fee,
                    fee_asset=fill.fee_asset,
                    fee_quote=await to_quote(fill.fee, fill.fee_asset, fill.price),
                )
            )
    else:
        fee_asset, fee = fees[0] if len(fees) == 1 else (quote, fees_quote)
        contract_fills.append(
            Fill(
                trade_id=f"{state.exchange_order_id}-total",
                price=average,
                quantity=quantity,
                fee=fee,
                fee_asset=fee_asset,
                fee_quote=fees_quote,
            )
        )
    return FillSummary(
        fills=tuple(contract_fills),
        quantity=quantity,
        average_price=average,
        quote_quantity=quote_qty,
        fees_quote=fees_quote,
        base_fees=base_fees,
        estimated_fees=estimated,
    )
