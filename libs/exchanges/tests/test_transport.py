"""The production wire (``transport.py``: aiohttp) against a real HTTP/1.1 server on a socket.

The server here answers keep-alive 200s, or, for the requests a test picks, reads the
request and then drops the connection without answering, or never answers. What is checked
is what the engine's exactly-once rules stand on: a request is never resent by the client
underneath (aiohttp would resend an idempotent one once on a failed reused connection), the
signed bytes are the bytes sent, and each failure reads as "not sent" or "outcome unknown"
exactly as the engine classifies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from marketbot.contracts import Exchange
from marketbot.exchanges.errors import OutcomeUnknown, Retryable
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import Endpoint, HttpSettings
from marketbot.exchanges.retry import RetryPolicy
from marketbot.exchanges.transport import AiohttpClient
from marketbot.runtime.infra import free_port

Rule = Callable[[str, str], str]
"""(method, target) -> "answer" | "drop" (close without an answer) | "hang" (never answer)."""


class RawServer:
    def __init__(self, rule: Rule | None = None, *, gzip_answers: bool = False) -> None:
        self.rule: Rule = rule or (lambda method, target: "answer")
        self.gzip = gzip_answers
        self.seen: list[tuple[str, str, bytes]] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode().split("\r\n")
                method, target, _ = lines[0].split(" ")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                self.seen.append((method, target, body))
                action = self.rule(method, target)
                if action == "drop":
                    return
                if action == "hang":
                    await asyncio.sleep(3600)
                payload = b'{"retCode":0,"result":{}}'
                extra = b""
                if self.gzip:
                    payload = gzip.compress(payload)
                    extra = b"Content-Encoding: gzip\r\n"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + extra
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[RawServer]:
    raw = RawServer()
    await raw.start()
    yield raw
    await raw.stop()


def client(url: str, *, read_timeout_s: float = 5.0) -> AiohttpClient:
    return AiohttpClient(
        url,
        connect_timeout_s=1.0,
        read_timeout_s=read_timeout_s,
        pool_timeout_s=1.0,
        max_connections=4,
        keepalive_expiry_s=30.0,
        user_agent="marketbot-test",
    )


def count(server: RawServer, method: str) -> int:
    return sum(1 for m, _, _ in server.seen if m == method)


async def test_a_delete_over_a_dropped_keepalive_connection_is_sent_once(
    server: RawServer,
) -> None:
    """aiohttp resends an idempotent request (DELETE: Binance's cancel) once when a reused
    connection fails; this client must not: the request reached the server."""
    server.rule = lambda method, target: "drop" if method == "DELETE" else "answer"
    http = client(server.url)
    try:
        first = await http.request("GET", "/ping", headers={}, content=None)
        assert first.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await http.request("DELETE", "/api/v3/order?orderId=1", headers={}, content=None)
    finally:
        await http.aclose()
    assert count(server, "DELETE") == 1
    assert server.connections == 1  # the DELETE went over the reused connection


async def test_the_engine_reads_a_dropped_write_as_unknown_and_never_resends(
    server: RawServer,
) -> None:
    server.rule = lambda method, target: "drop" if method == "DELETE" else "answer"
    venue = create_venue(
        Exchange.BYBIT,
        server.url,
        settings=VenueSettings(
            http=HttpSettings(retry=RetryPolicy(max_attempts=3, base_delay_s=0.01))
        ),
    )
    try:
        await venue.http.call(Endpoint("GET", "/v5/market/time"))
        with pytest.raises(OutcomeUnknown):
            await venue.http.call(Endpoint("DELETE", "/v5/anything", read=False))
    finally:
        await venue.aclose()
    assert count(server, "DELETE") == 1


async def test_the_signed_query_and_body_are_sent_byte_for_byte(server: RawServer) -> None:
    http = client(server.url)
    target = "/api/v3/order?symbol=BTCUSDT&note=a%20b%2Fc&timestamp=1&signature=ab%2B%3D"
    body = '{"symbol":"BTCUSDT","qty":"0.001"}'
    try:
        await http.request("GET", target, headers={}, content=None)
        await http.request(
            "POST", "/v5/order/create", headers={"Content-Type": "application/json"}, content=body
        )
    finally:
        await http.aclose()
    assert server.seen[0][:2] == ("GET", target)
    assert server.seen[1] == ("POST", "/v5/order/create", body.encode())


async def test_a_refused_connection_is_not_sent() -> None:
    http = client(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(httpx.ConnectError):
            await http.request("POST", "/v5/order/create", headers={}, content="{}")
    finally:
        await http.aclose()


async def test_the_engine_retries_a_read_that_was_never_sent_and_says_so() -> None:
    venue = create_venue(
        Exchange.BYBIT,
        f"http://127.0.0.1:{free_port()}",
        settings=VenueSettings(
            http=HttpSettings(retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
        ),
    )
    try:
        with pytest.raises(Retryable):
            await venue.http.call(Endpoint("GET", "/v5/market/time"))
    finally:
        await venue.aclose()


async def test_no_answer_within_the_read_timeout_is_an_unknown_outcome(
    server: RawServer,
) -> None:
    server.rule = lambda method, target: "hang"
    http = client(server.url, read_timeout_s=0.2)
    try:
        with pytest.raises(httpx.ReadTimeout):
            await http.request("POST", "/v5/order/create", headers={}, content="{}")
    finally:
        await http.aclose()
    assert count(server, "POST") == 1


async def test_a_compressed_answer_is_decoded_once() -> None:
    raw = RawServer(gzip_answers=True)
    await raw.start()
    http = client(raw.url)
    try:
        response = await http.request("GET", "/v5/market/time", headers={}, content=None)
    finally:
        await http.aclose()
        await raw.stop()
    assert response.json() == {"retCode": 0, "result": {}}


async def test_connections_are_pooled_and_reused(server: RawServer) -> None:
    http = client(server.url)
    try:
        for _ in range(20):
            await http.request("GET", "/v5/market/time", headers={}, content=None)
        answers: list[Any] = await asyncio.gather(
            *(http.request("GET", "/v5/market/time", headers={}, content=None) for _ in range(20))
        )
    finally:
        await http.aclose()
    assert all(a.status_code == 200 for a in answers)
    assert server.connections <= 4  # max_connections
