"""Following orders and positions to their end by polling with backoff, where no stream does.

* An acknowledged order not yet filled (state PLACED) is looked up until it fills or ends.
* An open position is one step of the lifecycle (``PositionKeeper.check``): protected if it
  is not, closed by the leg that executed, or closed when the price reaches a watched leg.
  Its legs are read by their own ids. The interval doubles while nothing changes (up to a
  maximum); an UNPROTECTED position, or one with a watched leg, is looked at every pass.

With a stream feed (``streamfeed.StreamFeed``), an account whose private stream is up (or
down for less than ``stale_order_s``: the reconciliation after its reconnect recovers the
gap) is not polled: its acknowledged orders are finished by their reports (looked up here only
when no report came within ``stale_order_s``), and its protected positions, whose watched
legs are fired from pushed prices, are only rescheduled (no request; one database write
for all of a pass's).
What needs action is still done here: protecting an UNPROTECTED position, resuming an exit
order whose outcome is unknown, and the REST look at a position whose leg ended unfilled.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from marketbot.exchanges.errors import (
    ExchangeError,
    IpBannedError,
    RateLimited,
)
from marketbot.exchanges.ratelimit import background, protective
from marketbot.execution import metrics
from marketbot.execution.domain.lifecycle import Phase
from marketbot.execution.fills import FillsIncompleteError
from marketbot.execution.placement import OrderExecutor
from marketbot.execution.repository import OrderRow, OrderState, PositionRow, Repository
from marketbot.runtime.logs import get_logger

if TYPE_CHECKING:
    from marketbot.execution.streamfeed import StreamFeed

log = get_logger("marketbot.execution.tracker")


class PositionTracker:
    def __init__(
        self,
        executor: OrderExecutor,
        *,
        batch: int = 200,
        concurrency: int = 32,
        feed: StreamFeed | None = None,
    ) -> None:
        self.executor = executor
        self.batch = batch
        self._limit = asyncio.Semaphore(concurrency)
        self.feed = feed
        self.skipped = 0
        """Positions left alone because their account's stream is up (no request)."""
        self._resume_at = 0.0
        """After its own reads found no rate-limit budget: the tracker waits (monotonic)."""

    async def run(self, interval_s: float) -> None:
        stopping = self.executor.stopping
        while not stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("tracker tick failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):  # not wait_for: see engine._pause
                    await stopping.wait()

    async def tick(self) -> int:
        """One pass over what is due; returns how many positions were closed.

        The pass is background work for the rate limiter (``ratelimit.background``): it
        uses at most half of each per-IP budget, so polling never delays order placement.
        An unprotected position is not background work: it is protected ahead of new
        orders (``ratelimit.protective``), also while the polling waits for budget."""
        with background():
            return await self._tick()

    async def _tick(self) -> int:
        executor = self.executor
        if executor.gate.remaining > 0:
            return 0
        polling = executor.clock.monotonic() >= self._resume_at
        now = executor.clock.now()
        async with executor.pool.acquire() as conn:
            placed = await Repository.placed_orders(conn, self.batch) if polling else []
            due = await Repository.due_positions(conn, now, self.batch)
        if not polling:
            due = [p for p in due if p.phase is Phase.UNPROTECTED]
            if not due:
                return 0
        placed = await self._unstreamed(placed)
        for row in placed:
            try:
                found = await executor.venue.get_order(
                    executor.signers(row.request.user_id, row.request.exchange),
                    row.request.symbol,
                    client_order_id=row.client_order_id,
                )
                if found is not None:
                    async with executor.locks.hold(row.request.user_id, row.request.symbol):
                        async with executor.pool.acquire() as conn:
                            fresh = await Repository.get_order(conn, row.client_order_id)
                        if fresh is not None and fresh.state == OrderState.PLACED:
                            await executor.record_result(fresh, found)
            except ExchangeError as exc:
                self._note(exc)
            except FillsIncompleteError as exc:
                log.info("trade records not complete yet", detail=str(exc))
        # What the stream follows is only rescheduled: all of it in one statement.
        followed = [self._streamed(p) for p in due]
        streamed = [p.entry_client_order_id for p, f in zip(due, followed, strict=True) if f]
        if streamed:
            self.skipped += len(streamed)
            async with executor.pool.acquire() as conn:
                await Repository.reschedule_many(
                    conn, streamed, executor.config.track_max_interval_s, executor.clock.now()
                )
        checked = [p for p, f in zip(due, followed, strict=True) if not f]
        results = await asyncio.gather(*(self._check(p) for p in checked))
        async with executor.pool.acquire() as conn:
            metrics.OPEN_POSITIONS.labels(executor.exchange.value).set(
                await Repository.open_position_count(conn)
            )
            metrics.UNKNOWN_OPEN.labels(executor.exchange.value).set(
                await Repository.unknown_count(conn)
            )
            metrics.UNPROTECTED.labels(executor.exchange.value).set(
                await Repository.unprotected_count(conn)
            )
        return sum(results)

    async def _unstreamed(self, placed: list[OrderRow]) -> list[OrderRow]:
        """The acknowledged orders to look up: all, or with a feed those of accounts whose
        stream is down plus those no report finished in time (counted as corrections)."""
        feed = self.feed
        if feed is None:
            return placed
        chosen = [row for row in placed if not feed.covers(row.request.user_id)]
        ids = {row.client_order_id for row in chosen}
        for row in await feed.overdue_orders(self.batch):
            if row.client_order_id not in ids:
                metrics.STREAM_CORRECTIONS.labels(self.executor.exchange.value, "overdue").inc()
                chosen.append(row)
        return chosen

    def _streamed(self, position: PositionRow) -> bool:
        """Whether the stream follows this position: nothing to ask the exchange."""
        feed = self.feed
        return (
            feed is not None
            and position.phase is Phase.PROTECTED
            and position.closing_order is None
            and feed.covers(position.user_id)
            and feed.follows_prices(position)
        )

    async def _check(self, position: PositionRow) -> bool:
        executor = self.executor
        urgent = protective() if position.phase is Phase.UNPROTECTED else contextlib.nullcontext()
        async with self._limit:
            try:
                async with executor.locks.hold(position.user_id, position.symbol):
                    fresh = await self._fresh(position)
                    if fresh is None:
                        return False
                    with urgent:
                        if await executor.positions.check(fresh):
                            return True
            except ExchangeError as exc:
                self._note(exc)
            except FillsIncompleteError as exc:
                log.info("trade records not complete yet", detail=str(exc))
            if position.phase is Phase.UNPROTECTED or any(not leg.native for leg in position.legs):
                interval = executor.config.track_interval_s
            else:
                interval = min(position.check_interval_s * 2, executor.config.track_max_interval_s)
            async with executor.pool.acquire() as conn:
                await Repository.reschedule(
                    conn, position.entry_client_order_id, interval, executor.clock.now()
                )
            return False

    async def _fresh(self, position: PositionRow) -> PositionRow | None:
        """The row again, under the user's lock: a request may have changed it meanwhile."""
        async with self.executor.pool.acquire() as conn:
            fresh = await Repository.get_position(conn, position.entry_client_order_id)
        return fresh if fresh is not None and fresh.status == "OPEN" else None

    def _note(self, exc: ExchangeError) -> None:
        gate = self.executor.gate
        if isinstance(exc, IpBannedError):
            gate.pause(exc.retry_after_s, "ban")
        elif isinstance(exc, RateLimited):
            # No budget for the tracker's reads: the tracker backs off, and orders keep
            # whatever budget there is (the limiter itself holds everyone after a 429).
            self._resume_at = max(
                self._resume_at, self.executor.clock.monotonic() + exc.retry_after_s
            )
            log.info("tracking paused for rate-limit budget", seconds=exc.retry_after_s)
        else:  # an open breaker included: it is per endpoint, and pauses nothing else
            log.info("tracking lookup failed; will retry", error=str(exc))
