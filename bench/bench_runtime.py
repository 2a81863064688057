"""Events/s through our publish + exactly-once consume helpers, next to raw nats-py.

Both sides run on the same JetStream server in the same run, with the same concurrency:
- raw: ``js.publish`` with an ack per message, then a pull consumer fetching and acking;
- ours: ``Bus.publish`` (Nats-Msg-Id), then ``ExactlyOnceConsumer`` recording each event id
  in PostgreSQL in the same transaction as a one-row effect, acking after commit.
The figure is the median of three rounds.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import nats
from nats.errors import TimeoutError as NatsTimeoutError

from marketbot.contracts import BusNamespace, Event, SignalAction, SignalReceived
from marketbot.runtime.bus import Bus
from marketbot.runtime.consumer import ConsumerSpec, ExactlyOnceConsumer
from marketbot.runtime.db import create_pool, migrate_service
from marketbot.runtime.infra import start_infra

N = 3000
CONCURRENCY = 64
ROUNDS = 3
NOW = datetime(2026, 11, 24, tzinfo=UTC)


def make_event() -> SignalReceived:
    sid = uuid.uuid4()
    return SignalReceived(
        event_id=sid,
        occurred_at=NOW,
        correlation_id=str(sid),
        signal_id=sid,
        source="bench",
        symbol="BTCUSDT",
        action=SignalAction.BUY,
        price="95000",
        received_at=NOW,
    )


async def gather_bounded(coros: list, limit: int) -> None:  # type: ignore[type-arg]
    sem = asyncio.Semaphore(limit)

    async def one(c):  # type: ignore[no-untyped-def]
        async with sem:
            await c

    await asyncio.gather(*(one(c) for c in coros))


async def raw_round(nats_url: str) -> float:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    name = f"RAW{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    payloads = [make_event().to_json() for _ in range(N)]
    started = time.perf_counter()
    await gather_bounded([js.publish(f"{name}.e", p) for p in payloads], CONCURRENCY)
    sub = await js.pull_subscribe(f"{name}.>", durable="raw")
    done = 0
    while done < N:
        try:
            msgs = await sub.fetch(256, timeout=1)
        except NatsTimeoutError:
            continue
        for m in msgs:
            await m.ack()
        done += len(msgs)
    elapsed = time.perf_counter() - started
    await js.delete_stream(name)
    await nc.close()
    return N / elapsed


async def ours_round(nats_url: str, database_url: str) -> float:
    namespace = BusNamespace(f"b{uuid.uuid4().hex[:8]}")
    bus = await Bus.connect(nats_url, "bench", namespace)
    await bus.provision()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, schema, max_size=4)
    migrations = Path(tempfile.mkdtemp())
    (migrations / "0001_effects.sql").write_text("CREATE TABLE effects (id uuid PRIMARY KEY);")
    await migrate_service(pool, schema, "bench", migrations)
    applied = 0
    finished = asyncio.Event()

    async def handler(event: Event, conn: asyncpg.Connection) -> list[Event]:
        nonlocal applied
        await conn.execute("INSERT INTO effects (id) VALUES ($1)", event.event_id)
        applied += 1
        if applied == N:
            finished.set()
        return []

    consumer = ExactlyOnceConsumer(
        bus, pool, ConsumerSpec("bench", "SIGNALS", ("signals.>",), batch=256), handler
    )
    events = [make_event() for _ in range(N)]
    started = time.perf_counter()
    await gather_bounded([bus.publish(e) for e in events], CONCURRENCY)
    await consumer.start()
    await asyncio.wait_for(finished.wait(), timeout=300)
    elapsed = time.perf_counter() - started
    await consumer.stop()
    for spec in namespace.streams():
        await bus.js.delete_stream(spec.name)
    await bus.close()
    await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await pool.close()
    return N / elapsed


async def run() -> list[dict]:  # type: ignore[type-arg]
    nats_url = os.environ["NATS_URL"]
    database_url = os.environ["DATABASE_URL"]
    raw = statistics.median([await raw_round(nats_url) for _ in range(ROUNDS)])
    ours = statistics.median([await ours_round(nats_url, database_url) for _ in range(ROUNDS)])
    return [
        {
            "name": "bus: raw nats-py publish+ack, then fetch+ack",
            "value": raw,
            "unit": "events/s",
            "baseline": f"{N} msgs, {CONCURRENCY} in flight",
            "ratio": 1.0,
        },
        {
            "name": "bus: Bus.publish + ExactlyOnceConsumer (one PostgreSQL tx per fetched batch)",
            "value": ours,
            "unit": "events/s",
            "baseline": "raw nats-py above, same server",
            "ratio": ours / raw,
        },
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        infra = start_infra(Path(tmp), auth_prefix="*")
        os.environ.setdefault("NATS_URL", infra.nats_url)
        os.environ.setdefault("DATABASE_URL", infra.database_url)
        try:
            for row in asyncio.run(run()):
                print(row)
        finally:
            infra.stop()
