"""The small HTTP server every service runs: Prometheus ``/metrics``, ``/healthz``, ``/readyz``.

``/healthz`` answers 200 while the process runs its loop; ``/readyz`` answers 200 only when
every registered readiness check passes (NATS connected, database reachable, every consumer
loop running and within its lag bound, ...), else 503 with the failing checks named.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

ReadinessCheck = Callable[[], Awaitable[bool] | bool]

_MAX_REQUEST_HEAD = 8192


class HealthServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        registry: CollectorRegistry = DEFAULT_REGISTRY,
    ) -> None:
        self._host = host
        self._port = port
        self._registry = registry
        self._checks: dict[str, ReadinessCheck] = {}
        self._groups: list[Callable[[], dict[str, bool]]] = []
        self._server: asyncio.Server | None = None

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    def add_checks(self, checks: Callable[[], dict[str, bool]]) -> None:
        """A set of checks that changes at run time (e.g. one per running consumer)."""
        self._groups.append(checks)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("health server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def readiness(self) -> dict[str, bool]:
        results: dict[str, bool] = {}
        for name, check in self._checks.items():
            try:
                outcome = check()
                results[name] = bool(await outcome if isinstance(outcome, Awaitable) else outcome)
            except Exception:  # a failing check means "not ready", never a crash
                results[name] = False
        for group in self._groups:
            try:
                results.update(group())
            except Exception:
                results["checks"] = False
        return results

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            if len(head) > _MAX_REQUEST_HEAD:
                raise ValueError("request head too large")
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, content_type, body = await self._route(method, path)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, content_type, body = 400, "text/plain", b"bad request\n"
        header = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            writer.write(header.encode() + body)
            await writer.drain()
        finally:
            writer.close()

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            return 200, "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            checks = await self.readiness()
            ready = all(checks.values())
            body = json.dumps({"status": "ready" if ready else "not ready", "checks": checks})
            return (200 if ready else 503), "application/json", body.encode()
        return 404, "text/plain", b"not found\n"


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
