"""Private streams, venue-agnostic: one WebSocket connection kept alive.

``PrivateStream`` connects, lets the venue's ``StreamProtocol`` authenticate and subscribe
(``start``), then reads: replies go to the request waiting for them, everything else is
turned into ``StreamEvent``s by the protocol and handed to ``on_event`` in arrival order.
A heartbeat runs while connected: the protocol's own ping message (Bybit ``{"op": "ping"}``)
or WebSocket ping frames (Binance). When anything fails (the connection drops, a pong or a
reply does not come, auth is refused) the connection is closed and opened again after a
capped exponential backoff with full jitter, and ``start`` authenticates and subscribes
again. ``on_connected(user_ids, reconnected)`` runs after every successful start: the place
to reconcile by REST what happened while the stream was down.

The venue dialects are ``bybit/stream.py`` and ``binance/stream.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from marketbot.contracts import Exchange
from marketbot.exchanges import metrics
from marketbot.runtime.clock import Clock, SystemClock, epoch_ms
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.exchanges.streams")


class StreamError(Exception):
    """The stream failed in a way a new connection may cure (it reconnects)."""


class StreamRefusedError(StreamError):
    """The exchange refused auth or a subscription (the message says what it answered)."""


@dataclass(frozen=True, slots=True)
class StreamSettings:
    ping_interval_s: float = 20.0
    """Both venues: a heartbeat every 20 s (Bybit websocket_wss-authentication.mdx "send the
    ping heartbeat packet every 20 seconds"; Binance pings every 20 s itself)."""
    pong_timeout_s: float = 10.0
    open_timeout_s: float = 10.0
    reply_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stable_after_s: float = 60.0
    """A connection that stayed up this long resets the backoff to its initial delay."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One pushed record: Bybit one item of a topic's ``data``, Binance one ``event``."""

    exchange: Exchange
    user_id: str
    topic: str
    """Bybit: ``order``, ``execution``, ``wallet``; Binance: the event type ``e``."""
    data: Mapping[str, Any]
    received_ms: int


EventHandler = Callable[[StreamEvent], Awaitable[None]]
ConnectedHandler = Callable[[Sequence[str], bool], Awaitable[None]]


class StreamConnection:
    """One open WebSocket: JSON out, replies matched to their request by key."""

    def __init__(self, ws: ClientConnection, reply_timeout_s: float) -> None:
        self.ws = ws
        self._timeout = reply_timeout_s
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def request(self, message: Mapping[str, Any], key: str) -> dict[str, Any]:
        """Send ``message`` and wait for the reply the protocol keys as ``key``."""
        if key in self._waiting:
            raise StreamError(f"a request keyed {key!r} is already waiting")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        try:
            await self.send(message)
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError as exc:
            raise StreamError(f"no reply to {key!r} within {self._timeout} s") from exc
        finally:
            self._waiting.pop(key, None)

    def resolve(self, key: str, message: dict[str, Any]) -> bool:
        future = self._waiting.get(key)
        if future is None or future.done():
            return False
        future.set_result(message)
        return True

    def fail_all(self, exc: BaseException) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(exc)


class StreamProtocol(Protocol):
    """A venue's dialect on one connection."""

    exchange: Exchange
    frame_pings: bool
    """True: heartbeat with WebSocket ping frames; False: ``ping_message`` requests."""

    async def start(self, connection: StreamConnection) -> Sequence[str]:
        """Authenticate and subscribe; the user ids now live. Raise ``StreamError``."""

    def ping_message(self, n: int) -> tuple[dict[str, Any], str]:
        """The heartbeat request and its reply key (when ``frame_pings`` is False)."""

    def reply_key(self, message: dict[str, Any]) -> str | None:
        """The request a message answers, or None for a pushed event."""

    def events(self, message: dict[str, Any], received_ms: int) -> list[StreamEvent]:
        """The events in a pushed message."""

    def disconnected(self) -> None:
        """The connection is gone (forget per-connection state such as subscription ids)."""


class PrivateStream:
    """Keeps one private-stream connection up until ``stop``."""

    def __init__(
        self,
        url: str,
        protocol: StreamProtocol,
        on_event: EventHandler,
        *,
        on_connected: ConnectedHandler | None = None,
        settings: StreamSettings | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        before_connect: Callable[[], Awaitable[tuple[str, int] | None]] | None = None,
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        self.url = url
        self.protocol = protocol
        self._on_event = on_event
        self._on_connected = on_connected
        self.settings = settings or StreamSettings()
        self._clock = clock or SystemClock()
        self._sleep = sleep
        self._jitter = jitter
        self._before_connect = before_connect
        """Waits for the exchange's connection budget (``userstreams.ConnectionBudget``);
        answers the local address to connect from (its egress IP), or None."""
        self._on_state = on_state
        """Told True when the stream is up (authenticated, subscribed), False when it fell."""
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()
        self.connection: StreamConnection | None = None
        self.connects = 0
        self.reconnects = 0
        self.failures = 0
        """Consecutive failed or short-lived connections: the backoff exponent."""
        self.delays: list[float] = []
        """Every backoff delay waited, in order (for tests and the dashboard)."""
        self.last_error: str = ""
        self.heartbeats = 0
        """Heartbeats answered on the current connections (Bybit pongs)."""
        self.down_since: float | None = self._clock.monotonic()
        """When the stream was last seen down (monotonic), None while it is up."""

    def backoff_s(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2**(failures - 1))]."""
        settings = self.settings
        growth: float = 2.0 ** max(0, failures - 1)
        cap = min(settings.backoff_max_s, settings.backoff_initial_s * growth)
        return float(cap * self._jitter())

    async def run(self) -> None:
        exchange = self.protocol.exchange.value
        while not self._stopping.is_set():
            started_at = self._clock.monotonic()
            try:
                await self._connect_once()
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, StreamError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("private stream down", exchange=exchange, error=self.last_error)
            finally:
                if self.connected.is_set():
                    metrics.STREAM_CONNECTIONS.labels(exchange).dec()
                    self.down_since = self._clock.monotonic()
                    if self._on_state is not None:
                        self._on_state(False)
                self.connected.clear()
                self.connection = None
                self.protocol.disconnected()
            if self._stopping.is_set():
                return
            lasted = self._clock.monotonic() - started_at
            self.failures = 1 if lasted >= self.settings.stable_after_s else self.failures + 1
            delay = self.backoff_s(self.failures)
            self.delays.append(delay)
            metrics.STREAM_RECONNECTS.labels(exchange).inc()
            sleeping = asyncio.ensure_future(self._sleep(delay))
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sleeping, stopping):
                task.cancel()

    async def _connect_once(self) -> None:
        settings = self.settings
        frame_pings = self.protocol.frame_pings
        local: dict[str, Any] = {}
        if self._before_connect is not None:
            source = await self._before_connect()
            if source is not None:
                local["local_addr"] = source  # passed on to loop.create_connection
        metrics.STREAM_CONNECT_ATTEMPTS.labels(self.protocol.exchange.value).inc()
        async with connect(
            self.url,
            **local,
            open_timeout=settings.open_timeout_s,
            ping_interval=settings.ping_interval_s if frame_pings else None,
            ping_timeout=settings.pong_timeout_s if frame_pings else None,
            close_timeout=settings.open_timeout_s,
        ) as ws:
            connection = StreamConnection(ws, settings.reply_timeout_s)
            reader = asyncio.create_task(self._read(connection))
            stop = asyncio.create_task(self._stopping.wait())
            heartbeat: asyncio.Task[None] | None = None
            try:
                users = await self._race(self.protocol.start(connection), reader, stop)
                if users is None:
                    return
                self.connection = connection
                self.connects += 1
                reconnected = self.connects > 1
                if reconnected:
                    self.reconnects += 1
                self.connected.set()
                self.down_since = None
                metrics.STREAM_CONNECTIONS.labels(self.protocol.exchange.value).inc()
                if self._on_state is not None:
                    self._on_state(True)
                if not frame_pings:
                    heartbeat = asyncio.create_task(self._heartbeat(connection))
                if self._on_connected is not None:
                    await self._on_connected(list(users), reconnected)
                waiters: set[asyncio.Task[Any]] = {reader, stop}
                if heartbeat is not None:
                    waiters.add(heartbeat)
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stop:
                        task.result()  # raise what ended the reader or the heartbeat
                if reader.done() and not stop.done():
                    raise StreamError("the connection closed")
            finally:
                pending: list[asyncio.Task[Any]] = [reader, stop]
                if heartbeat is not None:
                    pending.append(heartbeat)
                for running in pending:
                    running.cancel()
                    with contextlib.suppress(BaseException):
                        await running
                connection.fail_all(StreamError("the connection closed"))

    async def _race(
        self,
        work: Awaitable[Sequence[str]],
        reader: asyncio.Task[None],
        stop: asyncio.Task[Any],
    ) -> Sequence[str] | None:
        """``work`` unless the reader ends (raise what ended it) or stop comes (None)."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task, reader, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if reader in done:
            reader.result()
            raise StreamError("the connection closed during start")
        return None

    async def _read(self, connection: StreamConnection) -> None:
        async for raw in connection.ws:
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log.warning("private stream: not JSON", exchange=self.protocol.exchange.value)
                continue
            if not isinstance(message, dict):
                continue
            key = self.protocol.reply_key(message)
            if key is not None:
                connection.resolve(key, message)
                continue
            received_ms = epoch_ms(self._clock.now())
            for event in self.protocol.events(message, received_ms):
                await self._on_event(event)

    async def _heartbeat(self, connection: StreamConnection) -> None:
        n = 0
        while True:
            await asyncio.sleep(self.settings.ping_interval_s)
            n += 1
            message, key = self.protocol.ping_message(n)
            await connection.request(message, key)
            self.heartbeats += 1

    async def stop(self) -> None:
        """Close the connection and stop reconnecting (``run`` returns)."""
        self._stopping.set()
