"""A small TTL cache for public market data, with single-flight loading.

A burst of callers asking for the same key while it is missing makes one request; they
all get its result (or its error, which is not cached).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from marketbot.runtime.clock import Clock

T = TypeVar("T")


class TTLCache:
    def __init__(
        self, clock: Clock, *, default_ttl_s: float = 2.0, max_entries: int = 4096
    ) -> None:
        self._clock = clock
        self.default_ttl_s = default_ttl_s
        self.max_entries = max_entries
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}
        self.loads = 0

    async def get_or_load(
        self, key: Hashable, loader: Callable[[], Awaitable[T]], *, ttl_s: float | None = None
    ) -> T:
        entry = self._values.get(key)
        now = self._clock.monotonic()
        if entry is not None and entry[0] > now:
            value: T = entry[1]
            return value
        pending = self._inflight.get(key)
        if pending is not None:
            shared: T = await asyncio.shield(pending)
            return shared
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.loads += 1
            loaded = await loader()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            ttl = self.default_ttl_s if ttl_s is None else ttl_s
            if len(self._values) >= self.max_entries:
                self._evict(now)
            self._values[key] = (self._clock.monotonic() + ttl, loaded)
            future.set_result(loaded)
            return loaded
        finally:
            del self._inflight[key]

    def invalidate(self, key: Hashable | None = None) -> None:
        if key is None:
            self._values.clear()
        else:
            self._values.pop(key, None)

    def _evict(self, now: float) -> None:
        for key in [k for k, (expires, _) in self._values.items() if expires <= now]:
            del self._values[key]
        while len(self._values) >= self.max_entries:
            self._values.pop(next(iter(self._values)))
