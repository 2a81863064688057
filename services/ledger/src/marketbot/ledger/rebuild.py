"""Rebuild: replay every stream from its first message into fresh tables, publish nothing.

Each stream is read with a throw-away consumer up to the last message present when the
rebuild started. Two ways to apply what is read, which must agree byte for byte:

- ``fold`` (default, fast): the pure domain folds all events in memory
  (``domain.projection``), then the tables are bulk-loaded with COPY;
- ``replay``: the live handlers apply the events in large transactions, as the consumers
  would.

Either way nothing is published: users were notified when the events first happened, so a
rebuild must not notify them again (the live ids are derived, so even a publish would be
de-duplicated within the window, but the rebuild does not rely on it).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import asyncpg
from nats.js.errors import NotFoundError

from marketbot.contracts import Event
from marketbot.contracts.access import LEDGER_REBUILD_CONSUMER
from marketbot.ledger.adapters.bulk import load_projection
from marketbot.ledger.adapters.queries import checksums
from marketbot.ledger.app import CONSUMERS, MIGRATIONS, projection_handler, stream_subjects
from marketbot.ledger.domain.money import MoneyRules
from marketbot.ledger.domain.projection import Projection
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.consumer import Handler
from marketbot.runtime.db import check_identifier, create_pool, migrate_service
from marketbot.runtime.logs import get_logger
from marketbot.runtime.loop import ConsumerSpec, MessageLoop

log = get_logger("marketbot.ledger.rebuild")

Mode = Literal["fold", "replay"]
BatchSink = Callable[[Sequence[Event]], Awaitable[None]]


@dataclass
class RebuildResult:
    schema: str
    mode: Mode = "fold"
    events: int = 0
    skipped: int = 0
    seconds: float = 0.0
    checksums: dict[str, str] = field(default_factory=dict)


async def fresh_schema(database_url: str, schema: str) -> asyncpg.Pool:
    """Drop ``schema`` if it exists, create it with the ledger's tables, return a pool on it."""
    check_identifier(schema)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
    pool = await create_pool(database_url, schema, max_size=2)
    await migrate_service(pool, schema, "ledger", MIGRATIONS)
    return pool


async def read_stream(bus: Bus, stream: str, sink: BatchSink, *, batch: int = 1000) -> int:
    """Hand every decodable event of ``stream`` (from the start) to ``sink``; returns skips.

    Read through the runtime's ``MessageLoop`` on a throw-away durable consumer, up to the
    last message present now; an undecodable message is skipped (the live consumer
    dead-lettered it), a failing ``sink`` raises.
    """
    stream_name = bus.stream(stream)
    last = (await bus.js.stream_info(stream_name)).state.last_seq
    if not last:
        return 0
    # One fixed name (marketbot.contracts.access): the ledger's credential may read and ack
    # only consumers it owns by name. A leftover from an interrupted rebuild is replaced.
    name = bus.namespace.durable(LEDGER_REBUILD_CONSUMER)
    with contextlib.suppress(NotFoundError):
        await bus.js.delete_consumer(stream_name, name)
    spec = ConsumerSpec(
        LEDGER_REBUILD_CONSUMER,
        stream,
        stream_subjects(stream),
        batch=batch,
        ack_wait=300.0,
        max_ack_pending=batch * 2,
        max_lag=None,
    )
    loop = MessageLoop(bus, spec, dead_letters=False)
    await loop.bind()
    try:
        while loop.last_sequence < last:
            deliveries = await loop.fetch(batch, timeout=2.0)
            if not loop.fetched:
                break  # nothing more to read (the stream ends below ``last``: deletions)
            await sink([d.event for d in deliveries])
            for delivery in deliveries:
                delivery.ack()
            await loop.settle(deliveries)
    finally:
        await loop.stop()
        with contextlib.suppress(NotFoundError):
            await bus.js.delete_consumer(stream_name, name)
    return loop.skipped


async def rebuild(
    bus: Bus,
    database_url: str,
    schema: str,
    rules: MoneyRules,
    *,
    mode: Mode = "fold",
    clock: Clock | None = None,
) -> RebuildResult:
    """Replay every ledger input stream into ``schema`` (dropped and re-created first)."""
    started = time.perf_counter()
    result = RebuildResult(schema, mode)
    pool = await fresh_schema(database_url, schema)
    projection = Projection(rules)
    processed: dict[tuple[str, uuid.UUID], None] = {}
    try:
        for spec in CONSUMERS:
            handler = projection_handler(spec.name, rules, clock or SystemClock(), emit=False)

            async def fold_batch(events: Sequence[Event], consumer: str = spec.name) -> None:
                for event in events:
                    key = (consumer, event.event_id)
                    if key not in processed:
                        processed[key] = None
                        projection.apply(event)
                        result.events += 1

            async def replay_batch(
                events: Sequence[Event], consumer: str = spec.name, apply: Handler = handler
            ) -> None:
                async with pool.acquire() as conn, conn.transaction():
                    for event in events:
                        first = await conn.fetchval(
                            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
                            "ON CONFLICT DO NOTHING RETURNING true",
                            consumer,
                            event.event_id,
                        )
                        if first:
                            await apply(event, conn)
                            result.events += 1

            result.skipped += await read_stream(
                bus, spec.stream, fold_batch if mode == "fold" else replay_batch
            )
            log.info("stream replayed", stream=spec.stream, events=result.events)
        async with pool.acquire() as conn:
            if mode == "fold":
                async with conn.transaction():
                    await load_projection(conn, projection, processed)
            result.checksums = await checksums(conn)
    finally:
        await pool.close()
    result.seconds = time.perf_counter() - started
    return result
