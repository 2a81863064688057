"""The life of a service process: start, serve, drain on SIGTERM/SIGINT, stop.

A service provides ``setup(ctx)``: it starts its consumers, responders and servers and
registers what must be stopped with ``ctx.on_shutdown``. The runner owns the rest: logging,
the bus (streams provisioned), the database pool (migrations applied), the health server,
and a graceful shutdown that stops intake first, then drains NATS, then closes the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import uvloop

from marketbot.contracts import STREAMS
from marketbot.contracts.access import GRANTS
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.consumer import Outbox
from marketbot.runtime.db import create_pool, migrate_service
from marketbot.runtime.health import HealthServer
from marketbot.runtime.logs import configure_logging, get_logger
from marketbot.runtime.settings import ServiceSettings

log = get_logger("marketbot.service")

Closer = Callable[[], Awaitable[None]]


@dataclass
class ServiceContext:
    settings: ServiceSettings
    bus: Bus
    health: HealthServer
    clock: Clock
    pool: asyncpg.Pool | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _closers: list[Closer] = field(default_factory=list)

    def on_shutdown(self, closer: Closer) -> None:
        """Register a coroutine function to call at shutdown (last registered runs first)."""
        self._closers.append(closer)

    def require_pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("this service was started without a database")
        return self.pool


async def open_context(
    settings: ServiceSettings,
    *,
    migrations: Path | None = None,
    clock: Clock | None = None,
) -> ServiceContext:
    """Connect everything a service needs; with ``migrations`` it also gets its schema."""
    bus = await Bus.connect(
        settings.nats_url,
        settings.service_name,
        settings.namespace,
        credentials=settings.nats_credentials,
    )
    if settings.provision_streams:
        await bus.provision(settings.stream_replicas)
    else:
        # Services cannot create streams (marketbot.contracts.access): the operator does.
        grant = GRANTS.get(settings.service_name)
        await bus.wait_for_streams(grant.streams if grant else [s.name for s in STREAMS])
    pool = None
    if migrations is not None:
        pool = await create_pool(settings.database_url, settings.schema_name)
        await migrate_service(pool, settings.schema_name, settings.service_name, migrations)
    health = HealthServer(settings.http_host, settings.metrics_port)
    health.add_check("nats", lambda: bus.nc.is_connected)
    # Every consumer loop started on this bus: red while it is down or lags past its bound.
    health.add_checks(lambda: {f"consumer:{loop.name}": loop.ready() for loop in bus.loops})
    if pool is not None:
        db = pool

        async def database_ready() -> bool:
            return bool(await db.fetchval("SELECT true"))

        health.add_check("database", database_ready)
    await health.start()
    ctx = ServiceContext(settings, bus, health, clock or SystemClock(), pool)
    if pool is not None:
        # One relay per process publishes whatever a failed post-commit publish (or a crash)
        # left in the service's outbox.
        relay = asyncio.create_task(
            Outbox(bus, pool).run_relay(stop=ctx.stopping), name="outbox-relay"
        )

        async def stop_relay() -> None:
            ctx.stopping.set()
            with contextlib.suppress(Exception):
                await relay

        ctx.on_shutdown(stop_relay)
    return ctx


async def close_context(ctx: ServiceContext) -> None:
    ctx.stopping.set()
    for closer in reversed(ctx._closers):
        try:
            await closer()
        except Exception:
            log.exception("shutdown step failed")
    await ctx.bus.close()
    if ctx.pool is not None:
        await ctx.pool.close()
    await ctx.health.stop()


async def serve(
    settings: ServiceSettings,
    setup: Callable[[ServiceContext], Awaitable[None]],
    *,
    migrations: Path | None = None,
) -> None:
    configure_logging(settings.service_name, settings.log_level)
    # Collections are a service's largest avoidable cost: with Python's default thresholds
    # (700, 10, 10) the executor spent 41 % of its CPU in the collector under load, most of
    # it in full collections over every long-lived object (connections, caches, modules).
    # A collection is due only after many more allocations, and what is alive once the
    # service has started is kept out of every later scan (gc.freeze; a cycle among those
    # objects would then never be freed, and they live as long as the process anyway).
    gc.set_threshold(*settings.gc_thresholds)
    ctx = await open_context(settings, migrations=migrations)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, ctx.stopping.set)
    try:
        await setup(ctx)
        gc.collect()
        gc.freeze()
        log.info("service started", metrics=f"{ctx.health.url}/metrics")
        await ctx.stopping.wait()
        log.info("service stopping")
    finally:
        await close_context(ctx)
        log.info("service stopped")


def run_service(
    settings: ServiceSettings,
    setup: Callable[[ServiceContext], Awaitable[None]],
    *,
    migrations: Path | None = None,
) -> None:
    """Synchronous entry point for a service's console script."""
    uvloop.run(serve(settings, setup, migrations=migrations))
