"""The whole platform as real processes for the end-to-end suite (one stack per session).

Tests share the stack, so each creates its own users (a cohort) and pauses them when done;
every alert trades for every eligible user that exists at the time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from marketbot.contracts import BusNamespace
from marketbot.devstack.demo import Demo
from marketbot.devstack.stack import Stack, StackConfig, StackUrls
from marketbot.devstack.supervisor import Supervisor
from marketbot.runtime.bus import Bus
from marketbot.runtime.infra import Infra
from marketbot.sim.admin import SimAdmin


@dataclass
class Platform:
    stack: Stack
    urls: StackUrls
    bus: Bus
    demo: Demo
    http: httpx.AsyncClient
    sims: dict[str, SimAdmin]

    @property
    def config(self) -> StackConfig:
        return self.stack.config


@pytest.fixture(scope="session")
async def platform(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    data_dir: Path = tmp_path_factory.mktemp("e2e")
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    config = StackConfig.for_infra(
        infra,
        data_dir=data_dir,
        bus_prefix=prefix,
        # Short staleness for TRIAL-expiry tests is not needed; defaults are the product's.
    )
    supervisor = Supervisor(log_dir=data_dir / "logs", quiet=True)
    stack = Stack(config, supervisor)
    urls = await stack.start()
    bus = await Bus.connect(infra.nats_url, "e2e", BusNamespace(prefix))
    http = httpx.AsyncClient(timeout=30)
    sims = {
        "bybit": SimAdmin(urls.sim.bybit, client=http),
        "binance": SimAdmin(urls.sim.binance, client=http),
        "market": SimAdmin(urls.sim.market, client=http),
    }
    demo = Demo(urls.gateway, config.admin_token, sims, http)
    await demo.set_bullish_market()
    try:
        yield Platform(stack, urls, bus, demo, http, sims)
    finally:
        await bus.close()
        await http.aclose()
        await stack.stop()
