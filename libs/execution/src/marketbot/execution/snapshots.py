"""Balance snapshots kept across restarts, and their refresh in the background.

``SnapshotStore`` is the ``balance_snapshots`` table: the feed writes every current
snapshot that changed (one statement for all of them, every ``flush_s``, never on an
order's path) and, less often, marks the unchanged current ones as still current
(``taken_at = now()``); at start-up, and when it takes an account over from another
replica, it loads those younger than the bound as *kept* snapshots (``balances.py``).

``BalanceRefresher`` reads again, by REST, the balance of every account whose stream came
up (start-up, reconnect): the stream's subscription is up before the read, so no change is
missed (a wallet message during the read is applied on top of it). The reads are
background work for the rate limiter (``ratelimit.background``, at the lowest priority:
at most a quarter of each per-IP budget, below the tracker's half, so protecting a
position comes first; refused rather than queued beyond it, so an order never waits for
one); a refused read waits for the time the limiter names and is tried again, so a
restart's reads are paced over the budget's windows (Binance's account read weighs 20:
500 accounts are 10,000 weight, about 7.5 minutes at a quarter of 5,400 a minute) while
the kept snapshots size the orders. While orders are being sized (an alert's burst) the
reads wait until the orders have been quiet for half a second, at most ten seconds at a
time: they never take the CPU an alert needs, and never starve under a steady trickle of
orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

import asyncpg

from marketbot.exchanges.errors import ExchangeError, RateLimited
from marketbot.exchanges.ratelimit import BACKGROUND_SHARE, background
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.venue import Balance
from marketbot.execution import metrics
from marketbot.execution.balances import StreamBalances
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.execution.snapshots")

REFRESH_SHARE = BACKGROUND_SHARE / 2
"""The share of a per-IP budget the balance refresh may use: half of what the tracker's
background work may (it protects positions, which comes first), so the tracker always
keeps a quarter of the budget to itself and the orders the other half."""


def encode(balances: Sequence[Balance]) -> str:
    return json.dumps(
        [{"asset": b.asset, "free": str(b.free), "locked": str(b.locked)} for b in balances]
    )


def decode(text: str) -> list[Balance]:
    return [
        Balance(asset=d["asset"], free=Decimal(d["free"]), locked=Decimal(d["locked"]))
        for d in json.loads(text)
    ]


class SnapshotStore:
    def __init__(self, pool: asyncpg.Pool, exchange: str) -> None:
        self.pool = pool
        self.exchange = exchange

    async def load(
        self, user_ids: Sequence[str], max_age_s: float
    ) -> dict[str, tuple[list[Balance], float]]:
        """The snapshots of these accounts known current less than ``max_age_s`` ago
        (database time), with their age in seconds."""
        if not user_ids or max_age_s <= 0:
            return {}
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT user_id, balances::text AS balances, "
                "extract(epoch FROM now() - taken_at)::float8 AS age "
                "FROM balance_snapshots WHERE exchange = $1 AND user_id = ANY($2::text[]) "
                "AND taken_at > now() - make_interval(secs => $3)",
                self.exchange,
                list(user_ids),
                max_age_s,
            )
        return {str(r["user_id"]): (decode(r["balances"]), float(r["age"])) for r in rows}

    async def save(self, snapshots: Mapping[str, Sequence[Balance]]) -> None:
        """Write these current snapshots (current as of now)."""
        if not snapshots:
            return
        users = list(snapshots)
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO balance_snapshots (exchange, user_id, balances, taken_at) "
                "SELECT $1, u.user_id, u.balances::jsonb, now() "
                "FROM unnest($2::text[], $3::text[]) AS u(user_id, balances) "
                "ON CONFLICT (exchange, user_id) DO UPDATE "
                "SET balances = EXCLUDED.balances, taken_at = EXCLUDED.taken_at",
                self.exchange,
                users,
                [encode(snapshots[u]) for u in users],
            )

    async def touch(self, user_ids: Sequence[str]) -> None:
        """These accounts' persisted snapshots are still current now."""
        if not user_ids:
            return
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE balance_snapshots SET taken_at = now() "
                "WHERE exchange = $1 AND user_id = ANY($2::text[])",
                self.exchange,
                list(user_ids),
            )


