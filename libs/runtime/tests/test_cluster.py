"""A three-node JetStream cluster with R3 streams: a node killed -9 mid-stream loses and
duplicates nothing, and the services' comma-separated NATS_URL reaches every node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from marketbot.contracts import BusNamespace, Event, SignalReceived
from marketbot.runtime.bus import Bus, BusError, nats_servers
from marketbot.runtime.cluster import NatsCluster
from marketbot.runtime.consumer import ExactlyOnceConsumer
from marketbot.runtime.db import Conn, migrate_service
from marketbot.runtime.loop import ConsumerSpec, Redelivery
from marketbot.runtime.testing import eventually

from .helpers import signal
from .test_jetstream import DEMO

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]


def test_nats_url_lists_every_server() -> None:
    assert nats_servers("nats://a:4222, nats://b:4222,,nats://c:4222") == [
        "nats://a:4222",
        "nats://b:4222",
        "nats://c:4222",
    ]
    assert nats_servers(["nats://a:4222"]) == ["nats://a:4222"]
    with pytest.raises(ValueError, match="NATS_URL"):
        nats_servers(" , ")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    started = NatsCluster(Path(tmp_path_factory.mktemp("cluster")))
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def cluster_bus(cluster: NatsCluster) -> AsyncIterator[Bus]:
    bus = await Bus.connect(cluster.urls, "cluster-test", BusNamespace("cl"))

    async def provisioned() -> bool:  # the cluster elects its meta leader first
        try:
            await bus.provision(replicas=3)
        except Exception:
            return False
        return True

    await eventually(provisioned, timeout=30, interval=0.5, message="R3 streams created")
    try:
        yield bus
    finally:
        await bus.close()


async def publish_until_stored(bus: Bus, event: Event, *, within_s: float = 60.0) -> None:
    """What every producer does (the gateway answers 503 and TradingView resends; the outbox
    relay retries): publish again, same message id, until JetStream stores it. While the
    cluster elects a new leader a publish can fail; the id makes the retry harmless."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            await bus.publish(event)
            return
        except BusError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_node_killed_mid_stream_loses_and_duplicates_nothing(
    cluster: NatsCluster, cluster_bus: Bus, pg_pool: asyncpg.Pool, pg_schema: str
) -> None:
    bus = cluster_bus
    info = await bus.js.stream_info(bus.stream("SIGNALS"))
    assert info.config.num_replicas == 3
    await migrate_service(pg_pool, pg_schema, "demo", DEMO)

    async def handler(event: Event, conn: Conn) -> None:
        assert isinstance(event, SignalReceived)
        await conn.execute("INSERT INTO notes (id, body) VALUES ($1, $2)", event.event_id, "x")

    spec = ConsumerSpec(
        "cluster-notes",
        "SIGNALS",
        ("signals.>",),
        batch=32,
        fetch_timeout=0.5,
        ack_wait=5.0,
        redelivery=Redelivery(max_deliver=20, backoff_s=(0.2, 0.5, 1.0)),
    )
    consumer = ExactlyOnceConsumer(bus, pg_pool, spec, handler)  # type: ignore[arg-type]
    await consumer.start()
    events = [signal() for _ in range(300)]
    connected = bus.nc.connected_url
    victim = next(
        i
        for i in range(cluster.size)
        if connected and str(cluster.nodes[i].client_port) in str(connected.port)
    )
    try:
        for n, event in enumerate(events):
            if n == 100:
                cluster.kill(victim)  # the node this client talks to, mid-stream
            await publish_until_stored(bus, event)

        async def applied() -> bool:
            count = await pg_pool.fetchval("SELECT count(*) FROM notes")
            return bool(count == len(events))

        await eventually(applied, timeout=60, interval=0.2, message="every event applied")
        rows = await pg_pool.fetch("SELECT id FROM notes")
        assert sorted(r["id"] for r in rows) == sorted(e.event_id for e in events)
        info = await bus.js.stream_info(bus.stream("SIGNALS"))
        assert info.state.messages == len(events)  # nothing stored twice
        print(
            f"\ncluster: node {victim + 1} killed after 100 of {len(events)}; lost 0, duplicated 0"
        )
    finally:
        await consumer.stop()
        await asyncio.to_thread(cluster.restart, victim)
