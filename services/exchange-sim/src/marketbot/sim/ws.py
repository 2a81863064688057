"""WebSocket connections over raw ASGI, and the hub the private streams hang on.

A venue's stream session (``bybit_ws``, ``binance_ws``) reads requests and answers them; the
engine's listeners push events into every session of the account. Events are queued and
sent in order by one sender task per connection, so what the engine did synchronously
arrives in the order it happened. The admin API can cut connections now, or after each
has sent N more events (the N+1th is never delivered: a gap, as a real disconnect leaves).
"""

from __future__ import annotations

import asyncio
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import orjson

from marketbot.sim.asgi import Receive, Scope, Send, drop_connection
from marketbot.sim.engine import Fill, Order, OrderList

_CONN_IDS = itertools.count(1)


class Connection:
    """One accepted WebSocket: JSON text frames in and out, through a send queue."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.conn_id = f"sim-{next(_CONN_IDS)}"
        client = scope.get("client")
        self.client_ip = client[0] if client else "127.0.0.1"
        self.query = scope.get("query_string", b"").decode("latin-1")
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.sent_events = 0
        self.cut_after: int | None = None
        """Cut the connection once this many more events have been sent (admin)."""
        self.cut_mode = "drop"
        self.stalled = False
        """Mode "stall": the connection stays open and sends nothing more (no event, no
        answer): a half-open connection only the client's heartbeat can detect."""
        self.closed = False
        self.opened_at = asyncio.get_running_loop().time()
        self.last_active = self.opened_at
        """Last frame the server sent (an answer or an event): the idle cut counts from it."""
        self.idle_s: float | None = None
        """Set by the session: cut after this long with nothing sent (None: never)."""

    async def accept(self) -> bool:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            return False
        await self._send({"type": "websocket.accept"})
        return True

    async def receive_text(self) -> str | None:
        """The next text frame, or None once the client has gone."""
        while True:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                self.closed = True
                return None
            if message["type"] == "websocket.receive":
                text = message.get("text")
                if text is None:
                    data = message.get("bytes") or b""
                    text = data.decode("utf-8", "replace")
                return str(text)

    def reply(self, payload: Any) -> None:
        """Queue an answer to a request (not counted as an event)."""
        if not self.closed and not self.stalled:
            self.last_active = asyncio.get_running_loop().time()
            self._queue.put_nowait(orjson.dumps(payload))

    def event(self, payload: Any) -> None:
        """Queue one pushed event."""
        if self.closed or self.stalled:
            return
        if self.cut_after is not None:
            if self.cut_after <= 0:
                return
            self.cut_after -= 1
        self.sent_events += 1
        self.last_active = asyncio.get_running_loop().time()
        self._queue.put_nowait(orjson.dumps(payload))
        if self.cut_after == 0:
            self._end()

    def cut(self, *, after_events: int = 0, mode: str = "drop") -> None:
        self.cut_mode = mode
        self.cut_after = after_events
        if after_events <= 0:
            self._end()

    def _end(self) -> None:
        if self.cut_mode == "stall":
            self.stalled = True
            self.cut_after = None
        else:
            self._queue.put_nowait(None)

    async def sender(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                await self._close()
                return
            try:
                await self._send({"type": "websocket.send", "text": item.decode()})
            except Exception:  # the client went away: stop sending
                self.closed = True
                return

    async def _close(self) -> None:
        self.closed = True
        try:
            if self.cut_mode == "close":
                # 1001 "going away" (RFC 6455 7.4.1), as a server shutting down sends.
                await self._send({"type": "websocket.close", "code": 1001})
            else:
                await drop_connection(self._send)
        except Exception:  # already gone
            return


class StreamSession(ABC):
    """One venue's protocol on one connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @abstractmethod
    def handle(self, text: str) -> None:
        """Answer one text frame."""

    @abstractmethod
    def accounts(self) -> set[str]:
        """The accounts whose events this session receives."""

    @abstractmethod
    def on_order(self, order: Order, fill: Fill | None) -> None: ...

    @abstractmethod
    def on_list(self, order_list: OrderList) -> None: ...

    @abstractmethod
    def on_funds(self, account_id: str) -> None: ...

    def on_price(self, symbol: str) -> None:
        """A symbol's price changed (public sessions push it; private ones ignore it)."""
        del symbol

    def expire(self) -> None:
        """The connection reached its lifetime: the venue's own way of ending it."""
        self.connection.cut(mode="drop")

    def shutdown(self) -> None:
        """The server is about to shut down (Binance sends ``serverShutdown`` first)."""
        self.connection.cut(mode="close")

    def describe(self) -> dict[str, Any]:
        return {
            "conn_id": self.connection.conn_id,
            "accounts": sorted(self.accounts()),
            "sent_events": self.connection.sent_events,
        }


SessionFactory = Callable[[Connection], StreamSession]


class StreamHub:
    """Every open stream session of one venue; the engine's listeners fan out here."""

    def __init__(
        self,
        *,
        lifetime_s: float | None = None,
        idle_s: float | None = None,
        scan_s: float = 30.0,
        connection_limit: tuple[int, float] | None = None,
    ) -> None:
        self.sessions: list[StreamSession] = []
        self.connections_total = 0
        self.lifetime_s = lifetime_s
        """Every connection is cut this long after it opened (Binance: 24 hours)."""
        self.idle_s = idle_s
        """A connection that sent nothing this long is cut (Bybit: 10 minutes)."""
        self.scan_s = scan_s
        """How often the expiry is checked (Bybit: "ticker scans every 30s")."""
        self.connection_limit = connection_limit
        """(connections, seconds): new connections per IP allowed in the window."""
        self.limits_on: Callable[[], bool] = lambda: True
        self.accepting = True
        """False: every new connection is refused (an outage, for a test's gap)."""
        self._defaults = (lifetime_s, idle_s, scan_s, connection_limit)
        self._opened: dict[str, list[float]] = {}
        self.refused_total = 0
        self.expired_total = 0

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        """Admin: shorten the expiries for a test (``lifetime_s``, ``idle_s``, ``scan_s``;
        null switches one off)."""
        for name in ("lifetime_s", "idle_s"):
            if name in body:
                value = body[name]
                setattr(self, name, None if value is None else float(value))
        if "scan_s" in body:
            self.scan_s = max(0.01, float(body["scan_s"]))
        if "accepting" in body:
            self.accepting = bool(body["accepting"])
        if "connection_limit" in body:
            limit = body["connection_limit"]
            self.connection_limit = None if limit is None else (int(limit[0]), float(limit[1]))
            self._opened.clear()
        return self.settings()

    def settings(self) -> dict[str, Any]:
        return {
            "lifetime_s": self.lifetime_s,
            "idle_s": self.idle_s,
            "scan_s": self.scan_s,
            "accepting": self.accepting,
            "connection_limit": list(self.connection_limit) if self.connection_limit else None,
        }

    def admit(self, client_ip: str) -> bool:
        """Whether one more connection from ``client_ip`` fits the per-IP window."""
        if not self.accepting:
            self.refused_total += 1
            return False
        if self.connection_limit is None or not self.limits_on():
            return True
        limit, window = self.connection_limit
        now = asyncio.get_running_loop().time()
        opened = [t for t in self._opened.get(client_ip, []) if t > now - window]
        if len(opened) >= limit:
            self._opened[client_ip] = opened
            self.refused_total += 1
            return False
        opened.append(now)
        self._opened[client_ip] = opened
        return True

    def reset_limits(self) -> None:
        self._opened.clear()
        self.refused_total = 0

    def reset(self) -> None:
        """Back to the venue's documented expiries, counters cleared."""
        self.lifetime_s, self.idle_s, self.scan_s, self.connection_limit = self._defaults
        self.accepting = True
        self.reset_limits()
        self.expired_total = 0

    def on_order(self, order: Order, fill: Fill | None) -> None:
        for session in self._of(order.account_id):
            session.on_order(order, fill)

    def on_list(self, order_list: OrderList) -> None:
        account_id = order_list.orders[0].account_id if order_list.orders else ""
        for session in self._of(account_id):
            session.on_list(order_list)

    def on_funds(self, account_id: str) -> None:
        for session in self._of(account_id):
            session.on_funds(account_id)

    def on_price(self, symbol: str) -> None:
        for session in list(self.sessions):
            session.on_price(symbol)

    def _of(self, account_id: str) -> list[StreamSession]:
        return [s for s in self.sessions if account_id in s.accounts()]

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, factory: SessionFactory
    ) -> None:
        connection = Connection(scope, receive, send)
        if not self.admit(connection.client_ip):
            # Over the per-IP connection limit: the handshake is refused (HTTP 429, as the
            # REST limit answers; neither venue documents the WebSocket refusal's form).
            await receive()
            await send({"type": "websocket.http.response.start", "status": 429, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b""})
            return
        if not await connection.accept():
            return
        session = factory(connection)
        if connection.idle_s is None:
            connection.idle_s = self.idle_s
        self.sessions.append(session)
        self.connections_total += 1
        sender = asyncio.create_task(connection.sender())
        watchdog = asyncio.create_task(self._watch(session))
        try:
            while not connection.closed:
                receiving = asyncio.ensure_future(connection.receive_text())
                done, _ = await asyncio.wait(
                    {receiving, sender}, return_when=asyncio.FIRST_COMPLETED
                )
                if receiving not in done:
                    receiving.cancel()
                    break
                text = receiving.result()
                if text is None:
                    break
                session.handle(text)
        finally:
            connection.closed = True
            self.sessions.remove(session)
            watchdog.cancel()
            if not sender.done():
                sender.cancel()

    async def _watch(self, session: StreamSession) -> None:
        """Cut the connection at its lifetime, or once idle too long (checked every scan)."""
        connection = session.connection
        loop = asyncio.get_running_loop()
        while not connection.closed:
            await asyncio.sleep(self.scan_s)
            now = loop.time()
            lifetime = self.lifetime_s
            idle = connection.idle_s
            if (lifetime is not None and now - connection.opened_at >= lifetime) or (
                idle is not None and now - connection.last_active >= idle
            ):
                self.expired_total += 1
                session.expire()
                return

    def shutdown(self) -> list[str]:
        """Every session is told the server shuts down, then closed (admin)."""
        ids = []
        for session in list(self.sessions):
            session.shutdown()
            ids.append(session.connection.conn_id)
        return ids

    def cut(self, account_id: str | None, after_events: int, mode: str) -> list[str]:
        """Cut the sessions of ``account_id`` (all when None); the cut connection ids."""
        cut: list[str] = []
        for session in list(self.sessions):
            if account_id is None or account_id in session.accounts():
                session.connection.cut(after_events=after_events, mode=mode)
                cut.append(session.connection.conn_id)
        return cut

    def describe(self) -> dict[str, Any]:
        return {
            "connections": [s.describe() for s in self.sessions],
            "connections_total": self.connections_total,
            "refused_total": self.refused_total,
            "expired_total": self.expired_total,
            **self.settings(),
        }

    async def close_all(self) -> None:
        for session in list(self.sessions):
            session.connection.cut(mode="close")
