"""Rebuild: replay every stream from its first message into fresh tables, publish nothing.

The replay reads each stream with a throw-away consumer up to the last message present when
it started, applies the events with the live handlers (same processed-events bookkeeping,
same consumer names) in large transactions, and discards what the handlers would emit: the
users were notified when the events first happened, so a rebuild must not notify them again.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from marketbot.contracts import ContractError, Event, decode
from marketbot.ledger.adapters.queries import checksums
from marketbot.ledger.app import CONSUMERS, MIGRATIONS, projection_handler
from marketbot.ledger.domain.money import MoneyRules
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.db import check_identifier, create_pool, migrate_service
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.ledger.rebuild")


@dataclass
class RebuildResult:
    schema: str
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


async def replay_stream(
    bus: Bus,
    pool: asyncpg.Pool,
    stream: str,
    consumer: str,
    rules: MoneyRules,
    clock: Clock,
    *,
    batch: int = 500,
) -> tuple[int, int]:
    """Apply one stream from its start; returns (events applied, messages skipped)."""
    stream_name = bus.stream(stream)
    last = (await bus.js.stream_info(stream_name)).state.last_seq
    if not last:
        return 0, 0
    name = f"ledger_rebuild_{uuid.uuid4().hex[:12]}"
    await bus.js.add_consumer(
        stream_name,
        ConsumerConfig(
            name=name,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.ALL,
            inactive_threshold=120.0,
            max_ack_pending=-1,
        ),
    )
    handler = projection_handler(consumer, rules, clock, emit=False)
    applied = skipped = 0
    try:
        sub = await bus.js.pull_subscribe_bind(consumer=name, stream=stream_name)
        done = False
        while not done:
            try:
                msgs = await sub.fetch(batch, timeout=2.0)
            except NatsTimeoutError:
                break  # nothing more to read (the stream ended below ``last``: deletions)
            events: list[Event] = []
            for msg in msgs:
                try:
                    event = decode(msg.data)
                except ContractError:
                    skipped += 1
                    continue
                if isinstance(event, Event):
                    events.append(event)
                if msg.metadata.sequence.stream >= last or msg.metadata.num_pending == 0:
                    done = True
            async with pool.acquire() as conn, conn.transaction():
                for event in events:
                    first = await conn.fetchval(
                        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
                        "ON CONFLICT DO NOTHING RETURNING true",
                        consumer,
                        event.event_id,
                    )
                    if first:
                        await handler(event, conn)
                        applied += 1
            if msgs:
                await msgs[-1].ack()
        await sub.unsubscribe()
    finally:
        with contextlib.suppress(NotFoundError):
            await bus.js.delete_consumer(stream_name, name)
    return applied, skipped


async def rebuild(
    bus: Bus,
    database_url: str,
    schema: str,
    rules: MoneyRules,
    *,
    clock: Clock | None = None,
    batch: int = 500,
) -> RebuildResult:
    """Replay every ledger input stream into ``schema`` (dropped and re-created first)."""
    started = time.perf_counter()
    result = RebuildResult(schema)
    pool = await fresh_schema(database_url, schema)
    try:
        for spec in CONSUMERS:
            applied, skipped = await replay_stream(
                bus, pool, spec.stream, spec.name, rules, clock or SystemClock(), batch=batch
            )
            result.events += applied
            result.skipped += skipped
            log.info("stream replayed", stream=spec.stream, events=applied, skipped=skipped)
        async with pool.acquire() as conn:
            result.checksums = await checksums(conn)
    finally:
        await pool.close()
    result.seconds = time.perf_counter() - started
    return result
