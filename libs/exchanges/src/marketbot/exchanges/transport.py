"""The wire under the request engine: one pooled HTTP/1.1 client per exchange.

``VenueHttp`` (``http.py``) sends through an ``HttpClient``: ``request(method, target,
headers=, content=)`` answering an ``httpx.Response`` and raising ``httpx`` transport errors,
so the engine's classification (``_NOT_SENT``: certainly not sent; anything else after the
connection was made: outcome unknown) reads the same whichever client is underneath.

- ``AiohttpClient`` is the production client. It was chosen by measurement (issue 19):
  on this machine, against the simulator, httpx's default transport cost about 1.1 ms of CPU
  per request, most of it httpcore's pool (each request probes every idle connection for
  expiry: ``has_expired`` -> ``get_extra_info`` and a socket poll); aiohttp costs about
  0.06 ms. aiohttp notices a connection the server closed from the event loop (the
  protocol's ``connection_lost``), without polling the pool per request.
- ``httpx.AsyncClient`` with a given ``httpx`` transport is what the unit tests use: fakes at
  this port (``httpx.MockTransport``), including transport faults raised as httpx errors.

Exactly-once rules this client keeps:

- **No automatic resend.** aiohttp resends a request of an idempotent method (GET, PUT,
  DELETE...) once when a reused keep-alive connection fails (aiohttp PR #7363); Binance's
  cancel is a DELETE, and the engine's rule is that a write is sent once per call. There is
  no public switch (aio-libs/aiohttp issue #10790, "There is no way to disable request retry
  in ClientSession._request()"); the private ``_retry_connection`` attribute added for
  that purpose (aio-libs/aiohttp PR #9396) is set to ``False``. Reads are retried by the
  engine's own policy (backoff, jitter, counted).
- **The bytes signed are the bytes sent.** The target is passed as
  ``yarl.URL(..., encoded=True)``, so aiohttp does not requote the signed query (ccxt does
  the same: ``ccxt/async_support/base/exchange.py``, ``fetch``).
- **Timeouts**: ``connect_timeout_s`` bounds the TCP + TLS connect (``sock_connect``);
  ``connect_timeout_s + pool_timeout_s`` the wait for a pooled connection and the connect
  together (``connect``; nothing queues there, the engine holds ``max_connections`` slots);
  ``read_timeout_s`` each wait for the answer (``sock_read``). A request of a few hundred
  bytes is handed to the kernel in one write (aiohttp waits for the socket to drain only past
  64 KiB), so ``write_timeout_s`` has nothing to bound here and is the httpx path's alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import aiohttp
import httpx
from yarl import URL


class HttpClient(Protocol):
    """What ``VenueHttp`` sends through (``httpx.AsyncClient`` satisfies it too)."""

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], content: str | None
    ) -> httpx.Response: ...

    async def aclose(self) -> None: ...


class AiohttpClient:
    """One aiohttp session (created on first use, inside the running loop) per exchange."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        pool_timeout_s: float,
        max_connections: int,
        keepalive_expiry_s: float,
        user_agent: str,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout_s + pool_timeout_s,
            sock_connect=connect_timeout_s,
            sock_read=read_timeout_s,
        )
        self._max_connections = max_connections
        self._keepalive_s = keepalive_expiry_s
        self._headers = {"User-Agent": user_agent}
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=self._keepalive_s
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers=self._headers,
            auto_decompress=False,  # httpx.Response decodes by Content-Encoding
            raise_for_status=False,
        )
        # Never resend on a failed reused connection (see the module docstring).
        session._retry_connection = False
        self._session = session
        return session

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], content: str | None
    ) -> httpx.Response:
        session = self._session or self._open()
        target = URL(self.base_url + url, encoded=True)
        data = content.encode() if content is not None else None
        try:
            async with session.request(method, target, headers=headers, data=data) as answer:
                body = await answer.read()
                return httpx.Response(answer.status, headers=answer.raw_headers, content=body)
        except aiohttp.ClientError as exc:
            raise as_httpx_error(exc) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"timed out: {exc}") from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            # Let the transports finish closing (aiohttp's "graceful shutdown" advice).
            await asyncio.sleep(0)


def as_httpx_error(exc: aiohttp.ClientError) -> httpx.HTTPError:
    """The httpx error that means the same for the engine: certainly not sent
    (connect failed or timed out, bad URL) or sent with the outcome unknown (everything
    after the connection was made)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(text)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(text)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(text)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(text)
    if isinstance(exc, aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(text)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return httpx.ReadError(text)
    return httpx.TransportError(text)
