"""Composition root: settings -> key material, pool, bus, venues -> responders and tasks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from marketbot.contracts import Exchange, Reply, Request, access
from marketbot.contracts.vault import (
    KeyStatusReply,
    KeyStatusRequest,
    RegisterKeyReply,
    RegisterKeyRequest,
    RevokeKeyRequest,
    SignBatchReply,
    SignBatchRequest,
    SignReply,
    SignRequest,
    VaultPublicKeyReply,
    VaultPublicKeyRequest,
    VerifyKeyRequest,
)
from marketbot.exchanges.http import HttpSettings
from marketbot.keyvault import handlers
from marketbot.keyvault.adapters.audit import AuditBuffer
from marketbot.keyvault.adapters.keysource import load_keyring, load_sealing_key
from marketbot.keyvault.adapters.orders import (
    ORDER_REQUESTS_CONSUMER,
    OrderStore,
    store_request,
    store_requests,
)
from marketbot.keyvault.adapters.repository import PgStore, Repository
from marketbot.keyvault.adapters.venues import VenuePool, VenueProvider
from marketbot.keyvault.domain.cache import CredentialCache
from marketbot.keyvault.domain.verification import VerificationPolicy
from marketbot.keyvault.handlers import Vault
from marketbot.keyvault.settings import KeyvaultSettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.consumer import ExactlyOnceConsumer
from marketbot.runtime.logs import get_logger
from marketbot.runtime.service import ServiceContext, run_service

log = get_logger("marketbot.keyvault.app")

MIGRATIONS = Path(__file__).parent / "migrations"
INVALIDATE_SUBJECT = access.INVALIDATE_SUBJECT
"""Core NATS, every replica (no queue group): drop a user's cached credential."""

Q = TypeVar("Q", bound=Request)
R = TypeVar("R", bound=Reply)


@dataclass
class RunningVault:
    vault: Vault
    subscriptions: list[Subscription] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    venues: VenuePool | None = None
    consumers: list[ExactlyOnceConsumer] = field(default_factory=list)

    async def close(self) -> None:
        """Stop intake, finish in-flight requests, write the last audit rows, stop tasks."""
        for consumer in self.consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()
        for sub in self.subscriptions:
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]
        self.stop.set()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        await self.vault.audit.flush()
        if self.venues is not None:
            await self.venues.aclose()


def _bind(handler: Callable[[Q, Vault], Awaitable[R]], vault: Vault) -> Callable[[Q], Awaitable[R]]:
    async def bound(request: Q) -> R:
        return await handler(request, vault)

    return bound


