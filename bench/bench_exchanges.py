"""Exchange client overhead: signed requests/s through the client vs a bare aiohttp loop.

Both loops send the same signed request (Bybit ``GET /v5/account/wallet-balance``,
Binance ``GET /api/v3/account``) to the simulator (limits off) over keep-alive with the
same concurrency; the simulator runs pinned to one core, the client to another. The bare
loop signs with ``hmac`` inline and parses the JSON; the client adds everything it is for
(signer interface, policy check, clock, rate-limit bookkeeping, breaker, metrics, typed
decoding into Decimal models). ratio = client / bare; target >= 0.8 (overhead <= 25 %).
The bare loop uses aiohttp, the client's own wire (``transport.py``), so the ratio is the
engine's overhead over the transport it stands on.

Run standalone with ``python bench/bench_exchanges.py``; ``bench/run.py`` calls ``run()``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import httpx
from yarl import URL

from marketbot.contracts import Exchange
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import HttpSettings
from marketbot.exchanges.signer import LocalSigner

CONCURRENCY = 8
ROUNDS = 8
ROUND_SECONDS = 0.5
WARMUP_SECONDS = 0.5
TARGET_RATIO = 0.8


def _start_sim() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    ready = Path(tempfile.mkdtemp(prefix="bench-exchanges-")) / "ready.json"
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

    def pin() -> None:
        if cores:
            os.sched_setaffinity(0, {cores[0]})

    process = subprocess.Popen(
        [sys.executable, "-m", "marketbot.sim", "--no-limits", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        preexec_fn=pin,
    )
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[1]})
    deadline = time.monotonic() + 20
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("simulator did not start")
        time.sleep(0.02)
    return process, json.loads(ready.read_text())


async def _account(base: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=base) as client:
        account = (await client.post("/__admin/accounts", json={})).json()["account_id"]
        keys = (await client.post("/__admin/keys", json={"account_id": account})).json()
        await client.post(
            "/__admin/fund", json={"account_id": account, "asset": "USDT", "amount": "100000"}
        )
    return keys["api_key"], keys["api_secret"]


class _Tally:
    def __init__(self) -> None:
        self.requests = 0
        self.wall = 0.0
        self.cpu = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.wall

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.requests * 1e6


async def _round(one: Callable[[], Awaitable[Any]], seconds: float, tally: _Tally | None) -> None:
    done = [0]

    async def worker(deadline: float) -> None:
        while time.perf_counter() < deadline:
            await one()
            done[0] += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(wall0 + seconds) for _ in range(CONCURRENCY)))
    if tally is not None:
        tally.requests += done[0]
        tally.wall += time.perf_counter() - wall0
        tally.cpu += time.process_time() - cpu0


async def _compare(
    bare: Callable[[], Awaitable[Any]], client: Callable[[], Awaitable[Any]]
) -> tuple[_Tally, _Tally]:
    """Short alternating rounds, so drift in the simulator's speed hits both loops alike."""
    await _round(bare, WARMUP_SECONDS, None)
    await _round(client, WARMUP_SECONDS, None)
    tallies = (_Tally(), _Tally())
    for index in range(ROUNDS):
        order = ((bare, tallies[0]), (client, tallies[1]))
        for one, tally in order if index % 2 == 0 else reversed(order):
            await _round(one, ROUND_SECONDS, tally)
    return tallies


class _Bare:
    """A bare aiohttp session (created inside the running loop on first use)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session: aiohttp.ClientSession | None = None

    async def get(self, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
            self.session = aiohttp.ClientSession(connector=connector)
        url = URL(self.base + target, encoded=True)
        async with self.session.get(url, headers=headers) as response:
            return response.status, await response.read()

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()


def _bare(exchange: Exchange, base: str, key: str, secret: str) -> tuple[Any, Callable[[], Any]]:
    client = _Bare(base)
    secret_bytes = secret.encode()

    if exchange is Exchange.BYBIT:
        query = urlencode([("accountType", "UNIFIED")], quote_via=quote, safe="")

        async def one() -> Any:
            ts = str(int(time.time() * 1000))
            payload = f"{ts}{key}5000{query}".encode()
            sign = hmac.new(secret_bytes, payload, hashlib.sha256).hexdigest()
            headers = {
                "X-BAPI-API-KEY": key,
                "X-BAPI-TIMESTAMP": ts,
                "X-BAPI-SIGN": sign,
                "X-BAPI-RECV-WINDOW": "5000",
                "X-BAPI-SIGN-TYPE": "2",
            }
            _, content = await client.get(f"/v5/account/wallet-balance?{query}", headers)
            data = json.loads(content)
            assert data["retCode"] == 0, data
            return data

    else:

        async def one() -> Any:
            query = f"recvWindow=5000&timestamp={int(time.time() * 1000)}"
            sign = hmac.new(secret_bytes, query.encode(), hashlib.sha256).hexdigest()
            status, content = await client.get(
                f"/api/v3/account?{query}&signature={sign}", {"X-MBX-APIKEY": key}
            )
            data = json.loads(content)
            assert status == 200, data
            return data

    return client, one


async def _bench(exchange: Exchange, base: str) -> list[dict[str, Any]]:
    key, secret = await _account(base)
    bare_client, bare_one = _bare(exchange, base, key, secret)
    venue = create_venue(
        exchange,
        base,
        settings=VenueSettings(
            http=HttpSettings(max_connections=CONCURRENCY * 2, rate_limit_scale=1e6)
        ),
    )
    signer = LocalSigner(key, secret)

    async def client_one() -> Any:
        balances = await venue.balances(signer)
        assert any(b.asset == "USDT" and b.free == Decimal(100000) for b in balances)
        return balances

    try:
        bare_tally, client_tally = await _compare(bare_one, client_one)
    finally:
        await bare_client.aclose()
        await venue.aclose()
    bare, client = bare_tally.rps, client_tally.rps
    bare_us, client_us = bare_tally.cpu_us, client_tally.cpu_us
    return [
        {
            "name": f"exchanges: {exchange.value} signed requests via client",
            "value": client,
            "unit": "req/s",
            "baseline": f"bare aiohttp loop {bare:,.0f} req/s (target ratio >= {TARGET_RATIO})",
            "ratio": client / bare,
        },
        {
            "name": f"exchanges: {exchange.value} client CPU per signed request",
            "value": client_us,
            "unit": "us/req",
            "baseline": f"bare aiohttp loop {bare_us:,.0f} us/req",
            "ratio": client_us / bare_us,
        },
    ]


async def run() -> list[dict[str, Any]]:
    process, urls = _start_sim()
    try:
        rows: list[dict[str, Any]] = []
        for exchange in (Exchange.BYBIT, Exchange.BINANCE):
            rows.extend(await _bench(exchange, urls[exchange.value]))
        return rows
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    for row in asyncio.run(run()):
        print(
            f"{row['name']:<52} {row['value']:>10,.1f} {row['unit']:<7} "
            f"ratio {row['ratio']:.2f}  vs {row['baseline']}"
        )
