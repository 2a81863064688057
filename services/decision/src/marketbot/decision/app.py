"""The composition root: settings -> clients -> providers -> consumers.

``marketbot-decision`` (or ``marketbot-decision serve``) runs the service;
``marketbot-decision rebuild-eligibility`` replays ACCOUNTS and KEYS into a fresh projection
(run it while the service is stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import uvloop
from nats.js.errors import NotFoundError

from marketbot.contracts import DecisionMade, Exchange, MarketContext, SignalReceived
from marketbot.decision import handlers
from marketbot.decision.adapters import repository
from marketbot.decision.adapters.market import MarketContextService
from marketbot.decision.adapters.providers import (
    BtcDominanceProvider,
    ExchangeTickerProvider,
    FearGreedProvider,
    MarketDataProvider,
    ReaderSettings,
    Top100Provider,
)
from marketbot.decision.adapters.publisher import BatchPublisher
from marketbot.decision.handlers import FanoutResult
from marketbot.decision.settings import DecisionSettings
from marketbot.decision.subscribers import FanoutConsumer, SignalConsumer
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import HttpSettings
from marketbot.exchanges.retry import RetryPolicy
from marketbot.exchanges.venue import Venue
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import Clock
from marketbot.runtime.consumer import ConsumerSpec, ExactlyOnceConsumer
from marketbot.runtime.db import create_pool, migrate_service
from marketbot.runtime.logs import configure_logging, get_logger
from marketbot.runtime.service import ServiceContext, run_service

log = get_logger("marketbot.decision")

MIGRATIONS = Path(__file__).parent / "migrations"

SIGNALS = ConsumerSpec("decision-signals", "SIGNALS", ("signals.received",), batch=16)
FANOUT = ConsumerSpec("decision-fanout", "DECISIONS", ("decisions.made",), batch=1, ack_wait=20)
ACCOUNTS = ConsumerSpec("decision-accounts", "ACCOUNTS", ("accounts.>",), batch=256)
KEYS = ConsumerSpec("decision-keys", "KEYS", ("keys.>",), batch=256)

Closer = Callable[[], Awaitable[None]]


@dataclass
class MarketData:
    service: MarketContextService
    closers: list[Closer] = field(default_factory=list)

    async def aclose(self) -> None:
        for closer in reversed(self.closers):
            with contextlib.suppress(Exception):
                await closer()


def build_market_data(
    settings: DecisionSettings,
    clock: Clock,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    venues: Mapping[Exchange, Venue] | None = None,
) -> MarketData:
    """Every provider with its own client; ``transport``/``venues`` are for tests."""
    closers: list[Closer] = []
    fng_client = httpx.AsyncClient(
        base_url=settings.fear_greed_url,
        transport=transport,
        headers={"Accept": "application/json"},
    )
    cg_headers = {"Accept": "application/json"}
    if settings.coingecko_api_key is not None:
        cg_headers["x-cg-demo-api-key"] = settings.coingecko_api_key.get_secret_value()
    cg_client = httpx.AsyncClient(
        base_url=settings.coingecko_url, transport=transport, headers=cg_headers
    )
    closers += [fng_client.aclose, cg_client.aclose]
    if venues is None:
        venue_settings = VenueSettings(
            http=HttpSettings(
                connect_timeout_s=settings.ticker_timeout_s,
                read_timeout_s=settings.ticker_timeout_s,
                retry=RetryPolicy(max_attempts=2, base_delay_s=0.05, max_delay_s=0.2),
            ),
            market_ttl_s=min(2.0, settings.ticker_ttl_s),
        )
        urls = {Exchange.BYBIT: settings.bybit_url, Exchange.BINANCE: settings.binance_url}
        built = {
            exchange: create_venue(exchange, urls[exchange], clock=clock, settings=venue_settings)
            for exchange in dict.fromkeys(settings.ticker_exchanges)
        }
        closers += [v.aclose for v in built.values()]
        venues = built
    coingecko = ReaderSettings(
        ttl_s=settings.dominance_ttl_s,
        timeout_s=settings.coingecko_timeout_s,
        max_stale_s=settings.coingecko_max_stale_s,
    )
    providers: list[MarketDataProvider] = [
        FearGreedProvider(
            fng_client,
            clock=clock,
            settings=ReaderSettings(
                ttl_s=settings.fear_greed_ttl_s,
                timeout_s=settings.fear_greed_timeout_s,
                max_stale_s=settings.fear_greed_max_stale_s,
            ),
        ),
        BtcDominanceProvider(cg_client, clock=clock, settings=coingecko),
        Top100Provider(
            cg_client,
            clock=clock,
            settings=ReaderSettings(
                ttl_s=settings.top100_ttl_s,
                timeout_s=settings.coingecko_timeout_s,
                max_stale_s=settings.coingecko_max_stale_s,
            ),
        ),
        ExchangeTickerProvider(
            venues,
            settings.ticker_exchanges,
            clock=clock,
            settings=ReaderSettings(
                ttl_s=settings.ticker_ttl_s,
                # every exchange in the order gets its own attempt
                timeout_s=settings.ticker_timeout_s * len(settings.ticker_exchanges) + 0.5,
                max_stale_s=settings.ticker_max_stale_s,
            ),
            venue_timeout_s=settings.ticker_timeout_s,
        ),
    ]
    return MarketData(MarketContextService(providers), closers)


class DecisionService:
    """The four consumers of the service, wired to their handlers."""

    def __init__(
        self,
        settings: DecisionSettings,
        bus: Bus,
        pool: asyncpg.Pool,
        market: MarketContextService,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.pool = pool
        self.market = market
        self.clock = clock
        self.plans = settings.plan_table
        self.publisher = BatchPublisher(bus, ack_timeout_s=settings.fanout_ack_timeout_s)
        signals = ConsumerSpec(
            SIGNALS.name, SIGNALS.stream, SIGNALS.subjects, batch=settings.signal_batch
        )
        fanout = ConsumerSpec(
            FANOUT.name,
            FANOUT.stream,
            FANOUT.subjects,
            batch=1,
            ack_wait=settings.fanout_ack_wait_s,
        )
        self.signals = SignalConsumer(bus, pool, signals, self.prepare)
        self.fanout = FanoutConsumer(bus, fanout, self.fan_out)
        self.accounts = ExactlyOnceConsumer(bus, pool, ACCOUNTS, handlers.on_account_event)
        self.keys = ExactlyOnceConsumer(bus, pool, KEYS, handlers.on_key_event)
        self._resume: asyncio.Task[int] | None = None

    async def context_for(self, signal: SignalReceived) -> MarketContext:
        return await self.market.context_for(signal.symbol, signal.exchange)

    async def prepare(self, signal: SignalReceived) -> DecisionMade:
        return await handlers.prepare_decision(
            signal, self.context_for, self.settings.policy, self.clock
        )

    async def fan_out(self, decision: DecisionMade) -> FanoutResult:
        return await handlers.fan_out(
            decision,
            pool=self.pool,
            publish=self.publisher.publish_all,
            plans=self.plans,
            clock=self.clock,
        )

    async def start(self) -> None:
        # projections first, so a decision sees the users known at start
        for consumer in (self.accounts, self.keys, self.fanout, self.signals):
            await consumer.start()
        self._resume = asyncio.create_task(self.resume_fanouts(), name="resume-fanouts")

    async def resume_fanouts(self) -> int:
        """Finish, right after a restart, the fan-outs a crash interrupted.

        The fan-out is checkpointed in the database (``fanouts`` without ``completed_at``,
        recipients frozen), so the tiers not yet published go out within seconds instead of
        after the decision's redelivery (``fanout_ack_wait_s``); what was published already
        is dropped by JetStream as a duplicate (same request ids). Only fan-outs younger than
        the maximum request age: older ones would be stale anyway and are left to the
        redelivery, whose requests the executors reject ``STALE`` with the reason.
        """
        since = self.clock.now() - timedelta(seconds=self.settings.max_request_age_s)
        resumed = 0
        try:
            for decision in await repository.unfinished_fanouts(self.pool, since):
                result = await self.fan_out(decision)
                resumed += 1
                log.info(
                    "interrupted fan-out resumed",
                    decision_id=str(decision.decision_id),
                    requests=result.requests,
                    duplicates=result.duplicates,
                )
        except Exception as exc:  # the redelivery still finishes it
            log.warning("resuming interrupted fan-outs failed", error=repr(exc))
        return resumed

    async def stop(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resume
            self._resume = None
        for consumer in (self.signals, self.fanout, self.keys, self.accounts):
            await consumer.stop()


async def setup(ctx: ServiceContext) -> None:
    settings = ctx.settings
    assert isinstance(settings, DecisionSettings)
    market = build_market_data(settings, ctx.clock)
    service = DecisionService(settings, ctx.bus, ctx.require_pool(), market.service, ctx.clock)
    ctx.on_shutdown(market.aclose)
    await service.start()
    ctx.on_shutdown(service.stop)


async def rebuild_eligibility(bus: Bus, pool: asyncpg.Pool, *, timeout: float = 300.0) -> int:
    """Replay ACCOUNTS and KEYS from the start into an empty projection; returns users known."""
    for spec in (ACCOUNTS, KEYS):
        with contextlib.suppress(NotFoundError):
            await bus.js.delete_consumer(bus.stream(spec.stream), bus.namespace.durable(spec.name))
    async with pool.acquire() as conn, conn.transaction():
        await repository.reset_projection(conn, [ACCOUNTS.name, KEYS.name])
    consumers = [
        ExactlyOnceConsumer(bus, pool, ACCOUNTS, handlers.on_account_event),
        ExactlyOnceConsumer(bus, pool, KEYS, handlers.on_key_event),
    ]
    for consumer in consumers:
        await consumer.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            infos = [
                await bus.js.consumer_info(bus.stream(s.stream), bus.namespace.durable(s.name))
                for s in (ACCOUNTS, KEYS)
            ]
            if all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the projection did not catch up in time")
            await asyncio.sleep(0.05)
    finally:
        for consumer in consumers:
            await consumer.stop()
    return int(await pool.fetchval("SELECT count(*) FROM users"))


async def _rebuild(settings: DecisionSettings) -> None:
    configure_logging(settings.service_name, settings.log_level)
    bus = await Bus.connect(
        settings.nats_url,
        f"{settings.service_name}-rebuild",
        settings.namespace,
        credentials=settings.nats_credentials,
    )
    if settings.provision_streams:
        await bus.provision(settings.stream_replicas)
    pool = await create_pool(settings.database_url, settings.schema_name)
    try:
        await migrate_service(pool, settings.schema_name, settings.service_name, MIGRATIONS)
        users = await rebuild_eligibility(bus, pool)
        log.info("eligibility projection rebuilt", users=users)
    finally:
        await bus.close()
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="marketbot-decision", description=__doc__)
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "rebuild-eligibility"]
    )
    args = parser.parse_args(argv)
    settings = DecisionSettings()
    if args.command == "rebuild-eligibility":
        uvloop.run(_rebuild(settings))
    else:
        run_service(settings, setup, migrations=MIGRATIONS)


__all__ = ["DecisionService", "build_market_data", "main", "rebuild_eligibility"]
