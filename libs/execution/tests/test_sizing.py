"""The blueprint's sizing formula, by hand-computed table; filters; protection; PnL."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketbot.contracts import RejectReason, RiskLevel, Side
from marketbot.contracts.sizing import SizingRules
from marketbot.execution.domain.protection import protection_prices, realized_pnl
from marketbot.execution.domain.sizing import (
    LotRules,
    SizedOrder,
    SizingRejection,
    size_order,
)

D = Decimal
RULES = SizingRules(
    risk_percents={RiskLevel.LOW: D(1), RiskLevel.MEDIUM: D(2), RiskLevel.HIGH: D(5)}
)
BTC = LotRules(qty_step=D("0.000001"), min_qty=D("0.000011"), min_notional=D(5))


@pytest.mark.parametrize(
    ("balance", "risk", "allocation", "currency", "size", "quantity"),
    [
        # available * risk, floored at 10, capped at 10% of available
        ("1000", RiskLevel.LOW, None, None, "10", "0.000153"),  # 1% = 10
        ("1000", RiskLevel.MEDIUM, None, None, "20", "0.000307"),  # 2% = 20
        ("1000", RiskLevel.HIGH, None, None, "50", "0.000769"),  # 5% = 50
        ("100", RiskLevel.HIGH, None, None, "10", "0.000153"),  # 5 -> floor 10
        ("50", RiskLevel.LOW, None, None, "10", "0.000153"),  # 0.5 -> floor 10
        ("100000", RiskLevel.HIGH, None, None, "5000", "0.076923"),  # 5000 < cap 10000
        # an allocation caps the available balance; BRL converts at 5.5
        ("10000", RiskLevel.HIGH, "5500", "BRL", "50", "0.000769"),  # 1000 USDT
        ("10000", RiskLevel.HIGH, "550", "BRL", "10", "0.000153"),  # 100 USDT -> 5 -> 10
        ("10000", RiskLevel.MEDIUM, "3000", "USDT", "60", "0.000923"),  # 2% of 3000
        ("200", RiskLevel.HIGH, "5500", "BRL", "10", "0.000153"),  # balance below allocation
    ],
)
def test_sizing_table(
    balance: str,
    risk: RiskLevel,
    allocation: str | None,
    currency: str | None,
    size: str,
    quantity: str,
) -> None:
    sized = size_order(
        balance=D(balance),
        risk_level=risk,
        price=D(65000),
        lot=BTC,
        rules=RULES,
        allocation=D(allocation) if allocation else None,
        allocation_currency=currency,
    )
    assert isinstance(sized, SizedOrder)
    assert sized.size_quote == D(size)
    assert sized.quantity == D(quantity)


def test_the_cap_binds_when_the_risk_percent_exceeds_it() -> None:
    rules = SizingRules(risk_percents={RiskLevel.HIGH: D(20)}, max_balance_percent=D(10))
    sized = size_order(
        balance=D(1000), risk_level=RiskLevel.HIGH, price=D(100), lot=BTC, rules=rules
    )
    assert isinstance(sized, SizedOrder)
    assert sized.size_quote == D(100)  # 20% = 200, capped at 10% = 100
    assert sized.quantity == D(1)


def test_a_size_above_the_available_balance_is_refused() -> None:
    result = size_order(
        balance=D(5), risk_level=RiskLevel.LOW, price=D(65000), lot=BTC, rules=RULES
    )
    assert isinstance(result, SizingRejection)
    assert result.reason is RejectReason.INSUFFICIENT_BALANCE
    assert "10" in result.message
    assert "5" in result.message


@pytest.mark.parametrize(
    ("lot", "price", "filter_name", "numbers"),
    [
        (
            LotRules(qty_step=D("0.001"), min_qty=D("0.01"), min_notional=D(5)),
            "2000",
            "min_qty",
            ("0.005", "0.01"),
        ),
        (
            LotRules(qty_step=D("0.000001"), min_qty=D(0), min_notional=D(15)),
            "65000",
            "min_notional",
            ("9.945", "15"),
        ),
        (LotRules(qty_step=D(1), min_qty=D(0), min_notional=D(0)), "65000", "qty_step", ("0", "1")),
        (
            LotRules(qty_step=D("0.1"), min_qty=D(0), min_notional=D(0), market_min_qty=D(1)),
            "20",
            "market_min_qty",
            ("0.5", "1"),
        ),
        (
            LotRules(qty_step=D("0.1"), min_qty=D(0), min_notional=D(0), market_max_qty=D(1)),
            "0.5",
            "market_max_qty",
            ("20", "1"),
        ),
    ],
)
def test_filter_failures_name_the_filter_and_the_numbers(
    lot: LotRules, price: str, filter_name: str, numbers: tuple[str, ...]
) -> None:
    result = size_order(
        balance=D(1000), risk_level=RiskLevel.LOW, price=D(price), lot=lot, rules=RULES
    )
    assert isinstance(result, SizingRejection)
    assert result.reason is RejectReason.FILTER
    assert result.filter == filter_name
    assert result.message.startswith(filter_name)
    for number in numbers:
        assert number in result.message


def test_rounding_is_always_down_to_the_step() -> None:
    lot = LotRules(qty_step=D("0.01"), min_qty=D(0), min_notional=D(0), market_qty_step=D("0.1"))
    sized = size_order(balance=D(1000), risk_level=RiskLevel.LOW, price=D(3), lot=lot, rules=RULES)
    assert isinstance(sized, SizedOrder)
    assert sized.quantity == D("3.3")  # 10 / 3 = 3.333.. -> 3.33 -> 3.3


def test_protection_prices_of_a_long() -> None:
    p = protection_prices(Side.BUY, D(150), stop_loss_percent=D(2), take_profit_percent=D(3))
    assert p.stop_loss == D(147)
    assert p.take_profit == D("154.5")
    none = protection_prices(Side.BUY, D(150), stop_loss_percent=None, take_profit_percent=None)
    assert none.stop_loss is None
    assert none.take_profit is None


def test_realized_pnl_is_net_of_both_fees() -> None:
    # bought 0.133 at 150 (fee 0.000133 SOL = 0.01995 USDT), sold 0.132 at 154.5 (fee 0.0203)
    pnl = realized_pnl(Side.BUY, D("0.132"), D(150), D("154.5"), D("0.01995") + D("0.020394"))
    assert pnl == D("4.5") * D("0.132") - D("0.040344")
