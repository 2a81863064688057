"""Exactly-once effects over at-least-once delivery (blueprint rule 3), and the outbox.

``ExactlyOnceConsumer`` runs on the runtime's ``MessageLoop`` (fetching, decoding, bounded
redelivery with backoff, dead letters and supervision live there) and, for each message, in
one PostgreSQL transaction: records ``(consumer, event_id)`` in ``processed_events`` (a second
delivery finds it and skips the handler), runs the handler, and stores any events the handler
emits in ``outbox``. Only after commit does it publish the outbox rows (by event id, so
JetStream de-duplicates a retry) and ack the message. A crash at any point leaves either
nothing done (redelivered, applied once) or the effect committed (redelivered, skipped, and
the outbox re-published by ``Outbox.relay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from prometheus_client import Counter, Histogram

from marketbot.contracts import Event
from marketbot.runtime.bus import Bus, BusError
from marketbot.runtime.db import Conn
from marketbot.runtime.logs import correlation, get_logger
from marketbot.runtime.loop import (
    CONSUMER_LAG,
    ConsumerSpec,
    Delivery,
    MessageLoop,
    PermanentError,
    Redelivery,
)

log = get_logger("marketbot.consumer")

Handler = Callable[[Event, Conn], Awaitable[Sequence[Event] | None]]
BatchHandler = Callable[[Sequence[Event], Conn], Awaitable[Sequence[Event] | None]]
"""A handler for many events at once, in delivery order, in one transaction: its effect and
events must be those of ``Handler`` applied to each in turn (a failed batch is applied one
by one with the single handler)."""

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


@dataclass(frozen=True, slots=True)
class Staged:
    """An outbox row as stored: what publishing it needs, kept in memory."""

    row_id: int
    event_id: uuid.UUID
    subject: str
    event_type: str
    payload: bytes


class Outbox:
    """Events written with the state that caused them, published after commit."""

    def __init__(self, bus: Bus, pool: asyncpg.Pool) -> None:
        self._bus = bus
        self._pool = pool

    @staticmethod
    async def add(conn: Conn, events: Iterable[Event]) -> list[int]:
        """Store ``events`` (one statement, whatever their number); the ids of the rows
        inserted, in the events' order (an event already stored is skipped)."""
        return [row.row_id for row in await Outbox.stage(conn, events)]

    @staticmethod
    async def stage(conn: Conn, events: Iterable[Event]) -> list[Staged]:
        """``add``, keeping what was stored: the rows can be published after commit from
        memory (``publish_staged``), without reading them back."""
        events = list(events)
        if not events:
            return []
        payloads = [e.to_json() for e in events]
        if len(events) == 1:
            (event,) = events
            row_id = await conn.fetchval(
                "INSERT INTO outbox (event_id, subject, event_type, payload) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING RETURNING id",
                event.event_id,
                event.subject(),
                event.type,
                payloads[0],
            )
            if row_id is None:
                return []
            return [Staged(row_id, event.event_id, event.subject(), event.type, payloads[0])]
        # WITH ORDINALITY + ORDER BY: the ids are drawn in the events' order.
        inserted = await conn.fetch(
            "INSERT INTO outbox (event_id, subject, event_type, payload) "
            "SELECT e, s, t, p FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[]) "
            "WITH ORDINALITY AS u(e, s, t, p, n) ORDER BY n "
            "ON CONFLICT (event_id) DO NOTHING RETURNING id, event_id",
            [e.event_id for e in events],
            [e.subject() for e in events],
            [e.type for e in events],
            payloads,
        )
        ids = {r["event_id"]: r["id"] for r in inserted}
        return [
            Staged(ids[e.event_id], e.event_id, e.subject(), e.type, payload)
            for e, payload in zip(events, payloads, strict=True)
            if e.event_id in ids
        ]

    async def publish_staged(self, staged: Sequence[Staged]) -> None:
        """Publish committed rows from memory (in order, pipelined) and delete them once
        JetStream has every one; a failure is logged, never raised: the rows stay, and
        the relay publishes them (by event id, so JetStream de-duplicates a re-publish)."""
        if not staged:
            return
        try:
            await asyncio.gather(
                *(
                    self._bus.publish_raw(
                        self._bus.subject(row.subject),
                        row.payload,
                        str(row.event_id),
                        row.event_type,
                    )
                    for row in staged
                )
            )
            async with self._pool.acquire() as conn:
                await conn.execute(
                    "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r.row_id for r in staged]
                )
        except (BusError, OSError, asyncpg.PostgresError) as exc:
            log.warning("event publish deferred to the outbox relay", error=str(exc))

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


