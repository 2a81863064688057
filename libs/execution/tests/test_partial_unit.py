"""The arithmetic of a position sold in parts (pure)."""

from __future__ import annotations

from decimal import Decimal

from marketbot.contracts import Side
from marketbot.exchanges.venue import InstrumentFilters
from marketbot.execution.domain.protection import (
    Sold,
    realized_pnl,
    remainder_sellable,
    sell_part,
)

D = Decimal
FILTERS = InstrumentFilters(
    symbol="SOLUSDT",
    base_asset="SOL",
    quote_asset="USDT",
    qty_step=D("0.001"),
    min_qty=D("0.011"),
    max_qty=None,
    min_notional=D("5"),
    tick_size=D("0.01"),
)


def test_two_parts_add_up_to_selling_it_all_at_once() -> None:
    held, entry, entry_fees = D("2"), D("100"), D("0.2")
    first = sell_part(
        Side.BUY,
        held=held,
        entry_price=entry,
        entry_fees_quote=entry_fees,
        quantity=D("0.5"),
        exit_price=D("110"),
        exit_fees_quote=D("0.055"),
        sold=Sold(),
    )
    assert first.remaining == D("1.5")
    assert first.remaining_entry_fees == D("0.15")  # a quarter of the entry fees went
    assert first.fees_quote == D("0.05") + D("0.055")
    assert first.pnl == D("10") * D("0.5") - first.fees_quote
    assert first.average_exit_price == D("110")
    rest = sell_part(
        Side.BUY,
        held=first.remaining,
        entry_price=entry,
        entry_fees_quote=first.remaining_entry_fees,
        quantity=D("1.5"),
        exit_price=D("90"),
        exit_fees_quote=D("0.135"),
        sold=first.totals,
    )
    assert rest.remaining == 0
    assert rest.remaining_entry_fees == 0
    totals = rest.totals
    assert totals.quantity == held
    assert totals.fees_quote == entry_fees + D("0.055") + D("0.135")
    average = (D("0.5") * D("110") + D("1.5") * D("90")) / held
    assert rest.average_exit_price == average
    # The same as one sale at the average price with every fee.
    assert totals.pnl == realized_pnl(Side.BUY, held, entry, average, totals.fees_quote)


def test_a_part_never_sells_more_than_is_held() -> None:
    sale = sell_part(
        Side.BUY,
        held=D("1"),
        entry_price=D("100"),
        entry_fees_quote=D("0.1"),
        quantity=D("1.2"),
        exit_price=D("100"),
        exit_fees_quote=D("0"),
        sold=Sold(),
    )
    assert (sale.quantity, sale.remaining, sale.remaining_entry_fees) == (D("1"), 0, 0)


def test_a_remainder_below_the_lot_minimums_is_dust() -> None:
    assert remainder_sellable(D("0.5"), D("100"), FILTERS)
    assert not remainder_sellable(D("0.0109"), D("1000"), FILTERS)  # below min qty on the step
    assert not remainder_sellable(D("0.04"), D("100"), FILTERS)  # 4 USDT < 5 min notional
