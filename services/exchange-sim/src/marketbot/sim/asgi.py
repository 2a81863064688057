"""A minimal raw-ASGI base: one request object, byte responses, faults, the admin prefix."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ADMIN_PREFIX = "/__admin/"
JSON = b"application/json"
JSON_UTF8 = b"application/json; charset=utf-8"


class Request:
    __slots__ = ("body", "client_ip", "headers", "method", "path", "query", "received_ms")

    def __init__(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        client_ip: str,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.client_ip = client_ip
        self.received_ms: int | None = None
        """Server time when the request arrived: signed timestamps and limits count from
        here, before any injected delay (a real exchange checks them at its gateway)."""

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def query_params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query.decode("latin-1"), keep_blank_values=True))

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else {}


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes = JSON,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        self.headers.append((b"content-type", content_type))


def json_response(
    status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> Response:
    return Response(status, orjson.dumps(payload), headers)


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def send_response(send: Send, response: Response) -> None:
    headers = response.headers
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def drop_connection(send: Send) -> None:
    """Close the TCP connection without an answer (the server's transport when reachable)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.close()
        for _ in range(3):
            await asyncio.sleep(0)
        return
    # Fallback: start a response that never completes; the server then closes the socket.
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]}
    )


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return (
            not message.startswith(
                ("ASGI callable returned without", "Exception in ASGI application")
            )
            or not _dropping()
        )


_DROPPING = {"active": False}


def _dropping() -> bool:
    return _DROPPING["active"]


def quiet_dropped_connections() -> None:
    """Silence uvicorn's complaint about the connections we drop on purpose."""
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    _DROPPING["active"] = True


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def request_from(scope: Scope, body: bytes) -> Request:
    client = scope.get("client")
    return Request(
        scope["method"],
        scope["path"],
        scope.get("query_string", b""),
        scope.get("headers", []),
        body,
        client[0] if client else "127.0.0.1",
    )
