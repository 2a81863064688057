"""The policy table: inputs -> action, confidence, reasons (deterministic, Decimal)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from marketbot.contracts import DecisionAction, SignalAction
from marketbot.decision.domain.policy import (
    PolicyInputs,
    PolicySettings,
    decide,
    dominance_trend,
    replay,
)
from marketbot.decision.handlers import make_decision

from .helpers import NOW, neutral_context, signal

SETTINGS = PolicySettings()


@dataclass
class Case:
    name: str
    action: SignalAction = SignalAction.BUY
    context: dict[str, Any] = field(default_factory=dict)
    price: str | None = "100000"
    age_s: float = 0
    symbol: str = "BTCUSDT"
    expect_action: DecisionAction = DecisionAction.BUY
    expect_confidence: int = 60
    expect_codes: dict[str, str] = field(default_factory=dict)  # code -> contribution


CASES = [
    Case("neutral buy acts at the base", expect_codes={"signal": "60.00", "fear_greed": "0.00"}),
    Case(
        "neutral sell acts at the base",
        action=SignalAction.SELL,
        expect_action=DecisionAction.SELL,
    ),
    Case(
        "close is a sell",
        action=SignalAction.CLOSE,
        expect_action=DecisionAction.SELL,
    ),
    Case(
        "extreme greed supports a buy",
        context={"fear_greed": 100},
        expect_confidence=70,
        expect_codes={"fear_greed": "10.00"},
    ),
    Case(
        "extreme greed opposes a sell",
        action=SignalAction.SELL,
        context={"fear_greed": 100},
        expect_action=DecisionAction.SELL,
        expect_confidence=50,
        expect_codes={"fear_greed": "-10.00"},
    ),
    Case(
        "fear 25 lowers a buy by 5",
        context={"fear_greed": 25},
        expect_confidence=55,
        expect_codes={"fear_greed": "-5.00"},
    ),
    Case(
        "broad rally supports a buy",
        context={"top100_up_share": Decimal("0.8"), "top100_median_change": Decimal("2.5")},
        expect_confidence=68,  # 60 + 8*0.6 + 6*0.5 = 67.8
        expect_codes={"breadth_up_share": "4.80", "breadth_median_change": "3.00"},
    ),
    Case(
        "median change is capped at the scale",
        context={"top100_median_change": Decimal("-50")},
        expect_confidence=54,
        expect_codes={"breadth_median_change": "-6.00"},
    ),
    Case(
        "rising dominance supports buying BTC",
        # 55 * (1 - 1.00 / 1.02) = 1.0784 pp -> capped at 1 -> +6
        context={"btc_change_24h": Decimal("2")},
        expect_confidence=66,
        expect_codes={"btc_dominance_trend": "6.00"},
    ),
    Case(
        "rising dominance opposes buying an alt",
        symbol="ETHUSDT",
        context={"btc_change_24h": Decimal("2")},
        expect_confidence=54,
        expect_codes={"btc_dominance_trend": "-6.00"},
    ),
    Case(
        "ticker momentum counts for the signal's side",
        context={"ticker_change_24h": Decimal("-2.5")},
        expect_confidence=58,  # 60 - 5*0.5
        expect_codes={"ticker_momentum": "-2.50"},
    ),
    Case(
        "small deviation is a proportional penalty",
        price="100750",  # 0.75 % of 1.5 % -> -7.5
        expect_confidence=53,  # 52.5 rounds half up
        expect_codes={"price_deviation": "-7.50"},
    ),
    Case(
        "deviation above the maximum holds",
        price="102000",
        expect_action=DecisionAction.HOLD,
        expect_confidence=45,
        expect_codes={"price_deviation": "-15.00", "hold": "0.00"},
    ),
    Case(
        "no signal price: nothing to check",
        price=None,
        expect_codes={"price_deviation": "0.00"},
    ),
    Case(
        "age is a proportional penalty",
        age_s=150,
        expect_confidence=55,
        expect_codes={"signal_age": "-5.00"},
    ),
    Case(
        "a stale signal holds",
        age_s=301,
        expect_action=DecisionAction.HOLD,
        expect_confidence=50,
        expect_codes={"signal_age": "-10.00", "hold": "0.00"},
    ),
    Case(
        "one missing provider degrades but still acts",
        context={"fear_greed": None, "fear_greed_label": None, "missing": ("fear_greed",)},
        expect_confidence=52,
        expect_codes={"fear_greed_missing": "-8.00"},
    ),
    Case(
        "two missing providers fall below the threshold",
        context={
            "fear_greed": None,
            "top100_up_share": None,
            "top100_median_change": None,
            "btc_change_24h": None,
            "missing": ("fear_greed", "top100"),
        },
        expect_action=DecisionAction.HOLD,
        expect_confidence=44,
        expect_codes={
            "fear_greed_missing": "-8.00",
            "top100_missing": "-8.00",
            "threshold": "0.00",
        },
    ),
    Case(
        "stale values cost a little",
        context={"stale": ("ticker",)},
        expect_confidence=57,
        expect_codes={"ticker_stale": "-3.00"},
    ),
    Case(
        "everything against a buy clamps at zero-ish and holds",
        context={
            "fear_greed": 0,
            "top100_up_share": Decimal("0"),
            "top100_median_change": Decimal("-10"),
            "ticker_change_24h": Decimal("-10"),
            "btc_change_24h": Decimal("-5"),
        },
        expect_action=DecisionAction.HOLD,
        expect_confidence=25,  # 60 - 10 - 6 - 8 - 6 - 5
        expect_codes={"threshold": "0.00"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_policy_table(case: Case) -> None:
    inputs = PolicyInputs(
        symbol=case.symbol,
        signal_action=case.action,
        signal_price=None if case.price is None else Decimal(case.price),
        signal_time=NOW - timedelta(seconds=case.age_s),
        decided_at=NOW,
        context=neutral_context(**case.context),
    )
    result = decide(inputs, SETTINGS)
    by_code = {r.code: r for r in result.reasons}
    assert result.action is case.expect_action, [r.text for r in result.reasons]
    assert result.confidence == case.expect_confidence, [
        (r.code, r.contribution) for r in result.reasons
    ]
    for code, contribution in case.expect_codes.items():
        assert code in by_code, f"no reason {code}: {list(by_code)}"
        assert by_code[code].contribution == Decimal(contribution), by_code[code]
    # the reasons add up exactly to the score, and every reason says something
    assert sum(r.contribution for r in result.reasons) == result.score
    assert all(r.text for r in result.reasons)


def test_reasons_carry_each_inputs_value() -> None:
    ctx = neutral_context(fear_greed=72, fear_greed_label="Greed")
    result = decide(
        PolicyInputs(
            symbol="BTCUSDT",
            signal_action=SignalAction.BUY,
            signal_price=Decimal("100500"),
            signal_time=NOW - timedelta(seconds=30),
            decided_at=NOW,
            context=ctx,
        ),
        SETTINGS,
    )
    values = {r.code: r.value for r in result.reasons}
    assert values["fear_greed"] == "72"
    assert values["price_deviation"] == "0.50"
    assert values["signal_age"] == "30.00"
    assert values["breadth_up_share"] == "0.5"
    assert "Greed" in next(r.text for r in result.reasons if r.code == "fear_greed")


def test_weights_and_thresholds_are_settings() -> None:
    contrarian = PolicySettings(weight_fear_greed=Decimal(-10), threshold=Decimal(65))
    inputs = PolicyInputs(
        symbol="BTCUSDT",
        signal_action=SignalAction.BUY,
        signal_price=None,
        signal_time=NOW,
        decided_at=NOW,
        context=neutral_context(fear_greed=10),
    )
    result = decide(inputs, contrarian)
    assert result.confidence == 68  # fear supports a buy when the weight is negative
    assert result.action is DecisionAction.BUY
    assert decide(inputs, SETTINGS).confidence == 52  # fear opposes a buy by default
    assert decide(inputs, PolicySettings(threshold=Decimal(55))).action is DecisionAction.HOLD
    assert contrarian.fingerprint() != SETTINGS.fingerprint()


def test_a_decision_replays_to_the_same_result() -> None:
    ctx = neutral_context(fear_greed=33, top100_up_share=Decimal("0.41"), stale=("top100",))
    decision = make_decision(signal(price="100300", age_s=42), ctx, SETTINGS, NOW)
    again = replay(decision, SETTINGS)
    assert again.action is decision.action
    assert again.confidence == decision.confidence
    assert again.reasons == decision.reasons
    assert decision.policy_id == SETTINGS.fingerprint()


def test_the_decision_id_is_derived_from_the_signal() -> None:
    s = signal()
    first = make_decision(s, neutral_context(), SETTINGS, NOW)
    later = make_decision(s, neutral_context(fear_greed=90), SETTINGS, NOW + timedelta(seconds=5))
    assert first.decision_id == later.decision_id == first.event_id
    assert first.correlation_id == str(s.signal_id)


def test_dominance_trend_formula() -> None:
    ctx = neutral_context(
        btc_dominance=Decimal("50"),
        btc_change_24h=Decimal("10"),
        market_cap_change_24h=Decimal("10"),
    )
    assert dominance_trend(ctx) == 0
    ctx = neutral_context(
        btc_dominance=Decimal("50"),
        btc_change_24h=Decimal("0"),
        market_cap_change_24h=Decimal("-10"),
    )
    assert dominance_trend(ctx) == Decimal("5.0")
    assert dominance_trend(neutral_context(market_cap_change_24h=None)) is None
