"""Server-time offset: measured, refreshed, and re-measured after a timestamp rejection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from marketbot.contracts import Exchange
from marketbot.exchanges import metrics
from marketbot.runtime.clock import Clock, epoch_ms


class ServerClock:
    """``now_ms()`` is local time corrected by the last measured offset (server - local).

    The offset is measured as ``server - midpoint(local send, local receive)`` and refreshed
    every ``refresh_s``; ``safety_ms`` is subtracted from signed timestamps because a
    timestamp ahead of the server is refused while one slightly behind is not.
    """

    def __init__(
        self,
        exchange: Exchange,
        clock: Clock,
        fetch_server_ms: Callable[[], Awaitable[int]],
        *,
        refresh_s: float = 300.0,
        safety_ms: int = 200,
    ) -> None:
        self.exchange = exchange
        self._clock = clock
        self._fetch = fetch_server_ms
        self.refresh_s = refresh_s
        self.safety_ms = safety_ms
        self.offset_ms = 0
        self.round_trip_ms = 0
        self._measured_at: float | None = None
        self._generation = 0
        self._lock = asyncio.Lock()

    @property
    def measured(self) -> bool:
        return self._measured_at is not None

    def now_ms(self) -> int:
        return epoch_ms(self._clock.now()) + self.offset_ms - self.safety_ms

    def is_stale(self) -> bool:
        return (
            self._measured_at is None
            or self._clock.monotonic() - self._measured_at >= self.refresh_s
        )

    async def ensure_fresh(self) -> None:
        if self.is_stale():
            await self.measure(only_if_stale=True)

    async def measure(self, *, only_if_stale: bool = False) -> int:
        """Measure now (concurrent callers share one measurement); returns the offset."""
        generation = self._generation
        async with self._lock:
            if only_if_stale and not self.is_stale():
                return self.offset_ms
            if self._generation != generation:
                return self.offset_ms  # measured by a concurrent caller meanwhile
            sent = epoch_ms(self._clock.now())
            server_ms = await self._fetch()
            received = epoch_ms(self._clock.now())
            self.round_trip_ms = received - sent
            self.offset_ms = server_ms - (sent + received) // 2
            self._measured_at = self._clock.monotonic()
            self._generation += 1
            metrics.CLOCK_OFFSET.labels(self.exchange.value).set(self.offset_ms)
            return self.offset_ms
