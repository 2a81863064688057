"""The executor signing through the real key vault (the secret never enters the executor)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from pydantic import SecretStr

from marketbot.contracts import Exchange, OrderFilled, OrderRejected, RejectReason
from marketbot.exchanges.signer import LocalSigner
from marketbot.execution.app import vault_signers
from marketbot.keyvault.adapters.keysource import SealingKey
from marketbot.keyvault.app import MIGRATIONS, start_vault
from marketbot.keyvault.client import VaultClient
from marketbot.keyvault.domain.masterkeys import format_master_key, generate_master_key
from marketbot.keyvault.settings import KeyvaultSettings
from marketbot.runtime.clock import SystemClock
from marketbot.runtime.db import create_pool, migrate_service
from marketbot.runtime.health import HealthServer
from marketbot.runtime.service import ServiceContext
from marketbot.runtime.testing import eventually

from .conftest import Harness, User, eventually_events


@pytest.fixture
async def running_vault(bybit: Harness, database_url: str, pg_schema: str) -> AsyncIterator[None]:
    schema = f"{pg_schema}_vault"
    pool = await create_pool(database_url, schema, max_size=5)
    await migrate_service(pool, schema, "keyvault", MIGRATIONS)
    settings = KeyvaultSettings(
        master_keys=SecretStr(format_master_key(1, generate_master_key())),
        sealing_key=SecretStr(SealingKey.generate().private_b64()),
        venue_urls={Exchange.BYBIT: bybit.url},
        reverify_poll_s=3600.0,
        audit_flush_interval_s=0.05,
    )
    ctx = ServiceContext(
        settings=settings, bus=bybit.bus, health=HealthServer(), clock=SystemClock(), pool=pool
    )
    vault = await start_vault(settings, ctx)
    try:
        yield
    finally:
        await vault.close()
        with contextlib.suppress(Exception):
            await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


@pytest.mark.parametrize("batch_max", [0, 128], ids=["one-request-each", "batched"])
async def test_orders_are_signed_by_the_vault(
    bybit: Harness, running_vault: None, batch_max: int
) -> None:
    """Production batches the sign requests of concurrent orders (``sign_batch_max``): the
    same outcomes, each order within its own request, a key-less user refused alone."""
    h = bybit
    client = VaultClient(h.bus, timeout=20.0)
    registered: list[User] = []
    for _ in range(2):
        account = await h.admin.create_account()
        api_key, secret = await h.admin.create_api_key(account)
        await h.admin.fund(account, "USDT", Decimal(1000))
        user = User(f"vault-{account}", account, LocalSigner("unused", "unused"))
        reply = await client.register(user.user_id, Exchange.BYBIT, api_key, secret)
        assert reply.ok, reply.error
        registered.append(user)
    unknown = User("vault-nobody", "none", LocalSigner("unused", "unused"))
    await h.start(signers=vault_signers(h.bus, batch_max=batch_max))
    # The vault signs each entry within its request (reference price, size for the balance
    # it read itself) and each protection leg within the entry it signed.
    price = await h.venue().price("SOLUSDT")
    await h.publish(
        [h.request(u, symbol="SOLUSDT", reference_price=price) for u in [*registered, unknown]]
    )
    filled = await eventually_events(h.log, OrderFilled, 2, timeout=30)
    assert {e.user_id for e in filled} == {u.user_id for u in registered}
    for user in registered:
        assert len(await h.entries(user)) == 1

        async def protected(user: User = user) -> bool:
            orders = await h.sim_orders(user)
            return any(o["client_order_id"].startswith("sl-") for o in orders)

        # the stop-loss leg (a sell) was signed within the entry and placed
        await eventually(protected, timeout=20)
    rejected = (await eventually_events(h.log, OrderRejected, 1))[0]
    assert rejected.user_id == unknown.user_id
    assert rejected.reason is RejectReason.INVALID_KEY
