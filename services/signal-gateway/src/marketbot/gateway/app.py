"""Composition root: settings -> clients -> the FastAPI app; ``main`` runs it under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import uvicorn
from fastapi import FastAPI

from marketbot.gateway.adapters.deadletters import DeadLetters
from marketbot.gateway.adapters.feed import JetStreamFeed
from marketbot.gateway.adapters.marks import MarkPrices
from marketbot.gateway.adapters.repository import Repository
from marketbot.gateway.adapters.services import BusSignalPublisher, LedgerClient, VaultClient
from marketbot.gateway.api import (
    admin,
    auth,
    deadletters,
    operator,
    positions,
    users,
    webhooks,
    ws,
)
from marketbot.gateway.api.context import Gateway, SignalPublisher
from marketbot.gateway.api.errors import install_error_handlers
from marketbot.gateway.api.text import StorableTextMiddleware
from marketbot.gateway.domain.auth import hash_token
from marketbot.gateway.domain.network import IpPolicy
from marketbot.gateway.domain.ratelimit import RateLimiter
from marketbot.gateway.push import Hub
from marketbot.gateway.settings import GatewaySettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.consumer import Outbox
from marketbot.runtime.logs import get_logger
from marketbot.runtime.service import ServiceContext, run_service

log = get_logger("marketbot.gateway")

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class GatewayDeps:
    """What the app is built from; tests pass fakes for any of the optional parts."""

    bus: Bus
    pool: asyncpg.Pool
    clock: Clock = field(default_factory=SystemClock)
    publish_signal: SignalPublisher | None = None
    hub: Hub | None = None
    feed: JetStreamFeed | None = None
    marks: MarkPrices | None = None


def build_gateway(settings: GatewaySettings, deps: GatewayDeps) -> Gateway:
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
    return Gateway(
        settings=settings,
        repo=Repository(deps.pool),
        outbox=Outbox(deps.bus, deps.pool),
        clock=deps.clock,
        publish_signal=deps.publish_signal
        or BusSignalPublisher(deps.bus, settings.publish_budget_seconds),
        vault=VaultClient(deps.bus, settings.request_timeout_seconds, settings.pinned_vault_key()),
        ledger=LedgerClient(deps.bus, settings.request_timeout_seconds),
        hub=deps.hub
        or Hub(settings.ws_ring_size, settings.ws_all_ring_size, settings.ws_queue_size),
        feed=deps.feed,
        ip_policy=IpPolicy.build(
            settings.ip_allowlist_enabled, settings.ip_allowlist, settings.trusted_proxies
        ),
        limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        admin_token_hash=hash_token(admin_token) if admin_token else None,
        static_sources={
            name: hash_token(token.get_secret_value())
            for name, token in settings.webhook_sources.items()
        },
        dead_letters=DeadLetters(deps.bus),
        login_limiter=RateLimiter(
            settings.login_attempts_per_minute / 60.0, settings.login_attempts_burst
        ),
        bus=deps.bus,
        marks=deps.marks
        or (
            MarkPrices.from_urls(settings.market_data_urls, deps.clock)
            if settings.market_data_urls
            else None
        ),
    )


def create_app(settings: GatewaySettings, deps: GatewayDeps) -> FastAPI:
    """The HTTP API; its OpenAPI document (/openapi.json) is the contract of the API."""
    app = FastAPI(
        title="marketbot signal gateway",
        version="1",
        description="TradingView webhooks, the admin and user APIs, and live push (/ws).",
    )
    app.state.gateway = build_gateway(settings, deps)
    install_error_handlers(app)
    app.add_middleware(StorableTextMiddleware)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(deadletters.router)
    app.include_router(users.router)
    app.include_router(auth.router)
    app.include_router(operator.router)
    app.include_router(positions.router)
    app.include_router(ws.router)
    return app


async def start_push(gateway: Gateway) -> None:
    """Follow the order and ledger streams into the hub (needs ``gateway.feed``)."""
    if gateway.feed is not None:
        await gateway.feed.start(gateway.hub.started_at, gateway.hub.dispatch)


def uvicorn_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        proxy_headers=False,  # X-Forwarded-For is judged by our own trusted-proxy list
        ws_ping_interval=20.0,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


async def setup(ctx: ServiceContext) -> None:
    settings = ctx.settings
    assert isinstance(settings, GatewaySettings)
    pool = ctx.require_pool()
    feed = JetStreamFeed(ctx.bus)
    app = create_app(settings, GatewayDeps(ctx.bus, pool, ctx.clock, feed=feed))
    gateway: Gateway = app.state.gateway
    await start_push(gateway)
    server = uvicorn_server(app, settings.http_host, settings.http_port)
    serving = asyncio.create_task(server.serve(), name="uvicorn")

    async def stop() -> None:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, timeout=10)
        await feed.stop()
        if gateway.marks is not None:
            await gateway.marks.aclose()

    ctx.on_shutdown(stop)
    if not settings.admin_token:
        log.warning("no admin token configured: the admin API refuses every call")
    log.info("gateway listening", host=settings.http_host, port=settings.http_port)


def main() -> None:
    run_service(GatewaySettings(), setup, migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
