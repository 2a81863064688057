"""Following orders and positions to their end by polling with backoff.

* An acknowledged order not yet filled (state PLACED) is looked up until it fills or ends.
* An open position's exit legs are checked; the interval doubles while nothing changes (up
  to a maximum). When the TP or SL leg has filled, PositionClosed is published.
"""

from __future__ import annotations

import asyncio
import contextlib

from marketbot.exchanges.errors import (
    CircuitOpenError,
    ExchangeError,
    IpBannedError,
    RateLimited,
)
from marketbot.execution import metrics
from marketbot.execution.exits import exit_orders
from marketbot.execution.placement import OrderExecutor
from marketbot.execution.repository import PositionRow, Repository
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.execution.tracker")


class PositionTracker:
    def __init__(self, executor: OrderExecutor, *, batch: int = 200, concurrency: int = 32) -> None:
        self.executor = executor
        self.batch = batch
        self._limit = asyncio.Semaphore(concurrency)

    async def run(self, interval_s: float) -> None:
        stopping = self.executor.stopping
        while not stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("tracker tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=interval_s)

    async def tick(self) -> int:
        """One pass over what is due; returns how many positions were closed."""
        executor = self.executor
        if executor.gate.remaining > 0:
            return 0
        now = executor.clock.now()
        async with executor.pool.acquire() as conn:
            placed = await Repository.placed_orders(conn, self.batch)
            due = await Repository.due_positions(conn, now, self.batch)
        for row in placed:
            try:
                found = await executor.venue.get_order(
                    executor.signers(row.request.user_id, row.request.exchange),
                    row.request.symbol,
                    client_order_id=row.client_order_id,
                )
                if found is not None:
                    await executor.record_result(row, found)
            except ExchangeError as exc:
                self._note(exc)
        results = await asyncio.gather(*(self._check(p) for p in due))
        async with executor.pool.acquire() as conn:
            metrics.OPEN_POSITIONS.labels(executor.exchange.value).set(
                await Repository.open_position_count(conn)
            )
            metrics.UNKNOWN_OPEN.labels(executor.exchange.value).set(
                await Repository.unknown_count(conn)
            )
        return sum(results)

    async def _check(self, position: PositionRow) -> bool:
        executor = self.executor
        async with self._limit:
            try:
                signer = executor.signers(position.user_id, position.request.exchange)
                exits = await exit_orders(executor.venue, signer, position)
                hit = next((e for e in exits if e.filled), None)
                if hit is not None:
                    return await executor.close_by_exit(position, hit)
            except ExchangeError as exc:
                self._note(exc)
            interval = min(position.check_interval_s * 2, executor.config.track_max_interval_s)
            async with executor.pool.acquire() as conn:
                await Repository.reschedule(
                    conn, position.entry_client_order_id, interval, executor.clock.now()
                )
            return False

    def _note(self, exc: ExchangeError) -> None:
        gate = self.executor.gate
        if isinstance(exc, IpBannedError):
            gate.pause(exc.retry_after_s, "ban")
        elif isinstance(exc, RateLimited):
            gate.pause(exc.retry_after_s, "rate_limit")
        elif isinstance(exc, CircuitOpenError):
            gate.pause(self.executor.config.breaker_pause_s, "breaker")
        else:
            log.info("tracking lookup failed; will retry", error=str(exc))
