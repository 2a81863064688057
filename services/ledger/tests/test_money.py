"""Commission and affiliate amounts, computed by hand and checked against the code."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketbot.contracts import Plan
from marketbot.ledger.domain.money import MoneyRules, commission_for
from marketbot.ledger.settings import LedgerSettings

D = Decimal
RULES = LedgerSettings().money_rules()


@pytest.mark.parametrize(
    ("symbol", "plan", "pnl", "referrer", "commission", "affiliate", "platform_net"),
    [
        # PRO 10%: 0.810 * 0.10 = 0.0810; referrer 10% of it, rounded down.
        ("BTCUSDT", Plan.PRO, "0.810", "r", "0.08100000", "0.00810000", "0.07290000"),
        # FLEX 20%: 2.937 * 0.20 = 0.5874; 0.5874 * 0.10 = 0.05874.
        ("ETHUSDT", Plan.FLEX, "2.937", "r", "0.58740000", "0.05874000", "0.52866000"),
        # No referrer: the platform keeps all of it.
        ("ETHUSDT", Plan.FLEX, "2.937", None, "0.58740000", None, "0.58740000"),
        # Half-even at the 8th decimal: ...1|5 goes to the even 2, ...2|5 stays at 2.
        ("BTCUSDT", Plan.PRO, "0.00000015", None, "0.00000002", None, "0.00000002"),
        ("BTCUSDT", Plan.PRO, "0.00000025", None, "0.00000002", None, "0.00000002"),
        # The affiliate share is rounded down: 0.00000019 * 0.10 = 0.000000019 -> 0.00000001.
        ("BTCUSDT", Plan.PRO, "0.0000019", "r", "0.00000019", "0.00000001", "0.00000018"),
        # BRL has 2 decimals: 10.555 * 0.10 = 1.0555 -> 1.06; 0.106 -> 0.10 (down).
        ("BTCBRL", Plan.PRO, "10.555", "r", "1.06", "0.10", "0.96"),
        # 7.77777777 * 0.20 = 1.555555554 -> 1.55555555.
        ("SOLUSDT", Plan.FLEX, "7.77777777", None, "1.55555555", None, "1.55555555"),
    ],
)
def test_worked_examples(
    symbol: str,
    plan: Plan,
    pnl: str,
    referrer: str | None,
    commission: str,
    affiliate: str | None,
    platform_net: str,
) -> None:
    currency = RULES.quote_currency(symbol)
    result = commission_for(D(pnl), RULES.rate_for(plan), currency, referrer, RULES)
    assert result is not None
    assert f"{result.amount:f}" == commission
    assert (
        None if result.affiliate_amount is None else f"{result.affiliate_amount:f}"
    ) == affiliate
    assert f"{result.platform_net:f}" == platform_net


@pytest.mark.parametrize(
    ("plan", "pnl"),
    [
        (Plan.TRIAL, "100"),  # TRIAL pays 0%
        (Plan.PRO, "-5"),  # a loss owes nothing
        (Plan.PRO, "0"),
        (Plan.FLEX, "0.000000025"),  # 0.000000005 rounds (half-even) to zero: nothing owed
    ],
)
def test_nothing_is_owed(plan: Plan, pnl: str) -> None:
    assert commission_for(D(pnl), RULES.rate_for(plan), "USDT", "r", RULES) is None


def test_rates_come_from_the_shared_plan_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MARKETBOT_PLANS",
        '{"PRO": {"priority": 1, "delay_ms": 0, "commission_rate": "0.15"},'
        ' "FLEX": {"priority": 2, "delay_ms": 0, "commission_rate": "0.25"},'
        ' "TRIAL": {"priority": 3, "delay_ms": 0, "commission_rate": "0"}}',
    )
    monkeypatch.setenv("MARKETBOT_LEDGER_AFFILIATE_RATE", "0.3")
    rules = LedgerSettings().money_rules()
    assert rules.rate_for(Plan.PRO) == D("0.15")
    assert rules.rate_for(Plan.TRIAL) == 0
    result = commission_for(D("10"), rules.rate_for(Plan.FLEX), "USDT", "r", rules)
    assert result is not None
    assert (result.amount, result.affiliate_amount) == (D("2.50000000"), D("0.75000000"))


def test_quote_currency_is_the_longest_matching_suffix() -> None:
    rules = MoneyRules({}, D(0), {"USDT": 8, "USDC": 8, "BTC": 8, "BRL": 2})
    assert rules.quote_currency("BTCUSDT") == "USDT"
    assert rules.quote_currency("ETHBTC") == "BTC"
    assert rules.quote_currency("BTCBRL") == "BRL"
    assert rules.quote_currency("XYZABC") == "USDT"  # the default


def test_a_table_of_operations_reconciles() -> None:
    """User a (PRO, referred by r): +10, -4, +2.5; user b (FLEX): +7.77777777."""
    rows = [
        ("a", Plan.PRO, "10", "r"),
        ("a", Plan.PRO, "-4", "r"),
        ("a", Plan.PRO, "2.5", "r"),
        ("b", Plan.FLEX, "7.77777777", None),
    ]
    results = [
        commission_for(D(pnl), RULES.rate_for(plan), "USDT", ref, RULES)
        for _, plan, pnl, ref in rows
    ]
    owed = [r for r in results if r is not None]
    assert [str(r.amount) for r in owed] == ["1.00000000", "0.25000000", "1.55555555"]
    income = sum((r.amount for r in owed), D(0))
    affiliate = sum((r.affiliate_amount or D(0) for r in owed), D(0))
    assert income == D("2.80555555")
    assert affiliate == D("0.12500000")
    assert sum((r.platform_net for r in owed), D(0)) == income - affiliate == D("2.68055555")
