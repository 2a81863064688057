"""The plan table: every per-plan setting in one place, read by every service.

Priority and dispatch delay (the decision: ``OrderRequested.priority`` / ``not_before``),
the tier order (the executors serve plans in priority order), and the commission rate (the
decision stamps the rate in force on each ``OrderRequested``; the ledger charges that rate).
Services read it from ``MARKETBOT_PLANS`` (JSON, the same value for every service) through
``marketbot.runtime.settings.ServiceSettings.plans``; the defaults are below.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from marketbot.contracts.enums import Plan
from marketbot.contracts.envelope import Money


class PlanRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    priority: int = Field(ge=1, description="1 is served first")
    delay_ms: int = Field(ge=0, description="not_before = decided_at + delay")
    commission_rate: Money = Field(
        ge=0, le=1, description="share of a closed operation's positive realized PnL"
    )


DEFAULT_PLANS: dict[Plan, PlanRule] = {
    Plan.PRO: PlanRule(priority=1, delay_ms=0, commission_rate=Decimal("0.10")),
    Plan.FLEX: PlanRule(priority=2, delay_ms=1000, commission_rate=Decimal("0.20")),
    Plan.TRIAL: PlanRule(priority=3, delay_ms=3000, commission_rate=Decimal("0")),
}

LEGACY_COMMISSION_RATES: dict[Plan, Decimal] = {
    Plan.PRO: Decimal("0.10"),
    Plan.FLEX: Decimal("0.20"),
    Plan.TRIAL: Decimal("0"),
}
"""The rates the ledger applied to ``OrderRequested`` v1 (which carried no rate): its
shipped defaults. The upcaster stamps them on v1 events, so a rebuild charges old
operations what the live ledger charged them."""


class PlanTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: dict[Plan, PlanRule] = Field(default_factory=lambda: dict(DEFAULT_PLANS))

    @model_validator(mode="before")
    @classmethod
    def _plans_at_the_top(cls, data: Any) -> Any:
        """``{"PRO": {...}, "FLEX": {...}, ...}`` is accepted as well as ``{"rules": ...}``."""
        if isinstance(data, dict) and data and "rules" not in data:
            return {"rules": data}
        return data

    @model_validator(mode="after")
    def _every_plan_has_a_rule(self) -> PlanTable:
        missing = [p.value for p in Plan if p not in self.rules]
        if missing:
            raise ValueError(f"the plan table has no rule for {', '.join(missing)}")
        return self

    def priority(self, plan: Plan) -> int:
        return self.rules[plan].priority

    def commission_rate(self, plan: Plan) -> Decimal:
        return self.rules[plan].commission_rate

    def not_before(self, plan: Plan, decided_at: datetime) -> datetime:
        return decided_at + timedelta(milliseconds=self.rules[plan].delay_ms)

    def tiers(self) -> list[list[Plan]]:
        """Plans grouped by priority, highest priority (lowest number) first."""
        by_priority: dict[int, list[Plan]] = {}
        for plan in Plan:
            by_priority.setdefault(self.rules[plan].priority, []).append(plan)
        return [by_priority[p] for p in sorted(by_priority)]

    def order(self) -> tuple[Plan, ...]:
        """Every plan, highest priority first (ties in the enum's order): the executors'
        tier order."""
        return tuple(plan for tier in self.tiers() for plan in tier)
