"""Composition: settings -> venue + signers -> executor, engine, tracker, outbox relay.

``run_executor(exchange, settings)`` is the whole process of one executor service;
``start_executor`` wires the same pieces onto an existing bus and pool (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg

from marketbot.contracts import Exchange
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import HttpSettings
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.venue import Venue
from marketbot.execution.engine import EngineConfig, ExecutionEngine
from marketbot.execution.placement import ExecutionConfig, OrderExecutor, SignerFactory
from marketbot.execution.reconcile import Reconciler
from marketbot.execution.repository import MIGRATIONS
from marketbot.execution.settings import ExecutorSettings
from marketbot.execution.tracker import PositionTracker
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.consumer import Outbox
from marketbot.runtime.loop import Redelivery
from marketbot.runtime.service import ServiceContext, run_service


def execution_config(settings: ExecutorSettings) -> ExecutionConfig:
    return ExecutionConfig(
        max_request_age_s=settings.max_request_age_s,
        unknown_settle_s=settings.unknown_settle_s,
        unknown_poll_s=settings.unknown_poll_s,
        retry_backoff_s=settings.retry_backoff_s,
        send_timeout_s=settings.http_read_timeout_s,
        reconcile_poll_s=settings.reconcile_poll_s,
        lease_s=settings.order_lease_s,
        max_slippage_percent=settings.max_slippage_percent,
        protect_settle_s=settings.protect_settle_s,
        track_interval_s=settings.track_interval_s,
        track_max_interval_s=settings.track_max_interval_s,
    )


def engine_config(settings: ExecutorSettings) -> EngineConfig:
    return EngineConfig(
        tier_concurrency=settings.tier_concurrency,
        fetch_batch=settings.fetch_batch,
        ack_wait_s=settings.ack_wait_s,
        idle_poll_s=settings.idle_poll_s,
        tiers=settings.plans.order(),
        redelivery=Redelivery(
            max_deliver=settings.max_deliver, backoff_s=tuple(settings.redelivery_backoff_s)
        ),
    )


def venue_settings(settings: ExecutorSettings) -> VenueSettings:
    return VenueSettings(
        http=HttpSettings(
            rate_limit_safety=settings.rate_limit_safety,
            rate_limit_scale=settings.rate_limit_scale,
            max_connections=settings.http_max_connections,
            max_keepalive_connections=settings.http_max_connections,
            connect_timeout_s=settings.http_connect_timeout_s,
            read_timeout_s=settings.http_read_timeout_s,
            write_timeout_s=settings.http_write_timeout_s,
            pool_timeout_s=settings.http_pool_timeout_s,
            limits_refresh_s=settings.rate_limits_refresh_s,
        )
    )


def vault_signers(bus: Bus) -> SignerFactory:
    """Signers that ask the key vault over NATS (``marketbot.keyvault.client.VaultSigner``)."""
    module = importlib.import_module("marketbot.keyvault.client")
    vault_signer = cast(Callable[[Bus, str, Exchange], Signer], module.VaultSigner)
    cache: dict[tuple[str, Exchange], Signer] = {}

    def factory(user_id: str, exchange: Exchange) -> Signer:
        key = (user_id, exchange)
        signer = cache.get(key)
        if signer is None:
            signer = cache[key] = vault_signer(bus, user_id, exchange)
        return signer

    return factory


@dataclass
class RunningExecutor:
    executor: OrderExecutor
    engine: ExecutionEngine
    tracker: PositionTracker
    outbox: Outbox
    reconciler: Reconciler
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def stop(self) -> None:
        await self.engine.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()


async def start_executor(
    *,
    bus: Bus,
    pool: asyncpg.Pool,
    venue: Venue,
    signers: SignerFactory,
    settings: ExecutorSettings,
    clock: Clock | None = None,
    owner: str | None = None,
) -> RunningExecutor:
    """Start consuming, tracking and relaying on an already-migrated pool."""
    outbox = Outbox(bus, pool)
    await outbox.relay()
    executor = OrderExecutor(
        venue=venue,
        signers=signers,
        pool=pool,
        outbox=outbox,
        clock=clock or SystemClock(),
        sizing=settings.sizing_rules(),
        config=execution_config(settings),
        owner=owner,
    )
    engine = ExecutionEngine(bus, executor, engine_config(settings))
    tracker = PositionTracker(
        executor, batch=settings.track_batch, concurrency=settings.track_concurrency
    )
    reconciler = Reconciler(
        executor, batch=settings.reconcile_batch, concurrency=settings.reconcile_concurrency
    )
    await engine.start()
    relay_stop = executor.stopping
    tasks = [
        asyncio.create_task(tracker.run(min(settings.track_interval_s, 1.0)), name="tracker"),
        asyncio.create_task(reconciler.run(settings.reconcile_interval_s), name="reconciler"),
        asyncio.create_task(
            outbox.run_relay(settings.outbox_relay_s, relay_stop), name="outbox-relay"
        ),
    ]
    return RunningExecutor(executor, engine, tracker, outbox, reconciler, tasks)


def run_executor(
    exchange: Exchange,
    settings: ExecutorSettings,
    *,
    signers: Callable[[Bus], SignerFactory] = vault_signers,
) -> None:
    """The process of one executor service: the shared engine wired to ``exchange``."""

    async def setup(ctx: ServiceContext) -> None:
        venue = create_venue(
            exchange, settings.exchange_url, clock=ctx.clock, settings=venue_settings(settings)
        )
        ctx.on_shutdown(venue.aclose)
        running = await start_executor(
            bus=ctx.bus,
            pool=ctx.require_pool(),
            venue=venue,
            signers=signers(ctx.bus),
            settings=settings,
            clock=ctx.clock,
        )
        ctx.on_shutdown(running.stop)

    run_service(settings, setup, migrations=MIGRATIONS)
