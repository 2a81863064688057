"""Fixtures: a running vault on the test's own bus prefix and schema, against the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from marketbot.contracts import Exchange
from marketbot.keyvault.adapters.keysource import SealingKey
from marketbot.keyvault.adapters.venues import VenueProvider
from marketbot.keyvault.app import MIGRATIONS, RunningVault, start_vault
from marketbot.keyvault.client import VaultClient
from marketbot.keyvault.domain.masterkeys import format_master_key, generate_master_key
from marketbot.keyvault.settings import KeyvaultSettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import SystemClock
from marketbot.runtime.db import migrate_service
from marketbot.runtime.health import HealthServer
from marketbot.runtime.service import ServiceContext
from marketbot.sim.testing import RunningSim


@pytest.fixture(scope="session")
def master_key_1() -> str:
    return format_master_key(1, generate_master_key())


@pytest.fixture(scope="session")
def sealing_key() -> SealingKey:
    return SealingKey.generate()


@pytest.fixture
async def migrated(pg_pool: asyncpg.Pool, pg_schema: str) -> asyncpg.Pool:
    await migrate_service(pg_pool, pg_schema, "keyvault", MIGRATIONS)
    return pg_pool


@dataclass
class VaultFactory:
    bus: Bus
    pool: asyncpg.Pool
    sim: RunningSim
    master_keys: str
    sealing: SealingKey
    started: list[RunningVault]

    def settings(self, **overrides: Any) -> KeyvaultSettings:
        values: dict[str, Any] = {
            "master_keys": SecretStr(self.master_keys),
            "sealing_key": SecretStr(self.sealing.private_b64()),
            "venue_urls": {
                Exchange.BYBIT: self.sim.bybit_url,
                Exchange.BINANCE: self.sim.binance_url,
            },
            "reverify_poll_s": 3600.0,
            "audit_flush_interval_s": 0.05,
        }
        values.update(overrides)
        return KeyvaultSettings(**values)

    async def start(self, *, venues: VenueProvider | None = None, **overrides: Any) -> RunningVault:
        settings = self.settings(**overrides)
        ctx = ServiceContext(
            settings=settings,
            bus=self.bus,
            health=HealthServer(),
            clock=SystemClock(),
            pool=self.pool,
        )
        running = await start_vault(settings, ctx, venues=venues)
        self.started.append(running)
        return running


@pytest.fixture
async def vaults(
    bus: Bus, migrated: asyncpg.Pool, sim: RunningSim, master_key_1: str, sealing_key: SealingKey
) -> AsyncIterator[VaultFactory]:
    factory = VaultFactory(bus, migrated, sim, master_key_1, sealing_key, [])
    try:
        yield factory
    finally:
        for running in reversed(factory.started):
            await running.close()


@pytest.fixture
async def vault(vaults: VaultFactory) -> RunningVault:
    return await vaults.start()


@pytest.fixture
def client(bus: Bus) -> VaultClient:
    return VaultClient(bus, timeout=20.0)


@dataclass
class SimKey:
    account_id: str
    api_key: str
    secret: str


@pytest.fixture
def make_key(sim: RunningSim) -> Callable[..., Any]:
    async def make(exchange: Exchange, **permissions: Any) -> SimKey:
        admin = sim.bybit_admin if exchange is Exchange.BYBIT else sim.binance_admin
        account = await admin.create_account()
        key, secret = await admin.create_api_key(account, **permissions)
        return SimKey(account, key, secret)

    return make