class BalanceRefresher:
    """Background REST reads of the balances whose snapshot is not current."""

    def __init__(
        self,
        balances: StreamBalances,
        signer: Callable[[str], Signer],
        *,
        followed: Callable[[str], bool],
        concurrency: int = 4,
        retry_s: float = 5.0,
        quiet_s: float = 0.5,
        max_defer_s: float = 10.0,
    ) -> None:
        self.balances = balances
        self._signer = signer
        self._followed = followed
        self._concurrency = concurrency
        self._retry_s = retry_s
        self._quiet_s = quiet_s
        self._max_defer_s = max_defer_s
        self._queue: dict[str, None] = {}
        """Accounts to read, in order (a dict: each once)."""
        self._held: set[str] = set()
        """Accounts a worker is on (waiting or reading): never two reads of one at once; one
        enqueued again meanwhile waits in the queue, and is skipped if the read made it
        current."""
        self._wake = asyncio.Event()
        self._resume_at = 0.0
        """After a refusal for budget: no read before this (event-loop time)."""
        self._workers: list[asyncio.Task[None]] = []
        self.refreshed = 0
        self.exchange = balances.venue.exchange.value

    @property
    def pending(self) -> int:
        return len(self._queue)

    def enqueue(self, user_id: str) -> None:
        self._queue[user_id] = None
        self._wake.set()
        self._gauge()

    def first(self, user_id: str) -> None:
        """Read this account before every other one waiting (its snapshot was refused)."""
        self._queue.pop(user_id, None)
        self._queue = {user_id: None, **self._queue}
        self._wake.set()
        self._gauge()

    def _gauge(self) -> None:
        metrics.BALANCE_REFRESH_PENDING.labels(self.exchange).set(len(self._queue))

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"balance-refresh-{i}")
            for i in range(self._concurrency)
        ]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(BaseException):
                await task
        self._workers = []

    async def _next(self) -> str:
        while True:
            wait = self._resume_at - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            user_id = next((u for u in self._queue if u not in self._held), None)
            if user_id is not None:
                del self._queue[user_id]
                self._held.add(user_id)
                self._gauge()
                return user_id
            self._wake.clear()
            await self._wake.wait()

    async def _after_orders(self) -> None:
        """While orders are being sized (an alert's burst), wait until they have been quiet
        for ``quiet_s``, at most ``max_defer_s``: the refresh is lower priority than orders
        for the CPU too, and never starves under a steady trickle of them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_defer_s
        while True:
            now = loop.time()
            wait = min(self.balances.sized_at + self._quiet_s, deadline) - now
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def _work(self) -> None:
        while True:
            user_id = await self._next()
            try:
                await self._refresh(user_id)
            finally:
                self._held.discard(user_id)
                if user_id in self._queue:
                    self._wake.set()

    async def _refresh(self, user_id: str) -> None:
        await self._after_orders()
        balances = self.balances
        if not self._followed(user_id) or not balances.live(user_id):
            return  # not ours, or down: the next (re)connect asks again
        if balances.current(user_id):
            return  # a complete wallet message, or an order's own read, was newer
        try:
            with background(REFRESH_SHARE):
                if await balances.refresh(user_id, self._signer(user_id)):
                    self.refreshed += 1
        except RateLimited as exc:
            # No background budget now: wait as long as the limiter says (the orders
            # keep the rest), then go on with this account first.
            self.first(user_id)
            loop = asyncio.get_running_loop()
            self._resume_at = max(self._resume_at, loop.time() + exc.retry_after_s)
        except ExchangeError as exc:
            log.info("balance not refreshed; retrying", user=user_id, error=str(exc))
            await asyncio.sleep(self._retry_s)
            if user_id not in self._queue:
                self.enqueue(user_id)
        except Exception:
            log.exception("balance refresh failed; retrying", user=user_id)
            await asyncio.sleep(self._retry_s)
            if user_id not in self._queue:
                self.enqueue(user_id)
