"""The plan table (blueprint): priority and dispatch delay per plan, as configuration."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from marketbot.contracts import Plan


class PlanRule(BaseModel):
    model_config = ConfigDict(frozen=True)

    priority: int = Field(ge=1, description="1 is served first")
    delay_ms: int = Field(ge=0, description="not_before = decided_at + delay")


DEFAULT_PLANS: dict[Plan, PlanRule] = {
    Plan.PRO: PlanRule(priority=1, delay_ms=0),
    Plan.FLEX: PlanRule(priority=2, delay_ms=1000),
    Plan.TRIAL: PlanRule(priority=3, delay_ms=3000),
}


class PlanTable(BaseModel):
    model_config = ConfigDict(frozen=True)

    rules: dict[Plan, PlanRule] = Field(default_factory=lambda: dict(DEFAULT_PLANS))

    @model_validator(mode="after")
    def _every_plan_has_a_rule(self) -> PlanTable:
        missing = [p.value for p in Plan if p not in self.rules]
        if missing:
            raise ValueError(f"the plan table has no rule for {', '.join(missing)}")
        return self

    def priority(self, plan: Plan) -> int:
        return self.rules[plan].priority

    def not_before(self, plan: Plan, decided_at: datetime) -> datetime:
        return decided_at + timedelta(milliseconds=self.rules[plan].delay_ms)

    def tiers(self) -> list[list[Plan]]:
        """Plans grouped by priority, highest priority (lowest number) first."""
        by_priority: dict[int, list[Plan]] = {}
        for plan in Plan:
            by_priority.setdefault(self.rules[plan].priority, []).append(plan)
        return [by_priority[p] for p in sorted(by_priority)]
