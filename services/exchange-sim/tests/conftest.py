from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import pytest_asyncio

from marketbot.sim.admin import SimAdmin
from marketbot.sim.server import Apps, SimServer, build_apps

# The simulator's own suite drives limits and faults hard: it gets its own simulator
# process (these names shadow the shared session fixture of the global plugin).
from marketbot.sim.testing import sim, sim_process, sim_reset  # noqa: F401


@dataclass
class Local:
    """An in-process simulator (limits off) for protocol tests."""

    apps: Apps
    urls: dict[str, str]
    http: httpx.AsyncClient
    bybit_admin: SimAdmin
    binance_admin: SimAdmin
    market_admin: SimAdmin


async def _start(limits: bool) -> tuple[SimServer, Local]:
    apps = build_apps(seed=7, limits=limits)
    server = SimServer(apps, host="127.0.0.1", ports=(0, 0, 0))
    await server.start()
    urls = server.urls
    http = httpx.AsyncClient(timeout=10)
    local = Local(
        apps,
        urls,
        http,
        SimAdmin(urls["bybit"]),
        SimAdmin(urls["binance"]),
        SimAdmin(urls["market"]),
    )
    return server, local


@pytest_asyncio.fixture(scope="session")
async def local() -> AsyncIterator[Local]:
    server, sim_local = await _start(limits=False)
    yield sim_local
    await sim_local.http.aclose()
    await server.stop()


@pytest_asyncio.fixture(scope="session")
async def limited() -> AsyncIterator[Local]:
    server, sim_local = await _start(limits=True)
    yield sim_local
    await sim_local.http.aclose()
    await server.stop()


class BybitClient:
    """A hand-written V5 signer following guide.mdx, used to drive the simulator."""

    def __init__(self, http: httpx.AsyncClient, base: str, key: str, secret: str) -> None:
        self.http, self.base, self.key, self.secret = http, base, key, secret

    def headers(self, payload: str, *, ts: int | None = None, recv: str = "5000") -> dict[str, str]:
        stamp = str(ts if ts is not None else int(time.time() * 1000))
        sign = hmac.new(
            self.secret.encode(), (stamp + self.key + recv + payload).encode(), hashlib.sha256
        ).hexdigest()
        return {
            "X-BAPI-API-KEY": self.key,
            "X-BAPI-TIMESTAMP": stamp,
            "X-BAPI-SIGN": sign,
            "X-BAPI-RECV-WINDOW": recv,
        }

    async def get(self, path: str, params: dict[str, Any], **kw: Any) -> httpx.Response:
        query = urlencode(params)
        return await self.http.get(f"{self.base}{path}?{query}", headers=self.headers(query, **kw))

    async def post(self, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
        raw = json.dumps(body)
        headers = self.headers(raw, **kw) | {"Content-Type": "application/json"}
        return await self.http.post(f"{self.base}{path}", content=raw, headers=headers)


class BinanceClient:
    """A hand-written signer following rest-api.md (HMAC over query + body)."""

    def __init__(self, http: httpx.AsyncClient, base: str, key: str, secret: str) -> None:
        self.http, self.base, self.key, self.secret = http, base, key, secret

    def sign(self, params: dict[str, Any], ts: int | None = None) -> str:
        params = dict(params)
        params.setdefault("timestamp", ts if ts is not None else int(time.time() * 1000))
        query = urlencode(params)
        sig = hmac.new(self.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        return f"{query}&signature={sig}"

    async def request(
        self, method: str, path: str, params: dict[str, Any], *, ts: int | None = None
    ) -> httpx.Response:
        signed = self.sign(params, ts)
        headers = {"X-MBX-APIKEY": self.key}
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return await self.http.post(f"{self.base}{path}", content=signed, headers=headers)
        return await self.http.request(method, f"{self.base}{path}?{signed}", headers=headers)


async def new_bybit(local: Local, usdt: str = "10000", **key: Any) -> tuple[str, BybitClient]:
    account = await local.bybit_admin.create_account()
    api_key, secret = await local.bybit_admin.create_api_key(account, **key)
    await local.bybit_admin.fund(account, "USDT", Decimal(usdt))
    return account, BybitClient(local.http, local.urls["bybit"], api_key, secret)


async def new_binance(local: Local, usdt: str = "10000", **key: Any) -> tuple[str, BinanceClient]:
    account = await local.binance_admin.create_account()
    api_key, secret = await local.binance_admin.create_api_key(account, **key)
    await local.binance_admin.fund(account, "USDT", Decimal(usdt))
    return account, BinanceClient(local.http, local.urls["binance"], api_key, secret)


@pytest.fixture
def h() -> SimpleNamespace:
    """Helpers for tests (conftest modules are not importable under importlib mode)."""
    return SimpleNamespace(
        new_bybit=new_bybit,
        new_binance=new_binance,
        BybitClient=BybitClient,
        BinanceClient=BinanceClient,
    )
