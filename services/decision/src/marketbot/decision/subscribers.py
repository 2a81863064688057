"""Thin subscribers: validate the contract, call a handler, ack.

* ``SignalConsumer``: exactly-once on SIGNALS. Market data is fetched *before* the transaction
  (for the whole batch, concurrently, skipping signals already processed); the handler then
  records the decision and emits DecisionMade through the outbox in one transaction.
* ``FanoutConsumer``: at-least-once on DECISIONS; the fan-out itself is idempotent (frozen
  recipients, deterministic ids, a completion mark), so it acks after the mark is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError

from marketbot.contracts import ContractError, DecisionMade, Event, SignalReceived, decode
from marketbot.decision import handlers
from marketbot.decision.handlers import FanoutResult
from marketbot.runtime.bus import Bus
from marketbot.runtime.consumer import ConsumerSpec, ExactlyOnceConsumer
from marketbot.runtime.db import Conn
from marketbot.runtime.logs import correlation, get_logger

log = get_logger("marketbot.decision.subscribers")

Prepare = Callable[[SignalReceived], Awaitable[DecisionMade]]


class SignalConsumer(ExactlyOnceConsumer):
    def __init__(self, bus: Bus, pool: asyncpg.Pool, spec: ConsumerSpec, prepare: Prepare) -> None:
        super().__init__(bus, pool, spec, self._handle)
        self._pool = pool
        self._prepare = prepare
        self._prepared: dict[uuid.UUID, DecisionMade] = {}

    async def process_batch(self, messages: Sequence[Msg]) -> None:
        signals: list[SignalReceived] = []
        for msg in messages:
            with contextlib.suppress(ContractError):
                event = decode(msg.data)
                if isinstance(event, SignalReceived):
                    signals.append(event)
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
            await super().process_batch(messages)
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
        self._bus = bus
        self._spec = spec
        self._fan_out = fan_out
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy = False

    @property
    def name(self) -> str:
        return self._spec.name

    async def start(self) -> None:
        sub = await self._bus.pull(
            self._spec.stream, self._spec.name, self._spec.subjects, ack_wait=self._spec.ack_wait
        )
        self._task = asyncio.create_task(self._run(sub), name=f"consumer:{self._spec.name}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            if not self._busy:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, sub: Any) -> None:
        while not self._stopping.is_set():
            try:
                messages = await sub.fetch(self._spec.batch, timeout=self._spec.fetch_timeout)
            except NatsTimeoutError:
                continue
            except Exception as exc:
                log.warning("fetch failed", consumer=self._spec.name, error=str(exc))
                await asyncio.sleep(self._spec.retry_delay)
                continue
            self._busy = True
            try:
                for msg in messages:
                    await self.process(msg)
            finally:
                self._busy = False

    async def process(self, msg: Msg) -> None:
        try:
            event = decode(msg.data)
        except ContractError as exc:
            log.error("undecodable decision dropped", error=str(exc))
            await msg.term()
            return
        if not isinstance(event, DecisionMade):
            await msg.ack()
            return
        with correlation(event.correlation_id, decision_id=str(event.decision_id)):
            try:
                await self._fan_out(event)
            except Exception as exc:
                log.warning("fan-out failed; redelivery later", error=repr(exc))
                with contextlib.suppress(Exception):
                    await msg.nak(delay=self._spec.retry_delay)
                return
            await msg.ack()
