"""Exactly-once effects over at-least-once delivery (blueprint rule 3), and the outbox.

``ExactlyOnceConsumer`` pulls from a durable JetStream consumer and, for each message, in one
PostgreSQL transaction: records ``(consumer, event_id)`` in ``processed_events`` (a second
delivery finds it and skips the handler), runs the handler, and stores any events the handler
emits in ``outbox``. Only after commit does it publish the outbox rows (by event id, so
JetStream de-duplicates a retry) and ack the message. A crash at any point leaves either
nothing done (redelivered, applied once) or the effect committed (redelivered, skipped, and
the outbox re-published by ``Outbox.relay``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from prometheus_client import Counter, Gauge, Histogram

from marketbot.contracts import ContractError, Event, decode
from marketbot.runtime.bus import Bus, BusError
from marketbot.runtime.db import Conn
from marketbot.runtime.logs import correlation, get_logger

log = get_logger("marketbot.consumer")

Handler = Callable[[Event, Conn], Awaitable[Sequence[Event] | None]]

EVENTS_APPLIED = Counter(
    "marketbot_events_applied_total",
    "Messages handled by exactly-once consumers, by consumer and outcome",
    ["consumer", "outcome"],
)
APPLY_SECONDS = Histogram(
    "marketbot_event_apply_seconds",
    "Time to apply one event (transaction + outbox publish + ack)",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CONSUMER_LAG = Gauge(
    "marketbot_consumer_lag_messages",
    "Messages in the stream not yet delivered to the consumer",
    ["consumer"],
)


class PermanentError(Exception):
    """Raised by a handler for a message that can never be applied: it is dead-lettered."""


class Outbox:
    """Events written with the state that caused them, published after commit."""

    def __init__(self, bus: Bus, pool: asyncpg.Pool) -> None:
        self._bus = bus
        self._pool = pool

    @staticmethod
    async def add(conn: Conn, events: Iterable[Event]) -> list[int]:
        rows: list[int] = []
        for event in events:
            row_id = await conn.fetchval(
                "INSERT INTO outbox (event_id, subject, event_type, payload) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING RETURNING id",
                event.event_id,
                event.subject(),
                event.type,
                event.to_json(),
            )
            if row_id is not None:
                rows.append(row_id)
        return rows

    async def flush(self, row_ids: Sequence[int]) -> None:
        """Publish the given rows (in order) and delete each once JetStream has it."""
        if not row_ids:
            return
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, event_id, subject, event_type, payload FROM outbox "
                "WHERE id = ANY($1::bigint[]) ORDER BY id",
                list(row_ids),
            )
            await self._publish_rows(conn, rows)

    async def publish_committed(self, row_ids: Sequence[int]) -> None:
        """``flush`` for rows already committed: a failure is logged, never raised, because
        the effect stands and the relay publishes the rows when the bus is back."""
        try:
            await self.flush(row_ids)
        except (BusError, OSError, asyncpg.PostgresError) as exc:
            log.warning("event publish deferred to the outbox relay", error=str(exc))

    async def relay(self, older_than_seconds: float = 0.0, limit: int = 1000) -> int:
        """Publish rows a crashed process left behind; returns how many it published."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, event_id, subject, event_type, payload FROM outbox "
                "WHERE created_at <= now() - make_interval(secs => $1) ORDER BY id LIMIT $2",
                older_than_seconds,
                limit,
            )
            await self._publish_rows(conn, rows)
        return len(rows)

    async def _publish_rows(self, conn: Conn, rows: Sequence[Any]) -> None:
        """Publish rows pipelined on the one connection (so the stream keeps their order)
        and delete them in one statement once JetStream has acknowledged all of them; if any
        publish fails, every row stays for the relay (a re-publish is de-duplicated)."""
        if not rows:
            return
        await asyncio.gather(
            *(
                self._bus.publish_raw(
                    self._bus.subject(row["subject"]),
                    bytes(row["payload"]),
                    str(row["event_id"]),
                    row["event_type"],
                )
                for row in rows
            )
        )
        await conn.execute(
            "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [row["id"] for row in rows]
        )

    async def run_relay(self, interval: float = 2.0, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.relay(older_than_seconds=interval)
            except (BusError, OSError, asyncpg.PostgresError) as exc:
                log.warning("outbox relay failed; will retry", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


@dataclass
class ConsumerSpec:
    name: str
    """Durable consumer name; also the key in processed_events."""
    stream: str
    subjects: tuple[str, ...]
    batch: int = 64
    fetch_timeout: float = 1.0
    ack_wait: float = 30.0
    retry_delay: float = 0.5


class ExactlyOnceConsumer:
    def __init__(self, bus: Bus, pool: asyncpg.Pool, spec: ConsumerSpec, handler: Handler) -> None:
        self._bus = bus
        self._pool = pool
        self._spec = spec
        self._handler = handler
        self._outbox = Outbox(bus, pool)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy = False

    @property
    def name(self) -> str:
        return self._spec.name

    async def start(self) -> None:
        await self._outbox.relay()
        sub = await self._bus.pull(
            self._spec.stream, self._spec.name, self._spec.subjects, ack_wait=self._spec.ack_wait
        )
        self._task = asyncio.create_task(self._run(sub), name=f"consumer:{self._spec.name}")

    async def stop(self) -> None:
        """Finish the batch in hand (each message is acked or left for redelivery), then stop."""
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
            except (NatsTimeoutError, TimeoutError):
                continue  # nothing to fetch within fetch_timeout
            except Exception as exc:  # connection trouble: back off, the loop goes on
                log.warning("fetch failed", consumer=self._spec.name, error=repr(exc))
                await asyncio.sleep(self._spec.retry_delay)
                continue
            self._busy = True
            try:
                await self.process_batch(messages)
            finally:
                self._busy = False
            if messages:
                with contextlib.suppress(Exception):
                    CONSUMER_LAG.labels(self._spec.name).set(messages[-1].metadata.num_pending)

    async def process_batch(self, messages: Sequence[Msg]) -> None:
        """Apply a fetched batch in one transaction (one commit for many events).

        If anything in the batch fails, the transaction rolls back as a whole and each message
        is processed on its own, so one bad message never holds the others back.
        """
        if not messages:  # a fetch can return an empty batch; nothing to apply
            return
        if len(messages) == 1:
            await self.process(messages[0])
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        decoded: list[tuple[Msg, Event]] = []
        for msg in messages:
            try:
                event = decode(msg.data)
            except ContractError:
                break
            if not isinstance(event, Event):
                break
            decoded.append((msg, event))
        if len(decoded) != len(messages):
            for msg in messages:
                await self.process(msg)
            return
        try:
            outcomes, rows = await self._apply_all([event for _, event in decoded])
        except Exception as exc:
            log.info("batch failed; applying one by one", consumer=self._spec.name, error=repr(exc))
            for msg in messages:
                await self.process(msg)
            return
        await self._outbox.publish_committed(rows)
        for (msg, _), outcome in zip(decoded, outcomes, strict=True):
            await msg.ack()
            EVENTS_APPLIED.labels(self._spec.name, outcome).inc()
        APPLY_SECONDS.labels(self._spec.name).observe((loop.time() - started) / len(messages))

    async def _apply_all(self, events: Sequence[Event]) -> tuple[list[str], list[int]]:
        outcomes: list[str] = []
        rows: list[int] = []
        async with self._pool.acquire() as conn, conn.transaction():
            for event in events:
                with correlation(event.correlation_id, event_type=event.type):
                    outcome, emitted = await self._apply_in(conn, event)
                outcomes.append(outcome)
                rows.extend(await Outbox.add(conn, emitted))
        return outcomes, rows

    async def _apply_in(self, conn: Conn, event: Event) -> tuple[str, Sequence[Event]]:
        first_time = await conn.fetchval(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING true",
            self._spec.name,
            event.event_id,
        )
        if not first_time:
            return "duplicate", ()
        return "applied", (await self._handler(event, conn)) or ()

    async def process(self, msg: Msg) -> None:
        """Apply one message exactly once; ack only after the effect is committed."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            event = decode(msg.data)
        except ContractError as exc:
            await self._dead_letter(msg, f"undecodable: {exc}")
            return
        if not isinstance(event, Event):
            await self._dead_letter(msg, f"not an event: {event.type}")
            return
        with correlation(event.correlation_id, event_type=event.type, consumer=self._spec.name):
            try:
                outcome, outbox_rows = await self._apply(event)
            except PermanentError as exc:
                await self._dead_letter(msg, str(exc))
                return
            except Exception as exc:
                log.warning("apply failed; redelivery later", error=repr(exc))
                EVENTS_APPLIED.labels(self._spec.name, "retry").inc()
                with contextlib.suppress(Exception):
                    await msg.nak(delay=self._spec.retry_delay)
                return
            # Committed: a failed publish is left to the relay; acking is still right.
            await self._outbox.publish_committed(outbox_rows)
            await msg.ack()
            EVENTS_APPLIED.labels(self._spec.name, outcome).inc()
            APPLY_SECONDS.labels(self._spec.name).observe(loop.time() - started)

    async def _apply(self, event: Event) -> tuple[str, list[int]]:
        async with self._pool.acquire() as conn, conn.transaction():
            outcome, emitted = await self._apply_in(conn, event)
            rows = await Outbox.add(conn, emitted)
        return outcome, rows

    async def _dead_letter(self, msg: Msg, error: str) -> None:
        log.error("message dead-lettered", consumer=self._spec.name, error=error)
        sequence = None
        with contextlib.suppress(Exception):
            sequence = msg.metadata.sequence.stream
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO dead_letters (consumer, subject, stream_sequence, payload, error) "
                "VALUES ($1, $2, $3, $4, $5)",
                self._spec.name,
                msg.subject,
                sequence,
                msg.data,
                error,
            )
        await msg.term()
        EVENTS_APPLIED.labels(self._spec.name, "dead_letter").inc()
