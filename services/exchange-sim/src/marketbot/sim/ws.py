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
        self.closed = False

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
        if not self.closed:
            self._queue.put_nowait(orjson.dumps(payload))

    def event(self, payload: Any) -> None:
        """Queue one pushed event."""
        if self.closed:
            return
        if self.cut_after is not None:
            if self.cut_after <= 0:
                return
            self.cut_after -= 1
        self.sent_events += 1
        self._queue.put_nowait(orjson.dumps(payload))
        if self.cut_after == 0:
            self._queue.put_nowait(None)

    def cut(self, *, after_events: int = 0, mode: str = "drop") -> None:
        self.cut_mode = mode
        self.cut_after = after_events
        if after_events <= 0:
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

    def describe(self) -> dict[str, Any]:
        return {
            "conn_id": self.connection.conn_id,
            "accounts": sorted(self.accounts()),
            "sent_events": self.connection.sent_events,
        }


SessionFactory = Callable[[Connection], StreamSession]


class StreamHub:
    """Every open stream session of one venue; the engine's listeners fan out here."""

    def __init__(self) -> None:
        self.sessions: list[StreamSession] = []
        self.connections_total = 0

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

    def _of(self, account_id: str) -> list[StreamSession]:
        return [s for s in self.sessions if account_id in s.accounts()]

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, factory: SessionFactory
    ) -> None:
        connection = Connection(scope, receive, send)
        if not await connection.accept():
            return
        session = factory(connection)
        self.sessions.append(session)
        self.connections_total += 1
        sender = asyncio.create_task(connection.sender())
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
            if not sender.done():
                sender.cancel()

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
        }

    async def close_all(self) -> None:
        for session in list(self.sessions):
            session.connection.cut(mode="close")
