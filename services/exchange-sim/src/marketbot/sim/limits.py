"""Rate-limit bookkeeping: sliding windows (Bybit) and fixed windows (Binance)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class SlidingWindow:
    """Counts events in the last ``window_ms``; one deque per key."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._events: dict[object, deque[int]] = {}

    def hit(self, key: object, now_ms: int, limit: int) -> tuple[bool, int, int]:
        """Record one event if under ``limit``: (allowed, remaining, reset_ms)."""
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
        horizon = now_ms - self.window_ms
        while events and events[0] <= horizon:
            events.popleft()
        if len(events) >= limit:
            return False, 0, events[0] + self.window_ms
        events.append(now_ms)
        return True, limit - len(events), now_ms

    def clear(self) -> None:
        self._events.clear()


class FixedWindow:
    """Counts per key within aligned windows of ``window_ms`` (e.g. the current minute)."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._counts: dict[object, tuple[int, int]] = {}

    def add(self, key: object, now_ms: int, amount: int) -> int:
        start = now_ms - now_ms % self.window_ms
        window, count = self._counts.get(key, (start, 0))
        if window != start:
            count = 0
        count += amount
        self._counts[key] = (start, count)
        return count

    def used(self, key: object, now_ms: int) -> int:
        start = now_ms - now_ms % self.window_ms
        window, count = self._counts.get(key, (start, 0))
        return count if window == start else 0

    def seconds_left(self, now_ms: int) -> int:
        return max(1, -(-(self.window_ms - now_ms % self.window_ms) // 1000))

    def clear(self) -> None:
        self._counts.clear()


@dataclass(slots=True)
class Ban:
    until_ms: int
    offences: int
