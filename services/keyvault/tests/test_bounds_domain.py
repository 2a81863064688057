"""The order bounds as pure rules (domain/bounds.py): the blueprint's size, allocation,
the entry price ceiling, sells over several entries."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from marketbot.contracts import Exchange, RiskLevel, Side
from marketbot.exchanges.policy import OrderTerms
from marketbot.keyvault.domain.bounds import (
    BoundRules,
    RequestRecord,
    check_entry,
    check_sell,
    check_size,
    size_cap,
)

RULES = BoundRules()


def request(**changes: object) -> RequestRecord:
    values: dict[str, object] = {
        "request_id": uuid.uuid4(),
        "client_order_id": "mb-1",
        "user_id": "u",
        "exchange": Exchange.BYBIT,
        "symbol": "BTCUSDT",
        "side": Side.BUY,
        "risk_level": RiskLevel.MEDIUM,
        "reference_price": Decimal(100),
    }
    values.update(changes)
    return RequestRecord(**values)  # type: ignore[arg-type]


def entry(quantity: str, price: str | None = "100", **changes: object) -> OrderTerms:
    values: dict[str, object] = {
        "symbol": "BTCUSDT",
        "side": Side.BUY,
        "limit": True,
        "client_ids": ("mb-1",),
        "quantity": Decimal(quantity),
        "price": Decimal(price) if price is not None else None,
    }
    values.update(changes)
    return OrderTerms(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("balance", "risk", "size"),
    [
        # size_quote = max(10, min(available x risk %, available x 10 %)) (blueprint)
        ("1000", RiskLevel.LOW, "10"),  # 1 % = 10
        ("1000", RiskLevel.MEDIUM, "20"),
        ("1000", RiskLevel.HIGH, "50"),
        ("100", RiskLevel.HIGH, "10"),  # 5 % = 5, floor 10
        ("0", RiskLevel.HIGH, "10"),
    ],
)
def test_the_size_is_the_blueprints_plus_the_slippage(
    balance: str, risk: RiskLevel, size: str
) -> None:
    cap = size_cap(Decimal(balance), request(risk_level=risk), RULES)
    assert cap == Decimal(size) * Decimal("1.005")


def test_an_allocation_in_brl_caps_the_available_balance() -> None:
    # 550 BRL / 5.5 = 100 USDT available of 1000: 5 % of 100 = 5 -> the floor, 10
    capped = request(risk_level=RiskLevel.HIGH, allocation=Decimal(550), allocation_currency="BRL")
    assert size_cap(Decimal(1000), capped, RULES) == Decimal("10.05")
    assert check_size(entry("0.1"), capped, Decimal(1000), RULES) is None
    refusal = check_size(entry("0.11"), capped, Decimal(1000), RULES)
    assert refusal is not None
    assert (refusal.field, refusal.rule) == ("quantity", "max_position_size")


def test_the_entry_price_ceiling_is_the_reference_plus_the_margin() -> None:
    kwargs = {"user_id": "u", "exchange": Exchange.BYBIT, "rules": RULES}
    assert check_entry(entry("0.1", "102"), request(), **kwargs) is None  # type: ignore[arg-type]
    refusal = check_entry(entry("0.1", "102.01"), request(), **kwargs)  # type: ignore[arg-type]
    assert refusal is not None
    assert refusal.rule == "max_entry_price"
    missing = check_entry(entry("0.1"), request(reference_price=None), **kwargs)  # type: ignore[arg-type]
    assert missing is not None
    assert missing.rule == "known_price"


def test_a_sell_may_sell_what_was_signed_for_all_its_entries() -> None:
    first = request(client_order_id="mb-1", signed_quantity=Decimal("0.3"))
    second = request(client_order_id="mb-2", signed_quantity=Decimal("0.2"))
    sell = entry("0.5", side=Side.SELL, limit=False, price=None, client_ids=("mb-close",))
    kwargs = {"user_id": "u", "exchange": Exchange.BYBIT}
    assert check_sell(sell, [first, second], ["mb-1", "mb-2"], **kwargs) is None  # type: ignore[arg-type]
    refusal = check_sell(sell, [first], ["mb-1"], **kwargs)  # type: ignore[arg-type]
    assert refusal is not None
    assert (refusal.field, refusal.rule) == ("quantity", "max_sell_quantity")
