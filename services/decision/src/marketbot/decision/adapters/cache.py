"""Every provider's read path: timeout, TTL cache and a stale-value fallback, with metrics.

A read serves the cached value while it is younger than the TTL; otherwise it fetches (one
fetch per key at a time, bounded by the timeout). If the fetch fails, the last good value is
served as *stale* while it is younger than ``max_stale_s``; beyond that the input is *missing*.
A read never raises: a missing input degrades the decision, it never blocks it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

import httpx

from marketbot.decision import metrics
from marketbot.runtime.clock import Clock
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.decision.providers")

T = TypeVar("T")


class ReadStatus(StrEnum):
    FRESH = "fresh"
    CACHED = "cached"
    STALE = "stale"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Reading(Generic[T]):
    value: T | None
    status: ReadStatus
    age_s: float = 0.0
    error: str | None = None


class ProviderError(Exception):
    """A provider's answer could not be used (bad status, unparseable payload)."""


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, httpx.HTTPError):
        return "http"
    if isinstance(exc, ProviderError | ValueError | KeyError | TypeError | IndexError):
        return "parse"
    return type(exc).__name__


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    fetched_at: float


class CachedReader(Generic[T]):
    def __init__(
        self,
        provider: str,
        *,
        clock: Clock,
        ttl_s: float,
        timeout_s: float,
        max_stale_s: float,
    ) -> None:
        self.provider = provider
        self._clock = clock
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.max_stale_s = max_stale_s
        self._entries: dict[Hashable, _Entry[T]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self.fetches = 0

    async def read(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> Reading[T]:
        reading = self._cached(key)
        if reading is not None:
            return self._served(reading)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            reading = self._cached(key)  # another reader may have just fetched it
            if reading is None:
                reading = await self._fetch(key, fetch)
        return self._served(reading)

    def _cached(self, key: Hashable) -> Reading[T] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self._clock.monotonic() - entry.fetched_at
        if age < self.ttl_s:
            return Reading(entry.value, ReadStatus.CACHED, age)
        return None

    async def _fetch(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> Reading[T]:
        self.fetches += 1
        started = time.perf_counter()
        try:
            value = await asyncio.wait_for(fetch(), timeout=self.timeout_s)
        except Exception as exc:
            kind = error_kind(exc)
            metrics.PROVIDER_ERRORS.labels(self.provider, kind).inc()
            detail = f"{self.provider}: {kind}" + (f" ({exc})" if str(exc) else "")
            log.warning("market data fetch failed", provider=self.provider, error=detail)
            entry = self._entries.get(key)
            if entry is not None:
                age = self._clock.monotonic() - entry.fetched_at
                if age <= self.max_stale_s:
                    return Reading(entry.value, ReadStatus.STALE, age, detail)
            return Reading(None, ReadStatus.MISSING, 0.0, detail)
        finally:
            metrics.PROVIDER_SECONDS.labels(self.provider).observe(time.perf_counter() - started)
        self._entries[key] = _Entry(value, self._clock.monotonic())
        return Reading(value, ReadStatus.FRESH, 0.0)

    def _served(self, reading: Reading[T]) -> Reading[T]:
        metrics.PROVIDER_READS.labels(self.provider, reading.status.value).inc()
        if reading.status is not ReadStatus.MISSING:
            metrics.PROVIDER_STALENESS.labels(self.provider).set(reading.age_s)
        return reading
