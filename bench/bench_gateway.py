"""Webhook latency and throughput at a fixed 500 requests/s, on loopback with real JetStream.

The gateway runs as its own process (``python -m marketbot.gateway.app``: uvicorn + uvloop,
its bus, its pool), exactly as deployed. This process is an open-loop load generator: request
``i`` is due at ``start + i / RATE`` whatever happened before, and its latency is measured
from that due time (so a stall is charged to every request it delays: no coordinated
omission). Each request is a distinct TradingView JSON alert; a 202 means the SignalReceived
is acknowledged by JetStream. Afterwards the SIGNALS stream must hold exactly one message per
accepted alert. Keep-alive HTTP/1.1 connections, as a proxy in front of the gateway would use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from marketbot.contracts import BusNamespace
from marketbot.runtime.bus import Bus
from marketbot.runtime.natsauth import service_env

RATE = int(os.environ.get("BENCH_GATEWAY_RATE", "500"))
REQUESTS = int(os.environ.get("BENCH_GATEWAY_REQUESTS", "5000"))
CONNECTIONS = int(os.environ.get("BENCH_GATEWAY_CONNECTIONS", "8"))
TARGET_P99_MS = 10.0
TOKEN = "bench-source-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alert(i: int) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    price = f"{95000 + i / 100:.2f}"
    return json.dumps(
        {"symbol": "BTCUSDT", "action": "buy" if i % 2 else "sell", "price": price, "time": now,
         "strategy": "bench"}
    ).encode()  # fmt: skip


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> int:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])


async def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError("the gateway did not start listening")


async def load(port: int) -> tuple[list[float], dict[int, int], float]:
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await Connection.open(port))
    path = f"/webhooks/tradingview/bench?token={TOKEN}"
    bodies = [alert(i) for i in range(REQUESTS)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    loop = asyncio.get_running_loop()

    async def one(i: int, due: float) -> None:
        conn = await pool.get()
        try:
            status = await conn.post(path, bodies[i])
        finally:
            pool.put_nowait(conn)
        latencies.append(loop.time() - due)
        statuses[status] = statuses.get(status, 0) + 1

    # warm-up (not measured): connections, JIT-free paths, the first JetStream publishes
    for i in range(50):
        conn = await pool.get()
        await conn.post(path, alert(REQUESTS + i))
        pool.put_nowait(conn)
    tasks = []
    start = loop.time() + 0.05
    for i in range(REQUESTS):
        due = start + i / RATE
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    while not pool.empty():
        pool.get_nowait().writer.close()
    return latencies, statuses, elapsed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run() -> list[dict[str, Any]]:
    nats_url = os.environ["NATS_URL"]
    database_url = os.environ["DATABASE_URL"]
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    schema = f"bench_gateway_{uuid.uuid4().hex[:8]}"
    port = free_port()
    bus = await Bus.connect(nats_url, "bench-gateway", BusNamespace(prefix))
    await bus.provision()  # the operator's job: services may not create streams
    env = {
        **os.environ,
        **service_env(nats_url, "signal-gateway"),
        "MARKETBOT_BUS_PREFIX": prefix,
        "MARKETBOT_GATEWAY_DB_SCHEMA": schema,
        "MARKETBOT_GATEWAY_HTTP_PORT": str(port),
        "MARKETBOT_GATEWAY_WEBHOOK_SOURCES": json.dumps({"bench": TOKEN}),
        "MARKETBOT_GATEWAY_RATE_LIMIT_PER_SECOND": "100000",
        "MARKETBOT_GATEWAY_RATE_LIMIT_BURST": "100000",
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "marketbot.gateway.app"], env=env, stdout=subprocess.DEVNULL
    )
    try:
        await wait_listening(port, proc)
        latencies, statuses, elapsed = await load(port)
        info = await bus.js.stream_info(bus.stream("SIGNALS"))
        stored = int(info.state.messages) - 50  # minus the warm-up alerts
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        for spec in bus.namespace.streams():
            with contextlib.suppress(Exception):
                await bus.js.delete_stream(spec.name)
        await bus.close()
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    accepted = statuses.get(202, 0)
    ms = [v * 1000 for v in latencies]
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    return [
        {"name": "gateway webhook p50 @500/s", "value": p50, "unit": "ms",
         "baseline": f"target p99 {TARGET_P99_MS:g} ms", "ratio": p50 / TARGET_P99_MS},
        {"name": "gateway webhook p99 @500/s", "value": p99, "unit": "ms",
         "baseline": f"target {TARGET_P99_MS:g} ms (TradingView allows 3000)",
         "ratio": p99 / TARGET_P99_MS},
        {"name": "gateway webhook max @500/s", "value": max(ms), "unit": "ms",
         "baseline": "", "ratio": None},
        {"name": "gateway webhook mean @500/s", "value": statistics.fmean(ms), "unit": "ms",
         "baseline": "", "ratio": None},
        {"name": "gateway throughput", "value": accepted / elapsed, "unit": "req/s",
         "baseline": f"offered {RATE}/s", "ratio": accepted / elapsed / RATE},
        {"name": "gateway 202s / requests", "value": float(accepted), "unit": "count",
         "baseline": f"{REQUESTS} sent, statuses {dict(sorted(statuses.items()))}",
         "ratio": accepted / REQUESTS},
        {"name": "gateway signals in JetStream / 202s", "value": float(stored), "unit": "count",
         "baseline": "exactly one per accepted alert",
         "ratio": stored / accepted if accepted else None},
    ]  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from run import print_table  # type: ignore[import-not-found]

    from marketbot.runtime.infra import start_infra

    if "NATS_URL" in os.environ:
        print_table(asyncio.run(run()))
    else:
        with tempfile.TemporaryDirectory(prefix="marketbot-bench-") as tmp:
            infra = start_infra(Path(tmp), auth_prefix="*")
            os.environ["NATS_URL"] = infra.nats_url
            os.environ["DATABASE_URL"] = infra.database_url
            try:
                print_table(asyncio.run(run()))
            finally:
                infra.stop()