class ExactlyOnceConsumer:
    """A durable consumer whose handler's effect and emitted events commit with the event id."""

    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        spec: ConsumerSpec,
        handler: Handler,
        *,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        self._bus = bus
        self._pool = pool
        self._spec = spec
        self._handler = handler
        self._batch_handler = batch_handler
        self._outbox = Outbox(bus, pool)
        self.loop = MessageLoop(bus, spec, self.handle_batch)

    @property
    def name(self) -> str:
        return self._spec.name

    async def start(self) -> None:
        await self._outbox.relay()
        await self.loop.start()

    async def stop(self) -> None:
        """Finish the batch in hand (each message is acked or left for redelivery), then stop."""
        await self.loop.stop()

    async def handle_batch(self, batch: Sequence[Delivery]) -> None:
        """Apply a fetched batch in one transaction (one commit for many events).

        If anything in the batch fails, the transaction rolls back as a whole and each message
        is processed on its own, so one bad message never holds the others back.
        """
        if len(batch) == 1:
            await self.apply_one(batch[0])
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            outcomes, staged = await self._apply_all([d.event for d in batch])
        except Exception as exc:
            log.info("batch failed; applying one by one", consumer=self.name, error=repr(exc))
            for delivery in batch:
                await self.apply_one(delivery)
            return
        # Committed: published from memory; a failed publish is left to the relay.
        await self._outbox.publish_staged(staged)
        for delivery, outcome in zip(batch, outcomes, strict=True):
            delivery.ack()
            EVENTS_APPLIED.labels(self.name, outcome).inc()
        APPLY_SECONDS.labels(self.name).observe((loop.time() - started) / len(batch))

    async def _apply_all(self, events: Sequence[Event]) -> tuple[list[str], list[Staged]]:
        outcomes: list[str] = []
        emitted: list[Event] = []
        async with self._pool.acquire() as conn, conn.transaction():
            # The whole batch is marked processed in one statement (one round trip, not one
            # per event); an event already processed, or a second copy in the batch, is a
            # duplicate.
            first = set(
                await conn.fetchval(
                    "WITH new AS (INSERT INTO processed_events (consumer, event_id) "
                    "SELECT $1, e FROM unnest($2::uuid[]) AS e ON CONFLICT DO NOTHING "
                    "RETURNING event_id) SELECT coalesce(array_agg(event_id), '{}') FROM new",
                    self._spec.name,
                    [event.event_id for event in events],
                )
            )
            fresh: list[Event] = []
            for event in events:
                if event.event_id not in first:
                    outcomes.append("duplicate")
                    continue
                first.discard(event.event_id)
                fresh.append(event)
                outcomes.append("applied")
            if self._batch_handler is not None:
                if fresh:
                    emitted.extend((await self._batch_handler(fresh, conn)) or ())
            else:
                for event in fresh:
                    with correlation(event.correlation_id, event_type=event.type):
                        emitted.extend((await self._handler(event, conn)) or ())
            # The batch's events in one statement, kept in memory to publish after commit.
            staged = await Outbox.stage(conn, emitted)
        return outcomes, staged

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

    async def apply_one(self, delivery: Delivery) -> None:
        """Apply one message exactly once; it is acked only after the effect is committed."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        event = delivery.event
        with correlation(event.correlation_id, event_type=event.type, consumer=self.name):
            try:
                outcome, outbox_rows = await self._apply(event)
            except PermanentError as exc:
                delivery.reject(str(exc))
                return
            except Exception as exc:
                log.warning("apply failed", error=repr(exc), message_id=str(event.event_id))
                EVENTS_APPLIED.labels(self.name, "retry").inc()
                delivery.retry(exc)
                return
            # Committed: a failed publish is left to the relay; acking is still right.
            await self._outbox.publish_staged(outbox_rows)
            delivery.ack()
            EVENTS_APPLIED.labels(self.name, outcome).inc()
            APPLY_SECONDS.labels(self.name).observe(loop.time() - started)

    async def _apply(self, event: Event) -> tuple[str, list[Staged]]:
        async with self._pool.acquire() as conn, conn.transaction():
            outcome, emitted = await self._apply_in(conn, event)
            staged = await Outbox.stage(conn, emitted)
        return outcome, staged


__all__ = [
    "CONSUMER_LAG",
    "BatchHandler",
    "ConsumerSpec",
    "Delivery",
    "ExactlyOnceConsumer",
    "Handler",
    "MessageLoop",
    "Outbox",
    "PermanentError",
    "Redelivery",
    "Staged",
]
