"""Live push bookkeeping: the resume cursor and the per-user ring of recent events.

The gateway follows two streams, ORDER_EVENTS and LEDGER, each in stream-sequence order. A
cursor is the pair of the last sequences a client has seen, written ``"<orders>.<ledger>"``;
every frame carries one, and a client that reconnects sends the last it got. Everything after
it is replayed from the ring if the ring still holds it, else from JetStream by sequence.
"""

from __future__ import annotations

import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from marketbot.gateway.domain.errors import InvalidFieldError

ORDERS = "orders"
LEDGER = "ledger"
FEEDS = (ORDERS, LEDGER)
_CURSOR = re.compile(r"^(\d{1,18})\.(\d{1,18})$")


@dataclass(frozen=True)
class Cursor:
    orders: int = 0
    ledger: int = 0

    @classmethod
    def parse(cls, text: str) -> Cursor:
        match = _CURSOR.match(text.strip())
        if not match:
            raise InvalidFieldError(
                "cursor", "last_event_id must be the id of a frame, e.g. '12.7'", "last_event_id"
            )
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.orders}.{self.ledger}"

    def seq(self, feed: str) -> int:
        return self.orders if feed == ORDERS else self.ledger

    def advanced(self, feed: str, seq: int) -> Cursor:
        if feed == ORDERS:
            return Cursor(max(self.orders, seq), self.ledger)
        return Cursor(self.orders, max(self.ledger, seq))

    def merged(self, other: Cursor) -> Cursor:
        return Cursor(max(self.orders, other.orders), max(self.ledger, other.ledger))

    def at_or_after(self, other: Cursor) -> bool:
        return self.orders >= other.orders and self.ledger >= other.ledger


@dataclass(frozen=True)
class PushItem:
    """One event for one user, as it will be framed; ``position`` is the feed position after it."""

    feed: str
    seq: int
    user_id: str
    event_id: uuid.UUID
    event_type: str
    data: dict[str, Any]
    position: Cursor

    def is_after(self, cursor: Cursor) -> bool:
        return self.seq > cursor.seq(self.feed)


def frame(item: PushItem, cursor: Cursor) -> dict[str, Any]:
    return {
        "id": str(cursor),
        "event_id": str(item.event_id),
        "type": item.event_type,
        "data": item.data,
    }


@dataclass
class Ring:
    """The last ``size`` items of one user (or of everyone), and from where it is complete."""

    size: int
    floor: Cursor
    items: deque[PushItem] = field(default_factory=deque)

    def append(self, item: PushItem) -> None:
        if len(self.items) >= self.size:
            evicted = self.items.popleft()
            self.floor = self.floor.merged(evicted.position)
        self.items.append(item)

    def after(self, cursor: Cursor) -> list[PushItem] | None:
        """Items after ``cursor``, or None when the ring no longer reaches back that far."""
        if not cursor.at_or_after(self.floor):
            return None
        return [item for item in self.items if item.is_after(cursor)]
