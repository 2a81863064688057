"""The one message loop on real JetStream: bounded redelivery, dead letters, supervision,
readiness."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence

import asyncpg
import pytest
from prometheus_client import REGISTRY

from marketbot.contracts import MessageDeadLettered, SignalReceived, decode
from marketbot.runtime.bus import Bus
from marketbot.runtime.consumer import ExactlyOnceConsumer
from marketbot.runtime.db import Conn, migrate_service
from marketbot.runtime.health import HealthServer
from marketbot.runtime.loop import ConsumerSpec, Delivery, MessageLoop, Redelivery
from marketbot.runtime.testing import eventually

from .helpers import signal
from .test_jetstream import DEMO

FAST = Redelivery(max_deliver=3, backoff_s=(0.05, 0.1))


async def dead_letters(bus: Bus) -> list[MessageDeadLettered]:
    name = bus.stream("DEAD_LETTERS")
    info = await bus.js.stream_info(name)
    found: list[MessageDeadLettered] = []
    if not info.state.messages:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = decode((await bus.js.get_msg(name, seq)).data or b"")
        assert isinstance(message, MessageDeadLettered)
        found.append(message)
    return found


async def settled(bus: Bus, durable: str) -> bool:
    info = await bus.js.consumer_info(bus.stream("SIGNALS"), bus.namespace.durable(durable))
    return not info.num_pending and not info.num_ack_pending


def spec(name: str, **overrides: object) -> ConsumerSpec:
    fields: dict[str, object] = {"batch": 8, "fetch_timeout": 0.2, "redelivery": FAST}
    fields.update(overrides)
    return ConsumerSpec(name, "SIGNALS", ("signals.>",), **fields)  # type: ignore[arg-type]


async def test_a_poison_message_is_dead_lettered_after_its_last_delivery_with_its_history(
    bus: Bus,
) -> None:
    poison = signal().model_copy(update={"symbol": "ETHUSDT"})
    healthy = signal()
    attempts: list[int] = []
    handled: list[str] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        for d in batch:
            assert isinstance(d.message, SignalReceived)
            if d.message.symbol == "ETHUSDT":
                attempts.append(d.delivered)
                d.retry(RuntimeError("the database is gone"))
            else:
                handled.append(d.message.symbol)

    loop = MessageLoop(bus, spec("poison"), handler)
    await loop.start()
    try:
        await bus.publish(poison)
        await bus.publish(healthy)
        (letter,) = await eventually(lambda: dead_letters(bus), timeout=15)
        await eventually(lambda: settled(bus, "poison"), message="nothing left pending")
    finally:
        await loop.stop()
    assert attempts == [1, 2, 3]  # max_deliver, never more
    assert handled == ["BTCUSDT"]  # the healthy message was not held back
    assert letter.consumer == "poison"
    assert letter.source_stream == "SIGNALS"
    assert letter.source_subject == "signals.received"
    assert letter.message_id == str(poison.event_id)
    assert letter.correlation_id == poison.correlation_id
    assert not letter.permanent
    assert letter.deliveries == 3
    assert [h.delivery for h in letter.history] == [1, 2, 3]
    assert "the database is gone" in letter.reason
    assert decode(letter.payload) == poison


async def test_an_undecodable_message_is_dead_lettered_at_once(bus: Bus) -> None:
    seen: list[Delivery] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        seen.extend(batch)

    loop = MessageLoop(bus, spec("garbage"), handler)
    await loop.start()
    try:
        await bus.publish_raw(bus.subject("signals.received"), b'{"type": "Nope"}', "x1", "x")
        (letter,) = await eventually(lambda: dead_letters(bus), timeout=10)
    finally:
        await loop.stop()
    assert seen == []
    assert letter.permanent
    assert letter.deliveries == 1
    assert "unknown message type" in letter.reason
    assert base64.b64decode(letter.payload_b64) == b'{"type": "Nope"}'


async def test_a_consumer_that_dies_on_every_delivery_is_dead_lettered_by_jetstream(
    bus: Bus,
) -> None:
    """The handler never settles (each replica hangs on it in turn, as a process that dies on
    it would): JetStream stops at max_deliver and the loop dead-letters what it announced."""
    stuck = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> None:
        await stuck.wait()

    hangs = spec("hangs", ack_wait=1.0, redelivery=Redelivery(max_deliver=2))
    replicas = [MessageLoop(bus, hangs, handler) for _ in range(3)]
    for replica in replicas:
        await replica.start()
    try:
        event = signal()
        await bus.publish(event)
        (letter,) = await eventually(lambda: dead_letters(bus), timeout=20)
        assert letter.message_id == str(event.event_id)
        assert "without an outcome" in letter.reason
        assert letter.deliveries == 2
    finally:
        stuck.set()
        for replica in replicas:
            await replica.stop()


async def test_a_crashing_loop_is_restarted_and_readiness_shows_it(bus: Bus) -> None:
    health = HealthServer()
    health.add_checks(lambda: {f"consumer:{x.name}": x.ready() for x in bus.loops})
    handled: list[str] = []
    failing = True

    async def handler(batch: Sequence[Delivery]) -> None:
        handled.extend(str(d.message_id) for d in batch)

    loop = MessageLoop(bus, spec("crashy"), handler)
    drive = loop._drive

    async def sometimes_broken() -> None:
        if failing:
            raise ConnectionError("the subscription broke")
        await drive()

    loop._drive = sometimes_broken  # type: ignore[method-assign]

    def restarts() -> float:
        sample = {"consumer": "crashy"}
        return REGISTRY.get_sample_value("marketbot_consumer_restarts_total", sample) or 0.0

    before = restarts()
    await loop.start()
    try:
        await eventually(lambda: restarts() >= before + 2, message="the supervisor restarts it")
        assert await health.readiness() == {"consumer:crashy": False}
        failing = False
        await eventually(lambda: loop.ready(), timeout=15, message="the loop came back")
        event = signal()
        await bus.publish(event)
        await eventually(lambda: handled == [str(event.event_id)])
        assert (await health.readiness())["consumer:crashy"] is True
    finally:
        await loop.stop()
    assert bus.loops == []  # a stopped loop leaves readiness


async def test_readiness_is_red_while_the_lag_passes_its_bound(bus: Bus) -> None:
    gate = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> None:
        await gate.wait()

    loop = MessageLoop(bus, spec("laggy", batch=1, max_lag=2, lag_poll_s=0.05), handler)
    await loop.start()
    try:
        for _ in range(6):
            await bus.publish(signal())
        await eventually(lambda: loop.lag > 2 and not loop.ready(), message="lagging")
        gate.set()
        await eventually(lambda: loop.lag == 0 and loop.ready(), message="caught up")
    finally:
        gate.set()
        await loop.stop()


async def test_a_database_blip_inside_a_batch_is_retried_not_fatal(
    bus: Bus, pg_pool: asyncpg.Pool, pg_schema: str
) -> None:
    await migrate_service(pg_pool, pg_schema, "demo", DEMO)
    calls = 0

    async def handler(event: object, conn: Conn) -> None:
        nonlocal calls
        calls += 1
        if calls <= 3:  # the batch try and its one-by-one retries fail
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost")
        assert isinstance(event, SignalReceived)
        await conn.execute("INSERT INTO notes (id, body) VALUES ($1, $2)", event.event_id, "x")

    consumer = ExactlyOnceConsumer(bus, pg_pool, spec("blip"), handler)  # type: ignore[arg-type]
    await consumer.start()
    try:
        events = [signal(), signal()]
        for event in events:
            await bus.publish(event)

        async def applied() -> int:
            return int(await pg_pool.fetchval("SELECT count(*) FROM notes"))

        await eventually(applied, timeout=15)
        await eventually(lambda: settled(bus, "blip"), timeout=15)
        assert await applied() == 2
        assert consumer.loop.ready()
    finally:
        await consumer.stop()


def test_the_backoff_schedule_repeats_its_last_delay_and_is_checked() -> None:
    schedule = Redelivery(max_deliver=6, backoff_s=(0.5, 2.0, 10.0))
    assert [schedule.delay(n) for n in range(1, 6)] == [0.5, 2.0, 10.0, 10.0, 10.0]
    with pytest.raises(ValueError, match="max_deliver"):
        Redelivery(max_deliver=0)
    with pytest.raises(ValueError, match="backoff_s"):
        Redelivery(backoff_s=())
    with pytest.raises(ValueError, match="backoff_s"):
        Redelivery(backoff_s=(1.0, -1.0))
