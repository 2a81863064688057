"""The operation merge: any order, any duplicates, one result."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from marketbot.contracts import Event, OperationStatus, Plan
from marketbot.ledger.domain.operation import merge
from marketbot.ledger.settings import LedgerSettings

from .factories import T0, Script, referrer_assigned, registered
from .model import Model, canonical, fold, total

RULES = LedgerSettings().money_rules()


def test_a_closed_story_in_every_order_converges() -> None:
    script = Script("u1", Plan.FLEX)
    events = script.story()
    results = {
        fold(order, RULES).operations[script.request_id] for order in itertools.permutations(events)
    }
    assert len(results) == 1
    (op,) = results
    assert op.status is OperationStatus.CLOSED
    assert op.requested_at == T0
    assert op.exchange_order_id == f"x-{script.request_id.hex[:8]}"
    assert op.realized_pnl == script.realized_pnl
    assert op.commission_rate == Decimal("0.20")


def test_a_position_sold_in_parts_stays_open_with_the_profit_so_far_in_any_order() -> None:
    """Two parts sold (PositionReduced, cumulative), then the close of the rest with the
    totals: every delivery order, with a duplicate, gives one row; before the close the
    operation is OPEN with the latest reduction's totals."""
    script = Script("u1", Plan.FLEX)
    first, second = script.reduced(1, 3, 30), script.reduced(2, 3, 40)
    open_story = [script.requested(), script.placed(), script.filled(), first, second, first]
    results = {
        fold(order, RULES).operations[script.request_id]
        for order in itertools.permutations(open_story)
    }
    assert len(results) == 1
    (op,) = results
    assert op.status is OperationStatus.OPEN
    assert op.reduced_quantity == script.quantity / 3 * 2
    assert op.remaining_quantity == script.quantity - script.quantity / 3 * 2
    assert op.reduced_pnl == script.realized_pnl / 3 * 2
    assert op.realized_pnl is None
    closed = {
        fold(order, RULES).operations[script.request_id]
        for order in itertools.permutations([*open_story[3:5], script.filled(), script.closed()])
    }
    assert len(closed) == 1
    (done,) = closed
    assert done.status is OperationStatus.CLOSED
    assert done.realized_pnl == script.realized_pnl  # the close's totals
    assert done.reduced_quantity == script.quantity / 3 * 2


def test_filled_before_placed_is_open_and_then_the_same_row() -> None:
    script = Script("u1")
    state = merge(None, script.filled(), RULES)
    assert state.status is OperationStatus.OPEN
    state = merge(state, script.placed(), RULES)
    assert state.status is OperationStatus.OPEN
    state = merge(state, script.requested(), RULES)
    assert (
        state
        == fold([script.requested(), script.placed(), script.filled()], RULES).operations[
            script.request_id
        ]
    )


def test_unknown_then_resolved() -> None:
    script = Script("u1")
    state = merge(merge(None, script.requested(), RULES), script.unknown(), RULES)
    assert state.status is OperationStatus.UNKNOWN
    assert merge(state, script.placed(), RULES).status is OperationStatus.PLACED
    assert merge(state, script.rejected(), RULES).status is OperationStatus.REJECTED


def test_rejected_is_final_against_a_late_unknown() -> None:
    script = Script("u1")
    state = fold([script.rejected(), script.unknown(), script.requested()], RULES)
    op = state.operations[script.request_id]
    assert op.status is OperationStatus.REJECTED
    assert op.reject_reason == "INSUFFICIENT_BALANCE"


def test_the_rate_is_the_requests_plan_not_a_later_one() -> None:
    """The plan travels on the request; a plan change later never reaches the operation."""
    script = Script("u1", Plan.FLEX)
    op = fold(script.story(), RULES).operations[script.request_id]
    assert op.plan is Plan.FLEX
    assert op.commission_rate == Decimal("0.20")


# --- stateful: random deliveries with duplicates, redeliveries and reorderings ----------------

USERS = ("u0", "u1", "u2", "u3")
OUTCOMES = ("closed", "closed", "rejected", "unknown", "unknown_then_closed", "open")
pnl_cents = st.integers(min_value=-5_000_000_000, max_value=5_000_000_000)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Event] = []
        self.delivered: list[Event] = []
        self.live = Model(RULES)
        self.scripts = 0

    @rule(
        user=st.sampled_from(USERS),
        plan=st.sampled_from(list(Plan)),
        outcome=st.sampled_from(OUTCOMES),
        pnl=pnl_cents,
        minutes=st.integers(min_value=0, max_value=3 * 24 * 60),
    )
    def new_operation(self, user: str, plan: Plan, outcome: str, pnl: int, minutes: int) -> None:
        self.scripts += 1
        quantity = Decimal("0.01")
        entry = Decimal("100")
        exit_price = entry + (Decimal(pnl).scaleb(-8) / quantity)
        script = Script(
            user,
            plan,
            signal_id=uuid.UUID(int=self.scripts),
            quantity=quantity,
            entry=entry,
            exit=exit_price,
            fees=Decimal(0),
            start=T0 + timedelta(minutes=minutes),
        )
        self.pending.extend(script.story(outcome))

    @rule(
        user=st.sampled_from(USERS),
        referrer=st.sampled_from((*USERS, None)),
        minutes=st.integers(min_value=-60, max_value=3 * 24 * 60),
        registration=st.booleans(),
    )
    def referrer_change(
        self, user: str, referrer: str | None, minutes: int, registration: bool
    ) -> None:
        at = T0 + timedelta(minutes=minutes)
        event = (
            registered(user, referrer, at)
            if registration
            else referrer_assigned(user, referrer, at)
        )
        self.pending.append(event)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.pending) - 1))
        event = self.pending.pop(index)
        self._apply(event)

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        event = data.draw(st.sampled_from(self.delivered))
        self._apply(event)

    def _apply(self, event: Event) -> None:
        self.live.apply(event)
        once = (dict(self.live.operations), self.live.commissions())
        self.live.apply(event)  # applying any event twice changes nothing
        assert (dict(self.live.operations), self.live.commissions()) == once
        self.delivered.append(event)

    @invariant()
    def live_equals_a_rebuild(self) -> None:
        rebuilt = fold(canonical(self.delivered), RULES)
        assert rebuilt.operations == self.live.operations
        assert rebuilt.commissions() == self.live.commissions()

    @invariant()
    def money_is_conserved(self) -> None:
        commissions = self.live.commissions()
        income = total(c.amount for c in commissions.values())
        assert income == total(line.commissions for line in self.live.statement())
        assert income == total(
            total(line.commissions for line in self.live.statement(user)) for user in USERS
        )
        for record in commissions.values():
            assert record.realized_pnl > 0
            assert record.amount == (record.realized_pnl * record.rate).quantize(
                Decimal("0.00000001"), rounding=ROUND_HALF_EVEN
            )
            assert 0 <= (record.affiliate_amount or 0) <= record.amount
            op = self.live.operations[record.operation_id]
            assert record.rate == RULES.rate_for(op.plan)


LedgerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase
