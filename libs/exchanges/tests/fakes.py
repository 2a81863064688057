"""Hand-written fake exchanges on ``httpx.MockTransport``; payloads from the reference docs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from marketbot.contracts import Exchange
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import HttpSettings
from marketbot.exchanges.retry import RetryPolicy
from marketbot.runtime.clock import ManualClock, epoch_ms

Responder = Callable[[httpx.Request], httpx.Response]


def bybit_ok(result: Any) -> dict[str, Any]:
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": 1}


def bybit_error(code: int, message: str) -> dict[str, Any]:
    return {"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {}, "time": 1}


@dataclass
class FakeExchange:
    """Routes requests by path to queued or standing responders; records every request."""

    exchange: Exchange
    clock: ManualClock
    server_offset_ms: int = 0
    routes: dict[str, list[Responder]] = field(default_factory=dict)
    standing: dict[str, Responder] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def server_ms(self) -> int:
        return epoch_ms(self.clock.now()) + self.server_offset_ms

    def time_response(self) -> httpx.Response:
        now = self.server_ms()
        if self.exchange is Exchange.BYBIT:
            body = bybit_ok({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)})
        else:
            body = {"serverTime": now}
        return httpx.Response(200, json=body)

    def queue(self, path: str, *responders: Responder) -> None:
        self.routes.setdefault(path, []).extend(responders)

    def always(self, path: str, responder: Responder) -> None:
        self.standing[path] = responder

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path in ("/v5/market/time", "/api/v3/time") and not self.routes.get(path):
            return self.time_response()
        queued = self.routes.get(path)
        if queued:
            return queued.pop(0)(request)
        if path in self.standing:
            return self.standing[path](request)
        return httpx.Response(404, text="no route")

    def calls(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]


def respond(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Responder:
    def responder(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)

    return responder


def fail_with(exc: type[httpx.HTTPError]) -> Responder:
    def responder(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)

    return responder


def make_venue(
    exchange: Exchange,
    *,
    clock: ManualClock | None = None,
    server_offset_ms: int = 0,
    http: HttpSettings | None = None,
) -> tuple[Any, FakeExchange]:
    clock = clock or ManualClock()
    fake = FakeExchange(exchange, clock, server_offset_ms)
    settings = VenueSettings(
        http=http or HttpSettings(retry=RetryPolicy(max_attempts=3, base_delay_s=0.01)),
    )
    venue = create_venue(
        exchange,
        f"http://{exchange.value}.test",
        clock=clock,
        settings=settings,
        transport=httpx.MockTransport(fake.handler),
    )
    return venue, fake
