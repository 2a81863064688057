"""Thresholds, weights, the plan table and the ticker order come from the environment."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketbot.contracts import Exchange, Plan
from marketbot.decision.settings import DecisionSettings


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETBOT_DECISION_POLICY__THRESHOLD", "55")
    monkeypatch.setenv("MARKETBOT_DECISION_POLICY__MAX_DEVIATION_PERCENT", "0.8")
    monkeypatch.setenv("MARKETBOT_DECISION_TICKER_EXCHANGES", '["binance","bybit"]')
    monkeypatch.setenv(
        "MARKETBOT_PLANS",
        '{"PRO":{"priority":1,"delay_ms":0,"commission_rate":"0.1"},'
        '"FLEX":{"priority":2,"delay_ms":500,"commission_rate":"0.15"},'
        '"TRIAL":{"priority":3,"delay_ms":3000,"commission_rate":"0"}}',
    )
    monkeypatch.setenv("MARKETBOT_DECISION_FEAR_GREED_URL", "http://127.0.0.1:9999")
    settings = DecisionSettings()
    assert settings.policy.threshold == Decimal(55)
    assert settings.policy.max_deviation_percent == Decimal("0.8")
    assert settings.ticker_exchanges == (Exchange.BINANCE, Exchange.BYBIT)
    assert settings.plan_table.rules[Plan.FLEX].delay_ms == 500
    assert settings.plan_table.commission_rate(Plan.FLEX) == Decimal("0.15")
    assert settings.fear_greed_url == "http://127.0.0.1:9999"
    assert settings.schema_name == "decision"


def test_the_default_plan_table_is_the_blueprints() -> None:
    table = DecisionSettings().plan_table
    assert [(table.priority(p), table.rules[p].delay_ms) for p in Plan] == [
        (1, 0),
        (2, 1000),
        (3, 3000),
    ]


def test_the_fanout_redelivery_window_is_far_shorter_than_the_request_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fan-out redelivered after its ack wait must still be young enough to be sent."""
    defaults = DecisionSettings()
    assert defaults.fanout_ack_wait_s * 4 <= defaults.max_request_age_s
    monkeypatch.setenv("MARKETBOT_DECISION_FANOUT_ACK_WAIT_S", "120")
    with pytest.raises(ValueError, match=r"fanout_ack_wait_s=120s must be at most 25% .* 120s"):
        DecisionSettings()
    monkeypatch.setenv("MARKETBOT_DECISION_MAX_REQUEST_AGE_S", "480")
    assert DecisionSettings().fanout_ack_wait_s == 120
