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
from marketbot.exchanges.factory import VenueSettings, create_user_streams, create_venue
from marketbot.exchanges.http import HttpSettings
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.streams import StreamSettings
from marketbot.exchanges.venue import Venue
from marketbot.execution.engine import EngineConfig, ExecutionEngine
from marketbot.execution.placement import ExecutionConfig, OrderExecutor, SignerFactory
from marketbot.execution.reconcile import Reconciler
from marketbot.execution.repository import MIGRATIONS
from marketbot.execution.settings import ExecutorSettings
from marketbot.execution.streamfeed import FeedConfig, StreamFeed, StreamsFactory
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


def vault_signers(bus: Bus, *, send_timeout_s: float = 15.0, batch_max: int = 0) -> SignerFactory:
    """Signers that ask the key vault over NATS (``marketbot.keyvault.client.VaultSigner``).

    ``send_timeout_s`` bounds a request the vault sends itself (its HTTP included); with
    ``batch_max`` > 0 the sign requests of concurrent orders go to the vault in batches of
    at most that many (``SignBatcher``: one NATS request per event-loop tick)."""
    module = importlib.import_module("marketbot.keyvault.client")
    vault_signer = cast(Callable[..., Signer], module.VaultSigner)
    batcher = module.SignBatcher(bus, max_items=batch_max) if batch_max > 0 else None
    cache: dict[tuple[str, Exchange], Signer] = {}

    def factory(user_id: str, exchange: Exchange) -> Signer:
        key = (user_id, exchange)
        signer = cache.get(key)
        if signer is None:
            signer = cache[key] = vault_signer(
                bus, user_id, exchange, send_timeout=send_timeout_s, batcher=batcher
            )
        return signer

    return factory


def feed_config(settings: ExecutorSettings) -> FeedConfig:
    return FeedConfig(
        fill_grace_s=settings.stream_fill_grace_s,
        leg_grace_s=settings.stream_leg_grace_s,
        stale_order_s=settings.stream_stale_order_s,
        follow_lease_s=settings.stream_follow_lease_s,
        lease_renew_s=settings.stream_lease_renew_s,
        snapshot_max_age_s=settings.balance_snapshot_max_age_s,
    )


def user_streams(settings: ExecutorSettings, venue: Venue) -> StreamsFactory:
    """The exchange's streams for this executor (``settings.exchange_url``'s hosts, or the
    simulator's port), labelled with this replica and its egress IP."""
    http = getattr(venue, "http", None)
    base = str(getattr(http, "base_url", settings.exchange_url))
    # Stream requests that weigh share the venue's per-IP budget (Binance's WS API).
    spend = getattr(http, "spend_weight", None)

    def factory(**kwargs: Any) -> Any:
        return create_user_streams(
            venue.exchange,
            base,
            settings=StreamSettings(
                ping_interval_s=settings.stream_ping_interval_s,
                pong_timeout_s=settings.stream_pong_timeout_s,
                reply_timeout_s=settings.stream_pong_timeout_s,
            ),
            replica=settings.stream_replica or settings.service_name,
            egress_ip=settings.stream_egress_ip,
            source_ips=settings.source_ips,
            offset_ms=lambda: venue.clock_offset_ms,
            spend=spend,
            # the documented connection limit scales with the HTTP limits (a simulator run)
            limit_scale=settings.rate_limit_scale,
            **kwargs,
        )

    return factory


@dataclass
class RunningExecutor:
    executor: OrderExecutor
    engine: ExecutionEngine
    tracker: PositionTracker
    outbox: Outbox
    reconciler: Reconciler
    feed: StreamFeed | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def stop(self) -> None:
        await self.engine.stop()
        if self.feed is not None:
            await self.feed.stop()
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
    streams: StreamsFactory | None = None,
) -> RunningExecutor:
    """Start consuming, tracking and relaying on an already-migrated pool.

    With ``settings.private_streams`` the private streams drive the lifecycle
    (``streams``: how to open them; default: the venue's own URL)."""
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
    feed: StreamFeed | None = None
    if settings.private_streams:
        feed = StreamFeed(
            executor, streams or user_streams(settings, venue), config=feed_config(settings)
        )
        executor.balances = feed.balances
        executor.follow = feed.follow
        executor.streamed = feed.live
        await feed.start()
    engine = ExecutionEngine(bus, executor, engine_config(settings))
    tracker = PositionTracker(
        executor, batch=settings.track_batch, concurrency=settings.track_concurrency, feed=feed
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
    return RunningExecutor(executor, engine, tracker, outbox, reconciler, feed, tasks)


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
            signers=(
                # a request the vault sends waits for its HTTP answer: the read timeout,
                # plus the vault's and the bus's own time
                vault_signers(
                    ctx.bus,
                    send_timeout_s=settings.http_read_timeout_s + 2.0,
                    batch_max=settings.sign_batch_max,
                )
                if signers is vault_signers
                else signers(ctx.bus)
            ),
            settings=settings,
            clock=ctx.clock,
        )
        ctx.on_shutdown(running.stop)

    run_service(settings, setup, migrations=MIGRATIONS)
