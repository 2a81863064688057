"""Coalescing the calls of one event-loop tick into one batch (one statement, one request).

``TickBatcher(run)``: each ``await batcher.call(item)`` is queued; the queue is handed to
``run`` on the next tick of the loop (or as soon as it holds ``max_items``), and each caller
gets the result at its own position. Concurrent callers (the orders of one fan-out) thus
share one round trip, while a lone caller waits one tick more than a call of its own.

A failed ``run`` fails every call of its batch with the same error. ``run`` must answer one
result per item, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class TickBatcher(Generic[T, R]):
    def __init__(
        self, run: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *, max_items: int = 256
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._run = run
        self._max = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Batches run (a batch of one included)."""

    async def call(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self._max:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._apply(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _apply(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


__all__ = ["TickBatcher"]
