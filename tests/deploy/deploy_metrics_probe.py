"""Run in a subprocess: start each service's metrics endpoint and report what it exports.

``python deploy_metrics_probe.py '{"ledger": ["marketbot.ledger.cli", ...], ...}' OUTDIR``

The parent imports only third-party libraries and the message contracts (none of which
registers a marketbot metric), then forks one child per service. A child imports that
service's composition root (which registers its metrics in prometheus_client's default
registry, as in the real process), starts the runtime's HealthServer on a free loopback port
exactly as a service does, fetches ``/metrics`` and ``/healthz`` over HTTP and writes
OUTDIR/<service>.json: {"exposition": text, "labels": {family: [label names]}, "healthz": status}.
Forking after the shared imports keeps the whole probe to a few seconds.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import traceback
from pathlib import Path

SHARED = (
    "pydantic",
    "pydantic_settings",
    "structlog",
    "prometheus_client",
    "nats",
    "asyncpg",
    "httpx",
    "fastapi",
    "uvicorn",
    "cryptography.hazmat.primitives.ciphers.aead",
    "uvloop",
    "marketbot.contracts",
)


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), body


async def probe(modules: list[str]) -> dict[str, object]:
    for module in modules:
        importlib.import_module(module)
    from prometheus_client import REGISTRY

    from marketbot.runtime.health import HealthServer

    server = HealthServer("127.0.0.1", 0)
    await server.start()
    try:
        status, exposition = await _get(server.port, "/metrics")
        healthz, _ = await _get(server.port, "/healthz")
    finally:
        await server.stop()
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    labels = {}
    for collector in list(REGISTRY._collector_to_names):
        names = getattr(collector, "_labelnames", None)
        family = getattr(collector, "_name", None)
        if names is not None and family:
            labels[family] = list(names)
    return {"exposition": exposition, "labels": labels, "healthz": healthz}


def main(plan: dict[str, list[str]], out: Path) -> int:
    for module in SHARED:
        importlib.import_module(module)
    children = {}
    for service, modules in plan.items():
        pid = os.fork()
        if pid == 0:  # the child: one service
            code = 0
            try:
                result = asyncio.run(probe(modules))
            except BaseException:
                result = {"error": traceback.format_exc()}
                code = 1
            (out / f"{service}.json").write_text(json.dumps(result))
            os._exit(code)
        children[pid] = service
    failed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1]), Path(sys.argv[2])))