async def start_vault(
    settings: KeyvaultSettings, ctx: ServiceContext, *, venues: VenueProvider | None = None
) -> RunningVault:
    """Build the vault on an open context and start answering; returns what to close."""
    keyring = load_keyring(settings)
    sealing = load_sealing_key(settings)
    pool = ctx.require_pool()
    store = PgStore(pool, ctx.bus)
    venue_pool = None
    if venues is None:
        venue_pool = VenuePool(
            {e: settings.venue_url(e) for e in Exchange},
            ctx.clock,
            http=HttpSettings(
                read_timeout_s=settings.http_read_timeout_s,
                max_connections=settings.http_max_connections,
                max_keepalive_connections=settings.http_max_connections,
            ),
        )
        venues = venue_pool
    vault = Vault(
        store=store,
        keyring=keyring,
        sealing=sealing,
        venues=venues,
        audit=AuditBuffer(
            store,
            interval=settings.audit_flush_interval_s,
            backlog_max=settings.audit_backlog_max,
        ),
        cache=CredentialCache(ttl=settings.sign_cache_ttl_s, max_entries=settings.sign_cache_size),
        clock=ctx.clock,
        policy=VerificationPolicy(
            require_ip_binding=settings.require_ip_binding, egress_ips=settings.egress_ips
        ),
        orders=OrderStore(pool),
        bounds=settings.bound_rules(),
        balance_max_age=timedelta(seconds=settings.balance_max_age_s),
        request_wait_s=settings.request_wait_s,
        batch_slots=asyncio.Semaphore(settings.sign_concurrency),
    )
    running = RunningVault(vault=vault, venues=venue_pool)
    # The order requests signatures are bounded by (only decision may publish them).
    requests = ExactlyOnceConsumer(
        ctx.bus, pool, ORDER_REQUESTS_CONSUMER, store_request, batch_handler=store_requests
    )
    await requests.start()
    running.consumers.append(requests)
    await _check_master_versions(pool, keyring.versions, keyring.min_decrypt_version)
    running.subscriptions.append(await _cache_invalidation(ctx.bus, vault))
    bus = ctx.bus
    running.subscriptions += [
        await bus.serve(
            VaultPublicKeyRequest, VaultPublicKeyReply, _bind(handlers.public_key, vault)
        ),
        await bus.serve(RegisterKeyRequest, RegisterKeyReply, _bind(handlers.register_key, vault)),
        await bus.serve(VerifyKeyRequest, RegisterKeyReply, _bind(handlers.verify_key, vault)),
        await bus.serve(RevokeKeyRequest, RegisterKeyReply, _bind(handlers.revoke_key, vault)),
        await bus.serve(KeyStatusRequest, KeyStatusReply, _bind(handlers.key_status, vault)),
        await bus.serve(
            SignRequest,
            SignReply,
            _bind(handlers.sign, vault),
            concurrency=settings.sign_concurrency,
        ),
        # several sign requests of an executor's concurrent orders in one message (each
        # item answered as a request of its own; at most sign_concurrency items at once)
        await bus.serve(
            SignBatchRequest,
            SignBatchReply,
            _bind(handlers.sign_batch, vault),
            concurrency=settings.sign_concurrency,
        ),
    ]
    stop = running.stop
    running.tasks += [
        asyncio.create_task(vault.audit.run(stop), name="keyvault:audit"),
        asyncio.create_task(store.outbox.run_relay(stop=stop), name="keyvault:outbox"),
        asyncio.create_task(_reverify_loop(vault, settings, stop), name="keyvault:reverify"),
    ]
    log.info(
        "key vault ready",
        sealing_key_id=sealing.key_id,
        master_key_versions=list(keyring.versions),
        min_decrypt_version=keyring.min_decrypt_version,
    )
    return running


async def _cache_invalidation(bus: Bus, vault: Vault) -> Subscription:
    subject = bus.subject(INVALIDATE_SUBJECT)

    async def broadcast(user_id: str, exchange: Exchange) -> None:
        await bus.nc.publish(subject, json.dumps([user_id, exchange.value]).encode())

    async def received(msg: Msg) -> None:
        with contextlib.suppress(ValueError, TypeError):
            user_id, exchange = json.loads(msg.data)
            vault.cache.invalidate(str(user_id), Exchange(exchange))

    vault.broadcast_invalidation = broadcast
    return await bus.nc.subscribe(subject, cb=received)


async def _reverify_loop(vault: Vault, settings: KeyvaultSettings, stop: asyncio.Event) -> None:
    interval = timedelta(seconds=settings.reverify_interval_s)
    while not stop.is_set():
        # Wait first: a key registered while the vault starts is being verified by its
        # registration; a round at once would verify it a second time, concurrently.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.reverify_poll_s)
        if stop.is_set():
            return
        try:
            await handlers.reverify_due(
                vault, interval=interval, concurrency=settings.reverify_concurrency
            )
        except Exception:
            log.exception("re-verification round failed")


async def _check_master_versions(pool: object, versions: tuple[int, ...], minimum: int) -> None:
    import asyncpg

    assert isinstance(pool, asyncpg.Pool)
    async with pool.acquire() as conn:
        counts = await Repository(conn).count_by_master_version()
    unreadable = {v: n for v, n in counts.items() if v < minimum or v not in versions}
    if unreadable:
        log.error(
            "stored keys are wrapped under master keys this vault cannot use; restore the key "
            "or lower the minimum decryption version, then run marketbot-keyvault rotate",
            rows_by_version={str(k): v for k, v in unreadable.items()},
        )


async def setup(ctx: ServiceContext) -> None:
    settings = ctx.settings
    assert isinstance(settings, KeyvaultSettings)
    running = await start_vault(settings, ctx)
    ctx.on_shutdown(running.close)


def serve(settings: KeyvaultSettings | None = None) -> None:
    run_service(settings or KeyvaultSettings(), setup, migrations=MIGRATIONS)
