"""Thin subscribers on the runtime's message loop: validate the contract, call a handler.

* ``SignalConsumer``: exactly-once on SIGNALS. Market data is fetched *before* the transaction
  (for the whole batch, concurrently, skipping signals already processed); the handler then
  records the decision and emits DecisionMade through the outbox in one transaction.
* ``FanoutConsumer``: at-least-once on DECISIONS; the fan-out itself is idempotent (frozen
  recipients, deterministic ids, a completion mark), so it acks after the mark is written.

Fetching, decoding, retries with backoff, dead letters and supervision are the loop's
(``marketbot.runtime.loop.MessageLoop``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from marketbot.contracts import DecisionMade, Event, SignalReceived
from marketbot.decision import handlers
from marketbot.decision.handlers import FanoutResult
from marketbot.runtime.bus import Bus
from marketbot.runtime.consumer import ConsumerSpec, ExactlyOnceConsumer
from marketbot.runtime.db import Conn
from marketbot.runtime.logs import correlation, get_logger
from marketbot.runtime.loop import Delivery, MessageLoop

log = get_logger("marketbot.decision.subscribers")

Prepare = Callable[[SignalReceived], Awaitable[DecisionMade]]


class SignalConsumer(ExactlyOnceConsumer):
    def __init__(self, bus: Bus, pool: asyncpg.Pool, spec: ConsumerSpec, prepare: Prepare) -> None:
        super().__init__(bus, pool, spec, self._handle)
        self._pool = pool
        self._prepare = prepare
        self._prepared: dict[uuid.UUID, DecisionMade] = {}

    async def handle_batch(self, batch: Sequence[Delivery]) -> None:
        signals = [d.message for d in batch if isinstance(d.message, SignalReceived)]
        done = await self._pool.fetch(
            "SELECT event_id FROM processed_events WHERE consumer = $1 AND event_id = ANY($2)",
            self.name,
            [s.event_id for s in signals],
        )
        skip = {r["event_id"] for r in done}
        todo = [s for s in signals if s.event_id not in skip]
        decisions = await asyncio.gather(*(self._prepare(s) for s in todo))
        self._prepared = {s.event_id: d for s, d in zip(todo, decisions, strict=True)}
        try:
            await super().handle_batch(batch)
        finally:
            self._prepared = {}

    async def _handle(self, event: Event, conn: Conn) -> Sequence[Event]:
        if not isinstance(event, SignalReceived):
            return ()
        decision = self._prepared.get(event.event_id)
        if decision is None:  # not prepared (e.g. a retry): fetch now
            decision = await self._prepare(event)
        return await handlers.on_signal(conn, decision)


FanOut = Callable[[DecisionMade], Awaitable[FanoutResult]]


class FanoutConsumer:
    def __init__(self, bus: Bus, spec: ConsumerSpec, fan_out: FanOut) -> None:
        self._spec = spec
        self._fan_out = fan_out
        self.loop = MessageLoop(bus, spec, self.handle_batch)

    @property
    def name(self) -> str:
        return self._spec.name

    async def start(self) -> None:
        await self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def handle_batch(self, batch: Sequence[Delivery]) -> None:
        for delivery in batch:
            event = delivery.message
            if not isinstance(event, DecisionMade):
                delivery.ack()  # DECISIONS carries only decisions; anything else is not ours
                continue
            with correlation(event.correlation_id, decision_id=str(event.decision_id)):
                try:
                    await self._fan_out(event)
                except Exception as exc:
                    log.warning("fan-out failed", error=repr(exc), message_id=delivery.message_id)
                    delivery.retry(exc)
                    continue
            delivery.ack()
