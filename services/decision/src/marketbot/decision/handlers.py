"""Plain async handlers: a signal becomes a decision, a decision becomes order requests.

They take their dependencies as arguments, so they are tested without a broker or network.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from marketbot.contracts import (
    AccountEvent,
    DecisionAction,
    DecisionMade,
    Event,
    KeyEvent,
    MarketContext,
    OrderRequested,
    PlanTable,
    Side,
    SignalReceived,
    client_order_id_for,
    derived_id,
    request_id_for,
)
from marketbot.decision import metrics
from marketbot.decision.adapters import repository
from marketbot.decision.adapters.publisher import PublishResult
from marketbot.decision.domain.eligibility import EligibleUser, eligible
from marketbot.decision.domain.policy import PolicyInputs, PolicySettings, decide
from marketbot.runtime.clock import Clock
from marketbot.runtime.db import Conn
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.decision")

ContextSource = Callable[[SignalReceived], Awaitable[MarketContext]]
Publish = Callable[[Sequence[Event]], Awaitable[PublishResult]]


# ---- signal -> decision --------------------------------------------------------------------


def make_decision(
    signal: SignalReceived, context: MarketContext, settings: PolicySettings, decided_at: datetime
) -> DecisionMade:
    """The DecisionMade for a signal in a market context (pure; the id is the signal's)."""
    signal_time = signal.alert_time or signal.received_at
    result = decide(
        PolicyInputs(
            symbol=signal.symbol,
            signal_action=signal.action,
            signal_price=signal.price,
            signal_time=signal_time,
            decided_at=decided_at,
            context=context,
        ),
        settings,
    )
    decision_id = derived_id("decision", signal.signal_id)
    return DecisionMade(
        event_id=decision_id,
        occurred_at=decided_at,
        **signal.caused(),
        decision_id=decision_id,
        signal_id=signal.signal_id,
        symbol=signal.symbol,
        signal_action=signal.action,
        action=result.action,
        confidence=result.confidence,
        reasons=result.reasons,
        context=context,
        reference_price=context.ticker_price or signal.price,
        stop_loss_percent=signal.stop_loss_percent,
        take_profit_percent=signal.take_profit_percent,
        exchange=signal.exchange,
        decided_at=decided_at,
        signal_price=signal.price,
        signal_time=signal_time,
        policy_id=settings.fingerprint(),
    )


async def prepare_decision(
    signal: SignalReceived, context_for: ContextSource, settings: PolicySettings, clock: Clock
) -> DecisionMade:
    """Fetch the market context (outside any transaction) and decide."""
    context = await context_for(signal)
    return make_decision(signal, context, settings, clock.now())


async def on_signal(conn: Conn, decision: DecisionMade) -> list[Event]:
    """Record the decision; emit it unless this signal was already decided."""
    if not await repository.record_decision(conn, decision):
        log.info("signal already decided", signal_id=str(decision.signal_id))
        return []
    metrics.DECISIONS.labels(decision.action.value).inc()
    metrics.CONFIDENCE.observe(decision.confidence)
    log.info(
        "decision made",
        action=decision.action.value,
        confidence=decision.confidence,
        symbol=decision.symbol,
        missing=list(decision.context.missing),
    )
    return [decision]


# ---- decision -> order requests ------------------------------------------------------------


def order_requests(
    decision: DecisionMade,
    users: Sequence[EligibleUser],
    plans: PlanTable,
    now: datetime,
) -> list[list[OrderRequested]]:
    """One OrderRequested per user, grouped by plan tier, highest priority first.

    Every id is derived from (decision, user): the event id is the request id, and the client
    order id fits the exchanges' 36-character alphabet.
    """
    if decision.action is DecisionAction.HOLD:
        return []
    side = Side.BUY if decision.action is DecisionAction.BUY else Side.SELL
    tiers = plans.tiers()
    grouped: list[list[OrderRequested]] = [[] for _ in tiers]
    tier_of = {plan: i for i, tier in enumerate(tiers) for plan in tier}
    template: OrderRequested | None = None
    for user in users:
        request_id = request_id_for(decision.decision_id, user.user_id)
        # runnable when the plan's delay ends: the executors' maximum age counts from there
        runnable_at = plans.not_before(user.plan, decision.decided_at)
        fields = {
            "event_id": request_id,
            "request_id": request_id,
            "user_id": user.user_id,
            "exchange": user.exchange,
            "plan": user.plan,
            "priority": plans.priority(user.plan),
            "not_before": runnable_at,
            "requested_at": runnable_at,
            # the rate in force now: the ledger charges this, whatever the table says later
            "commission_rate": plans.commission_rate(user.plan),
            "risk_level": user.risk_level,
            "client_order_id": client_order_id_for(decision.decision_id, user.user_id),
            "allocation": user.allocation,
            "allocation_currency": user.allocation_currency,
        }
        if template is None:
            # the first request is fully validated; the others differ only in the per-user
            # fields above, which come from validated account events and derived ids, so they
            # are copied (validating 10,000 models would take most of the fan-out budget)
            template = OrderRequested(
                occurred_at=now,
                **decision.caused(),
                decision_id=decision.decision_id,
                signal_id=decision.signal_id,
                symbol=decision.symbol,
                side=side,
                reference_price=decision.reference_price,
                stop_loss_percent=decision.stop_loss_percent,
                take_profit_percent=decision.take_profit_percent,
                **fields,
            )
            request = template
        else:
            request = template.model_copy(update=fields)
        grouped[tier_of[user.plan]].append(request)
    return [tier for tier in grouped if tier]


@dataclass(frozen=True, slots=True)
class FanoutResult:
    outcome: str
    requests: int
    duplicates: int = 0


async def fan_out(
    decision: DecisionMade,
    *,
    pool: asyncpg.Pool,
    publish: Publish,
    plans: PlanTable,
    clock: Clock,
) -> FanoutResult:
    """Publish one OrderRequested per eligible user, PRO tier first, then FLEX, then TRIAL.

    Eligibility is evaluated at ``decided_at``; the recipients are frozen in the database at the
    first attempt, so a redelivered decision republishes exactly the same request ids (which
    JetStream drops as duplicates) and a finished fan-out is skipped.
    """
    if decision.action is DecisionAction.HOLD:
        await repository.complete_fanout(pool, decision.decision_id, decision.action.value)
        metrics.FANOUTS.labels("hold").inc()
        return FanoutResult("hold", 0)
    if await repository.fanout_completed(pool, decision.decision_id):
        metrics.FANOUTS.labels("already_done").inc()
        return FanoutResult("already_done", 0)
    started = time.perf_counter()
    users = await repository.freeze_recipients(pool, decision, None)
    if users is None:
        async with pool.acquire() as conn:
            candidates = await repository.load_candidates(conn, decision.exchange)
        eligible_now = [
            u for c in candidates if (u := eligible(c, decision.decided_at, decision.exchange))
        ]
        users = await repository.freeze_recipients(pool, decision, eligible_now)
        assert users is not None
    tiers = order_requests(decision, users, plans, clock.now())
    published = duplicates = 0
    for tier in tiers:  # a tier is fully acknowledged before the next one starts
        result = await publish(tier)
        published += result.published
        duplicates += result.duplicates
    await repository.complete_fanout(pool, decision.decision_id, decision.action.value)
    metrics.FANOUT_SIZE.observe(published)
    metrics.FANOUT_SECONDS.observe(time.perf_counter() - started)
    metrics.FANOUTS.labels("published").inc()
    log.info(
        "fan-out done",
        decision_id=str(decision.decision_id),
        requests=published,
        duplicates=duplicates,
        seconds=round(time.perf_counter() - started, 4),
    )
    return FanoutResult("published", published, duplicates)


# ---- the eligibility projection ------------------------------------------------------------


async def on_account_event(event: Event, conn: Conn) -> Sequence[Event]:
    if isinstance(event, AccountEvent):
        await repository.apply_account_event(conn, event)
    return ()


async def on_key_event(event: Event, conn: Conn) -> Sequence[Event]:
    if isinstance(event, KeyEvent):
        await repository.apply_key_event(conn, event)
    return ()
