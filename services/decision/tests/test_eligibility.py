"""The eligibility rule, and the order requests built for the eligible (no broker)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from marketbot.contracts import (
    DecisionAction,
    Exchange,
    Plan,
    PlanTable,
    RiskLevel,
    Side,
    SubscriptionStatus,
    TradingMode,
    client_order_id_for,
    request_id_for,
)
from marketbot.decision.domain.eligibility import (
    Candidate,
    EligibleUser,
    KeyStatus,
    eligible,
    ineligibility,
)
from marketbot.decision.domain.policy import PolicySettings
from marketbot.decision.handlers import make_decision, order_requests

from .helpers import NOW, neutral_context, signal

OK = Candidate(
    user_id="u1",
    plan=Plan.TRIAL,
    subscription_status=SubscriptionStatus.ACTIVE,
    expires_at=NOW + timedelta(days=3),
    preferred_exchange=Exchange.BYBIT,
    trading_mode=TradingMode.PERSONAL,
    risk_level=RiskLevel.LOW,
    key_status=KeyStatus.VERIFIED,
    key_can_trade=True,
)


@pytest.mark.parametrize(
    ("change", "exchange", "why"),
    [
        ({}, None, None),
        ({}, Exchange.BYBIT, None),
        ({"subscription_status": SubscriptionStatus.INACTIVE}, None, "subscription not active"),
        ({"subscription_status": SubscriptionStatus.EXPIRED}, None, "subscription not active"),
        ({"expires_at": NOW - timedelta(seconds=1)}, None, "subscription expired"),
        ({"expires_at": NOW}, None, "subscription expired"),
        ({"trading_mode": TradingMode.PAUSED}, None, "trading mode is not PERSONAL"),
        ({"key_status": KeyStatus.STORED}, None, "no verified key for the preferred exchange"),
        ({"key_status": KeyStatus.REJECTED}, None, "no verified key for the preferred exchange"),
        ({"key_status": KeyStatus.REVOKED}, None, "no verified key for the preferred exchange"),
        ({"key_status": None}, None, "no verified key for the preferred exchange"),
        ({"key_can_trade": False}, None, "the key cannot trade"),
        ({"key_expires_at": NOW}, None, "the key expired"),
        ({}, Exchange.BINANCE, "the signal is for another exchange"),
        ({"preferred_exchange": None}, None, "no trading preferences"),
    ],
)
def test_eligibility_rule(
    change: dict[str, object], exchange: Exchange | None, why: str | None
) -> None:
    candidate = replace(OK, **change)  # type: ignore[arg-type]
    assert ineligibility(candidate, NOW, exchange) == why
    assert (eligible(candidate, NOW, exchange) is None) == (why is not None)


def users() -> list[EligibleUser]:
    plans = [Plan.TRIAL, Plan.PRO, Plan.FLEX, Plan.PRO, Plan.TRIAL]
    return [
        EligibleUser(
            user_id=f"user-{i}",
            plan=plan,
            exchange=Exchange.BINANCE if i % 2 else Exchange.BYBIT,
            risk_level=RiskLevel.HIGH,
            allocation=Decimal("50"),
            allocation_currency="USDT",
        )
        for i, plan in enumerate(plans)
    ]


def test_requests_are_grouped_pro_then_flex_then_trial() -> None:
    decision = make_decision(signal(), neutral_context(), PolicySettings(), NOW)
    assert decision.action is DecisionAction.BUY
    tiers = order_requests(decision, users(), PlanTable(), NOW)
    assert [[r.plan for r in tier] for tier in tiers] == [
        [Plan.PRO, Plan.PRO],
        [Plan.FLEX],
        [Plan.TRIAL, Plan.TRIAL],
    ]
    flat = [r for tier in tiers for r in tier]
    for r in flat:
        assert r.side is Side.BUY
        assert r.request_id == r.event_id == request_id_for(decision.decision_id, r.user_id)
        assert r.client_order_id == client_order_id_for(decision.decision_id, r.user_id)
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,36}", r.client_order_id)
        assert r.correlation_id == decision.correlation_id
        assert r.causation_id == str(decision.event_id)
        assert r.stop_loss_percent == Decimal("2")
        assert r.take_profit_percent == Decimal("4")
        assert r.risk_level is RiskLevel.HIGH
        assert r.subject() == f"orders.requested.{r.exchange.value}.{r.plan.value.lower()}"
    rates = {r.plan: r.commission_rate for r in flat}
    assert rates == {Plan.PRO: Decimal("0.10"), Plan.FLEX: Decimal("0.20"), Plan.TRIAL: 0}
    delays = {r.plan: (r.not_before - decision.decided_at, r.priority) for r in flat}
    assert delays == {
        Plan.PRO: (timedelta(0), 1),
        Plan.FLEX: (timedelta(seconds=1), 2),
        Plan.TRIAL: (timedelta(seconds=3), 3),
    }


def test_the_plan_table_is_configuration() -> None:
    table = PlanTable.model_validate(
        {
            "rules": {
                "PRO": {"priority": 1, "delay_ms": 0, "commission_rate": "0.1"},
                "FLEX": {"priority": 1, "delay_ms": 0, "commission_rate": "0.3"},
                "TRIAL": {"priority": 2, "delay_ms": 10_000, "commission_rate": "0"},
            }
        }
    )
    assert table.tiers() == [[Plan.PRO, Plan.FLEX], [Plan.TRIAL]]
    with pytest.raises(ValueError, match="TRIAL"):
        PlanTable.model_validate(
            {"rules": {"PRO": {"priority": 1, "delay_ms": 0, "commission_rate": "0"}}}
        )


def test_a_sell_decision_requests_sells_and_hold_requests_nothing() -> None:
    sell = make_decision(signal(action="sell"), neutral_context(), PolicySettings(), NOW)  # type: ignore[arg-type]
    assert {r.side for t in order_requests(sell, users(), PlanTable(), NOW) for r in t} == {
        Side.SELL
    }
    hold = make_decision(signal(price="150000"), neutral_context(), PolicySettings(), NOW)
    assert hold.action is DecisionAction.HOLD
    assert order_requests(hold, users(), PlanTable(), NOW) == []
