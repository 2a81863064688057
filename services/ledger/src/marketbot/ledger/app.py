"""The composition root: settings -> durable consumers, query responders, lag metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from marketbot.contracts import Event
from marketbot.contracts.streams import STREAMS
from marketbot.ledger import metrics
from marketbot.ledger.api import LedgerQueries
from marketbot.ledger.domain.money import MoneyRules
from marketbot.ledger.handlers import apply_event, apply_events
from marketbot.ledger.settings import LedgerSettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.consumer import BatchHandler, ConsumerSpec, ExactlyOnceConsumer, Handler
from marketbot.runtime.db import Conn
from marketbot.runtime.logs import get_logger
from marketbot.runtime.service import ServiceContext, run_service

log = get_logger("marketbot.ledger")

MIGRATIONS = Path(__file__).parent / "migrations"


def stream_subjects(name: str) -> tuple[str, ...]:
    return next(spec.subjects for spec in STREAMS if spec.name == name)


# Accounts first, so a replay meets the referrers before the commissions that need them
# (any other order gives the same tables; this one just does less rework).
CONSUMERS: tuple[ConsumerSpec, ...] = (
    ConsumerSpec(
        "ledger_accounts", "ACCOUNTS", ("accounts.UserRegistered", "accounts.ReferrerAssigned")
    ),
    ConsumerSpec("ledger_signals", "SIGNALS", ("signals.>",)),
    ConsumerSpec("ledger_decisions", "DECISIONS", ("decisions.>",)),
    ConsumerSpec("ledger_order_requests", "ORDER_REQUESTS", ("orders.requested.>",)),
    ConsumerSpec("ledger_order_events", "ORDER_EVENTS", stream_subjects("ORDER_EVENTS")),
)


def projection_handler(
    consumer: str, rules: MoneyRules, clock: Clock, *, emit: bool = True
) -> Handler:
    """The handler one consumer runs; ``emit=False`` (rebuild) publishes nothing."""

    async def handle(event: Event, conn: Conn) -> Sequence[Event]:
        emitted = await apply_event(event, conn, rules)
        metrics.EVENTS_PROJECTED.labels(consumer, event.type).inc()
        metrics.PROJECTION_LAG_SECONDS.labels(consumer).set(
            max(0.0, (clock.now() - event.occurred_at).total_seconds())
        )
        return emitted if emit else ()

    return handle


def projection_batch_handler(consumer: str, rules: MoneyRules, clock: Clock) -> BatchHandler:
    """``projection_handler`` for a fetched batch (``apply_events``: a statement per step
    for the whole batch)."""

    async def handle(events: Sequence[Event], conn: Conn) -> Sequence[Event]:
        emitted = await apply_events(events, conn, rules)
        now = clock.now()
        for event in events:
            metrics.EVENTS_PROJECTED.labels(consumer, event.type).inc()
        metrics.PROJECTION_LAG_SECONDS.labels(consumer).set(
            max(0.0, (now - events[-1].occurred_at).total_seconds())
        )
        return emitted

    return handle


@dataclass
class Ledger:
    """The running projection: its consumers, and the lag poller."""

    bus: Bus
    pool: asyncpg.Pool
    settings: LedgerSettings
    clock: Clock = field(default_factory=SystemClock)
    consumers: list[ExactlyOnceConsumer] = field(default_factory=list)
    _lag_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rules = self.settings.money_rules()
        for spec in CONSUMERS:
            handler = projection_handler(spec.name, rules, self.clock)
            consumer = ExactlyOnceConsumer(
                self.bus,
                self.pool,
                spec,
                handler,
                batch_handler=projection_batch_handler(spec.name, rules, self.clock),
            )
            await consumer.start()
            self.consumers.append(consumer)
        await LedgerQueries(self.pool, self.settings.max_commission_entries).serve(self.bus)
        self._lag_task = asyncio.create_task(self._poll_pending(), name="ledger:pending")

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
        for consumer in self.consumers:
            await consumer.stop()
        self.consumers.clear()

    async def pending(self) -> dict[str, int]:
        """Messages each durable consumer has not yet been delivered (or not yet acked)."""
        result: dict[str, int] = {}
        for spec in CONSUMERS:
            info = await self.bus.js.consumer_info(
                self.bus.stream(spec.stream), self.bus.namespace.durable(spec.name)
            )
            result[spec.name] = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        return result

    async def _poll_pending(self) -> None:
        while True:
            try:
                for name, count in (await self.pending()).items():
                    metrics.PENDING.labels(name).set(count)
            except Exception as exc:  # metrics must never take the service down
                log.warning("could not read consumer lag", error=str(exc))
            await asyncio.sleep(self.settings.lag_poll_seconds)


async def setup(ctx: ServiceContext) -> None:
    settings = ctx.settings
    if not isinstance(settings, LedgerSettings):
        raise TypeError("the ledger needs LedgerSettings")
    ledger = Ledger(ctx.bus, ctx.require_pool(), settings, ctx.clock)
    await ledger.start()
    ctx.on_shutdown(ledger.stop)


def main_serve(settings: LedgerSettings | None = None) -> None:
    run_service(settings or LedgerSettings(), setup, migrations=MIGRATIONS)
