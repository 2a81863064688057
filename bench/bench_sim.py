"""Simulator throughput: signed Binance order creates per second, simulator on one core.

Run standalone with ``python bench/bench_sim.py``; ``bench/run.py`` calls ``run()``.
The load generator speaks raw HTTP/1.1 over keep-alive sockets so that it, not the
simulator, is never the bottleneck.
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
from decimal import Decimal
from pathlib import Path

TARGET = 3000.0
CONNECTIONS = 200
WARMUP = 2_000
MAX_REQUESTS = 60_000
MAX_SECONDS = 10.0


def _start_sim() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    ready = Path(tempfile.mkdtemp(prefix="bench-sim-")) / "ready.json"
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
        os.sched_setaffinity(0, set(cores[1:]))
    deadline = time.monotonic() + 20
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("simulator did not start")
        time.sleep(0.02)
    return process, json.loads(ready.read_text())


async def _setup(base: str) -> tuple[str, str]:
    import httpx

    async with httpx.AsyncClient(base_url=base) as client:
        account = (await client.post("/__admin/accounts", json={})).json()["account_id"]
        keys = (await client.post("/__admin/keys", json={"account_id": account})).json()
        await client.post(
            "/__admin/fund",
            json={"account_id": account, "asset": "USDT", "amount": str(Decimal("1e12"))},
        )
    return keys["api_key"], keys["api_secret"]


class _Load:
    def __init__(self, host: str, port: int, key: str, secret: str) -> None:
        self.host, self.port = host, port
        self.key, self.secret = key, secret.encode()
        self.sent = 0
        self.ok = 0
        self.failed = 0
        self.budget = 0
        self.deadline = 0.0

    def request(self) -> bytes:
        body = (
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.0001&newOrderRespType=RESULT"
            f"&timestamp={int(time.time() * 1000)}"
        )
        signature = hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()
        body = f"{body}&signature={signature}"
        return (
            f"POST /api/v3/order HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"X-MBX-APIKEY: {self.key}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    async def worker(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            while self.sent < self.budget and time.monotonic() < self.deadline:
                self.sent += 1
                writer.write(self.request())
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                if head.startswith(b"HTTP/1.1 200"):
                    self.ok += 1
                else:
                    self.failed += 1
        finally:
            writer.close()

    async def run(self, requests: int, seconds: float) -> float:
        self.sent = self.ok = self.failed = 0
        self.budget = requests
        self.deadline = time.monotonic() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(self.worker() for _ in range(CONNECTIONS)))
        return self.ok / (time.perf_counter() - started)


async def run() -> list[dict[str, object]]:
    original = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    process, urls = _start_sim()
    try:
        base = urls["binance"]
        host, port = base.removeprefix("http://").rsplit(":", 1)
        key, secret = await _setup(base)
        load = _Load(host, int(port), key, secret)
        await load.run(WARMUP, 5.0)
        rate = await load.run(MAX_REQUESTS, MAX_SECONDS)
        if load.failed:
            raise RuntimeError(f"{load.failed} order creates failed during the benchmark")
    finally:
        process.terminate()
        process.wait(timeout=10)
        if original is not None:
            os.sched_setaffinity(0, original)
    return [
        {
            "name": "sim: order create (Binance, signed)",
            "value": round(rate, 1),
            "unit": "req/s",
            "baseline": "target 3,000/s per core (simulator pinned to one core)",
            "ratio": round(rate / TARGET, 2),
        }
    ]


if __name__ == "__main__":
    for row in asyncio.run(run()):
        print(json.dumps(row))
