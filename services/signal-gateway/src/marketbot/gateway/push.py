"""The live-push hub: events from the feed fanned out to connected sockets, never blocking.

Each connection has a bounded queue. Offering an item never waits: when a client's queue is
full the client is cut off (told to resume from its last frame id) and the others go on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

from marketbot.contracts import Event
from marketbot.gateway.domain.push import Cursor, PushItem, Ring

WS_CONNECTED = Gauge("marketbot_gateway_ws_connections", "WebSocket clients connected now")
WS_DROPPED = Counter(
    "marketbot_gateway_ws_slow_clients_dropped_total",
    "WebSocket clients cut off because they did not keep up",
)
WS_FRAMES = Counter("marketbot_gateway_ws_frames_total", "Event frames sent to WebSocket clients")


class Connection:
    """One socket's view: whose events (``user_id``, or None for everyone) and its queue."""

    def __init__(self, user_id: str | None, queue_size: int) -> None:
        self.user_id = user_id
        self.queue: asyncio.Queue[PushItem | None] = asyncio.Queue(maxsize=queue_size)
        self.overflowed = False
        self.dropped = asyncio.Event()

    def offer(self, item: PushItem) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            WS_DROPPED.inc()
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)  # tells the sender to close the socket
            self.dropped.set()  # and whoever waits, if the sender is stuck in a send


@dataclass
class Hub:
    ring_size: int = 256
    all_ring_size: int = 4096
    queue_size: int = 1000
    start: Cursor = field(default_factory=Cursor)
    position: Cursor = field(default_factory=Cursor)
    _rings: dict[str, Ring] = field(default_factory=dict)
    _all: Ring | None = None
    _by_user: dict[str, set[Connection]] = field(default_factory=dict)
    _everyone: set[Connection] = field(default_factory=set)

    def started_at(self, cursor: Cursor) -> None:
        self.start = self.position = cursor
        self._all = Ring(self.all_ring_size, cursor)

    def dispatch(self, feed: str, seq: int, event: Event) -> None:
        self.position = self.position.advanced(feed, seq)
        user_id = getattr(event, "user_id", None)
        if not isinstance(user_id, str):
            return
        item = PushItem(
            feed=feed,
            seq=seq,
            user_id=user_id,
            event_id=event.event_id,
            event_type=event.type,
            data=event.model_dump(mode="json"),
            position=self.position,
        )
        ring = self._rings.get(user_id)
        if ring is None:
            ring = self._rings[user_id] = Ring(self.ring_size, self.start)
        ring.append(item)
        if self._all is None:
            self._all = Ring(self.all_ring_size, self.start)
        self._all.append(item)
        for conn in self._by_user.get(user_id, ()):
            conn.offer(item)
        for conn in self._everyone:
            conn.offer(item)

    def connect(self, user_id: str | None) -> Connection:
        conn = Connection(user_id, self.queue_size)
        if user_id is None:
            self._everyone.add(conn)
        else:
            self._by_user.setdefault(user_id, set()).add(conn)
        WS_CONNECTED.inc()
        return conn

    def disconnect(self, conn: Connection) -> None:
        if conn.user_id is None:
            if conn in self._everyone:
                self._everyone.discard(conn)
                WS_CONNECTED.dec()
            return
        conns = self._by_user.get(conn.user_id)
        if conns is not None and conn in conns:
            conns.discard(conn)
            WS_CONNECTED.dec()
            if not conns:
                del self._by_user[conn.user_id]

    def recent(self, user_id: str | None, cursor: Cursor) -> list[PushItem] | None:
        """What the ring holds after ``cursor``; None when the ring does not reach back."""
        if user_id is None:
            return self._all.after(cursor) if self._all is not None else None
        ring = self._rings.get(user_id)
        if ring is None:
            return [] if cursor.at_or_after(self.start) else None
        return ring.after(cursor)
