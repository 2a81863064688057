"""Resolving orders whose outcome is unknown, by the client order id the exchange echoes.

A send that times out, answers 5xx or loses its answer leaves an order that may or may not
exist on the exchange. The request that sent it does not wait for the answer: it records the
order as unknown (``OrderExecutor.hand_off``: ``unknown_since``, ``settle_until``,
``reconcile_at``), emits ``OrderOutcomeUnknown`` and is acked, so the tier gate stops
counting it and the lower tiers go on. The durable row is the hand-off; this loop owns it
from then on, in any replica (the lease is released at the hand-off).

For each unknown order that is due, under the user's (user, symbol) lock and the row's lease:

1. look it up by client order id (``Venue.get_order``). Found: record what the exchange
   reports, as the request would have (``OrderPlaced`` / ``OrderFilled`` /
   ``OrderRejected``, and a fill is protected at once, like any other fill);
2. not found before ``settle_until``: not conclusive (a request signed for it may still
   arrive within the exchange's receive window); look again ``reconcile_poll_s`` later;
3. not found after ``settle_until``: it does not exist. Sent again under the same id if a
   resend can still be resolved before the request's maximum age
   (``OrderExecutor.can_resend``), else rejected ``STALE`` with the reason.

Nothing is decided by heuristic (no matching by side, size or time): only the id.

The interface is narrow on purpose: ``run`` (the loop the executor starts), ``tick`` (one
pass over what is due) and ``resolve`` (one order now, e.g. after a private stream
reconnects and the REST state must be read again).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import asyncpg

from marketbot.contracts import RejectReason
from marketbot.exchanges.deadline import within
from marketbot.exchanges.errors import (
    DuplicateClientOrderIdError,
    ExchangeError,
    OutcomeUnknown,
    RateLimited,
    Retryable,
)
from marketbot.execution import metrics
from marketbot.execution.fills import FillsIncompleteError
from marketbot.execution.placement import OrderExecutor, Outcome
from marketbot.execution.repository import OrderRow, OrderState, Purpose, Repository
from marketbot.runtime.bus import BusError
from marketbot.runtime.logs import correlation, get_logger

log = get_logger("marketbot.execution.reconcile")


class Reconciler:
    def __init__(self, executor: OrderExecutor, *, batch: int = 200, concurrency: int = 16) -> None:
        self.executor = executor
        self.batch = batch
        self._limit = asyncio.Semaphore(concurrency)

    async def run(self, interval_s: float) -> None:
        """Pass over the due orders every ``interval_s``, and at once after a hand-off."""
        executor = self.executor
        due = executor.reconciliation_due
        while not executor.stopping.is_set():
            due.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("reconciler pass failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):  # not wait_for: see engine._pause
                    await due.wait()

    async def tick(self) -> int:
        """One pass over the unknown orders that are due; returns how many were resolved."""
        executor = self.executor
        async with executor.pool.acquire() as conn:
            rows = await Repository.unknown_due(
                conn, executor.clock.now(), executor.owner, self.batch
            )
        results = await asyncio.gather(*(self._resolve_row(row) for row in rows))
        return sum(1 for outcome in results if outcome is not None)

    async def resolve(self, client_order_id: str) -> Outcome | None:
        """Resolve one order now if its outcome is unknown: the outcome recorded, or
        ``None`` while it is still unknown (or not this reconciler's to resolve)."""
        async with self.executor.pool.acquire() as conn:
            row = await Repository.get_order(conn, client_order_id)
        if row is None or not _unknown(row):
            return None
        return await self._resolve_row(row)

    # ---- one order ---------------------------------------------------------------------
    async def _resolve_row(self, row: OrderRow) -> Outcome | None:
        executor = self.executor
        request = row.request
        cid = row.client_order_id
        async with self._limit:
            with correlation(request.correlation_id, client_order_id=cid):
                async with executor.locks.hold(request.user_id, request.symbol):
                    if not await executor._claim(cid):
                        return None  # another worker holds it
                    try:
                        result = await self._step(cid)
                    except (RateLimited, Retryable) as exc:
                        result = getattr(exc, "retry_after_s", executor.config.retry_backoff_s)
                        log.info("reconciliation deferred", error=str(exc))
                    except FillsIncompleteError as exc:
                        result = executor.config.unknown_poll_s
                        log.info("trade records not complete yet", detail=str(exc))
                    except (ExchangeError, asyncpg.PostgresError, OSError, BusError) as exc:
                        result = executor.config.reconcile_poll_s
                        log.warning("reconciliation failed; will retry", error=repr(exc))
                    if isinstance(result, Outcome):
                        return None if result is Outcome.UNKNOWN else result
                    async with executor.pool.acquire() as conn:
                        await Repository.reconcile_later(
                            conn,
                            cid,
                            executor.clock.now() + timedelta(seconds=max(0.0, result)),
                            executor.owner,
                        )
                    return None

    async def _step(self, cid: str) -> Outcome | float:
        """The order's next step: an outcome, or the seconds until it is looked at again."""
        executor = self.executor
        config = executor.config
        async with executor.pool.acquire() as conn:
            row = await Repository.get_order(conn, cid)
        if row is None or not _unknown(row):
            return Outcome.DONE
        request = row.request
        found = await executor._lookup(row)
        now = executor.clock.now()
        if found is not None:
            outcome = await executor.record_result(row, found)
            self._resolved("found", row)
            log.info("unknown outcome resolved: found on the exchange", outcome=outcome.value)
            return outcome
        if row.settle_until is not None and now < row.settle_until:
            left = (row.settle_until - now).total_seconds()
            return min(left, config.reconcile_poll_s)
        # Conclusively not on the exchange: every request signed for it has expired.
        if not executor.can_resend(request, now):
            outcome = await executor.reject_row(
                row, RejectReason.STALE, executor.too_late_to_resend(request, now)
            )
            self._resolved("expired", row)
            return outcome
        self._resolved("resent", row)
        log.info("unknown outcome: not on the exchange after its settle time; sending again")
        try:
            with within(executor.life_s(request), executor.clock):
                return await executor.send(row)
        except (OutcomeUnknown, DuplicateClientOrderIdError) as exc:
            await executor.hand_off(request, str(exc))
            return Outcome.UNKNOWN

    def _resolved(self, result: str, row: OrderRow) -> None:
        exchange = self.executor.exchange.value
        metrics.UNKNOWN_RESOLVED.labels(exchange, result).inc()
        if row.unknown_since is not None:
            seconds = (self.executor.clock.now() - row.unknown_since).total_seconds()
            metrics.UNKNOWN_RESOLUTION.labels(exchange).observe(max(0.0, seconds))


def _unknown(row: OrderRow) -> bool:
    return (
        row.state == OrderState.SENDING
        and row.unknown_since is not None
        and row.purpose != Purpose.EXIT
    )
