"""The private streams drive the position lifecycle; REST only reconciles.

``StreamFeed`` opens the exchange's streams (``marketbot.exchanges.userstreams``) for every
account the executor follows (those with open positions or orders at start, and every
account it gets a request for) and turns their reports into the lifecycle's steps:

* **Order reports** (Bybit ``order`` + ``execution``, Binance ``executionReport``) are
  gathered per exchange order id until the order is final and its trades add up to what it
  filled (Bybit sends the trades on their own topic, after the order). Then the order is
  recorded like any answer of the exchange: an entry fill opens and protects a position, a
  close or exit order's fill closes the positions it sells (``OrderExecutor.record_result``);
  a native exit leg that filled closes its position (``PositionKeeper.record_exit``); a leg
  that ended unfilled is left a moment for its sibling's fill (an OCO's other leg expires
  when one executes) and is then looked at once by REST (``check``: protect anew).
* **Balance reports** keep the sizing balance (``balances.StreamBalances``), persisted off
  the hot path so a restart starts from it (``snapshots.py``), and read again by REST in
  the background once the stream is up (``snapshots.BalanceRefresher``).
* **Price reports** (Bybit public tickers) fire the watched legs: the take profit Bybit's
  spot orders cannot carry is reached from the pushed price, not from a poll. Only the
  replica that follows an account (holds its lease) fires its watched legs.

REST is used only to reconcile: when an account's stream comes up (start-up) and after
every reconnect (what happened in the gap), for each of its unfinished orders (a lookup by
client id) and open positions (the account's open orders once, then the legs by id of
those not among them); the balance snapshot is read again then, in the background. What it
finds that the stream had not reported is counted in
``marketbot_execution_stream_corrections_total`` (0 while nothing is missed). The tracker
leaves a live account's protected positions and acknowledged orders alone (no polling in
steady state); it still retries what needs action (an unprotected position, an exit whose
outcome is unknown) and looks up an acknowledged order that no report finished within
``stale_order_s`` (counted as a correction).

Every step runs under the executor's per-(user, symbol) lock, so a report and the request
path never act on one order at once; reports of one account are handled in arrival order
by one worker per account.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from marketbot.contracts import Side
from marketbot.exchanges.errors import ExchangeError
from marketbot.exchanges.reports import (
    BalanceReport,
    OrderReport,
    PriceReport,
    Report,
    StreamTerminated,
    TradeReport,
)
from marketbot.exchanges.userstreams import UserStreams
from marketbot.exchanges.venue import ExitLeg, Fill, OrderState, Protection, ProtectionSpec
from marketbot.execution import metrics
from marketbot.execution.balances import StreamBalances
from marketbot.execution.domain.lifecycle import (
    FireExit,
    Phase,
    Protect,
    RecordExit,
    Reprotect,
    exit_side,
    next_step,
)
from marketbot.execution.fills import FillsIncompleteError
from marketbot.execution.leases import FollowLeases
from marketbot.execution.placement import OrderExecutor
from marketbot.execution.repository import OrderRow, PositionRow, Repository, legs_from_json
from marketbot.execution.repository import OrderState as RowState
from marketbot.execution.snapshots import BalanceRefresher, SnapshotStore
from marketbot.runtime.db import Conn
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.execution.streamfeed")

_EPOCH = datetime.fromtimestamp(0, tz=UTC)

StreamsFactory = Callable[..., UserStreams]
"""``(on_report=, on_connected=) -> UserStreams`` (``create_user_streams`` bound to
the exchange and its URL)."""


@dataclass(frozen=True, slots=True)
class FeedConfig:
    fill_grace_s: float = 2.0
    """A final order whose trades have not all arrived is recorded from REST trade records
    after this long (Bybit pushes ``execution`` after ``order``)."""
    leg_grace_s: float = 2.0
    """A leg that ended unfilled waits this long for its sibling's fill before a REST look."""
    stale_order_s: float = 30.0
    """An acknowledged order no report finished within this long is looked up by REST."""
    watch_sync_s: float = 1.0
    """How often the watched exits are re-read from the database (no exchange request)."""
    reconcile_concurrency: int = 8
    reconcile_retry_s: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0, 60.0)
    idle_s: float = 900.0
    """An account with nothing open and no request or report this long is not followed."""
    sweep_s: float = 60.0
    fire_concurrency: int = 64
    """Watched exits fired at once (a price that reaches many take profits)."""
    follow_lease_s: float = 30.0
    """How long a replica's hold on an account's stream lasts unless renewed (leases.py)."""
    lease_renew_s: float = 5.0
    """How often the leases are renewed, lapsed ones taken over and the others' re-read."""
    snapshot_max_age_s: float = 900.0
    """A balance snapshot kept from before a restart (or a reconnect) sizes orders until its
    refresh only while it was known current less than this long ago (0: never)."""
    snapshot_flush_s: float = 1.0
    """How often the changed current snapshots are written (one statement)."""
    refresh_concurrency: int = 4
    """Background balance reads in flight at once (paced by the limiter's background share)."""

    @property
    def snapshot_touch_s(self) -> float:
        """How often unchanged current snapshots are marked current in the table: a
        quarter of the bound (so a restarted replica sees them young), within 1-60 s."""
        return min(60.0, max(self.snapshot_flush_s, self.snapshot_max_age_s / 4))


@dataclass(slots=True)
class _Pending:
    """One exchange order's reports so far."""

    user_id: str
    state: OrderState | None = None
    fills: dict[str, Fill] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Watched:
    entry_id: str
    user_id: str
    symbol: str
    phase: Phase
    exit_side: Side
    legs: tuple[ExitLeg, ...]


class FeedQueries:
    """The feed's own reads of the executor's tables."""

    @staticmethod
    async def users_to_follow(conn: Conn) -> list[str]:
        rows = await conn.fetch(
            "SELECT user_id FROM positions WHERE status = 'OPEN' "
            "UNION SELECT user_id FROM orders WHERE state IN ('SENDING', 'PLACED')"
        )
        return sorted(str(r["user_id"]) for r in rows)

    @staticmethod
    async def unfinished_orders(conn: Conn, user_id: str, before: datetime) -> list[OrderRow]:
        """Sent, unfinished orders last changed before ``before`` (the stream came up then:
        what changed later was done while it was up, and its reports follow)."""
        records = await conn.fetch(
            "SELECT * FROM orders WHERE user_id = $1 AND state IN ('SENDING', 'PLACED') "
            "AND (state = 'PLACED' OR attempts > 0) AND updated_at < $2 ORDER BY created_at",
            user_id,
            before,
        )
        return [OrderRow.from_record(r) for r in records]

    @staticmethod
    async def changed_since(conn: Conn, client_order_id: str, moment: datetime) -> bool:
        changed = await conn.fetchval(
            "SELECT updated_at >= $2 FROM orders WHERE client_order_id = $1",
            client_order_id,
            moment,
        )
        return bool(changed)

    @staticmethod
    async def open_positions(conn: Conn, user_id: str) -> list[PositionRow]:
        records = await conn.fetch(
            "SELECT * FROM positions WHERE user_id = $1 AND status = 'OPEN' ORDER BY opened_at",
            user_id,
        )
        return [PositionRow.from_record(r) for r in records]

    @staticmethod
    async def position_by_leg(conn: Conn, user_id: str, leg_id: str) -> PositionRow | None:
        record = await conn.fetchrow(
            "SELECT * FROM positions WHERE user_id = $1 AND status = 'OPEN' AND exits @> $2::jsonb",
            user_id,
            f'[{{"client_order_id": "{leg_id}"}}]',
        )
        return PositionRow.from_record(record) if record is not None else None

    @staticmethod
    async def watched(conn: Conn) -> list[_Watched]:
        """Open positions with a leg the platform watches, not being closed (only the
        columns the price check needs: this runs every second)."""
        records = await conn.fetch(
            "SELECT entry_client_order_id, user_id, symbol, side, phase, exits FROM positions "
            "WHERE status = 'OPEN' AND closing_order IS NULL "
            "AND exits @> '[{\"native\": false}]'::jsonb"
        )
        return [
            _Watched(
                entry_id=r["entry_client_order_id"],
                user_id=r["user_id"],
                symbol=r["symbol"],
                phase=Phase(r["phase"]),
                exit_side=exit_side(Side(r["side"])),
                legs=legs_from_json(r["exits"]),
            )
            for r in records
        ]

    @staticmethod
    async def placed_overdue(conn: Conn, before: datetime, limit: int) -> list[OrderRow]:
        records = await conn.fetch(
            "SELECT * FROM orders WHERE state = 'PLACED' AND updated_at <= $1 "
            "ORDER BY updated_at LIMIT $2",
            before,
            limit,
        )
        return [OrderRow.from_record(r) for r in records]

    @staticmethod
    async def due_now(conn: Conn, entry_id: str, now: datetime) -> None:
        await conn.execute(
            "UPDATE positions SET next_check_at = $2 WHERE entry_client_order_id = $1 "
            "AND status = 'OPEN'",
            entry_id,
            now,
        )


class StreamFeed:
    def __init__(
        self,
        executor: OrderExecutor,
        streams: StreamsFactory,
        *,
        config: FeedConfig | None = None,
    ) -> None:
        self.executor = executor
        self.config = config or FeedConfig()
        self.exchange = executor.exchange.value
        # The streams keep the exchange's real time (their signatures are checked against
        # it), whatever clock drives the executor's own schedule.
        self.streams = streams(on_report=self._report, on_connected=self._connected)
        self.balances = StreamBalances(
            executor.venue,
            live=self.live,
            monotonic=executor.clock.monotonic,
            max_age_s=self.config.snapshot_max_age_s,
        )
        self.snapshots = SnapshotStore(executor.pool, self.exchange)
        self.refresher = BalanceRefresher(
            self.balances,
            lambda user_id: executor.signers(user_id, executor.exchange),
            followed=lambda user_id: user_id in self._owned,
            concurrency=self.config.refresh_concurrency,
        )
        self.balances.on_refused = self.refresher.first
        self._snapshot_task: asyncio.Task[None] | None = None
        self.fired = 0
        """Watched exits this replica fired (it follows their accounts)."""
        self._pending: dict[str, _Pending] = {}
        self._queues: dict[str, asyncio.Queue[Report | None]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconcile_limit = asyncio.Semaphore(self.config.reconcile_concurrency)
        self._fire_limit = asyncio.Semaphore(self.config.fire_concurrency)
        self._watched: dict[str, list[_Watched]] = {}
        self._fired: set[str] = set()
        self._prices: dict[str, Decimal] = {}
        self._price_tasks: dict[str, asyncio.Task[None]] = {}
        self._sync_task: asyncio.Task[None] | None = None
        self._dirty = asyncio.Event()
        self._active: dict[str, float] = {}
        """Last request or report per followed account (monotonic)."""
        self.leases = FollowLeases(
            executor.pool, self.exchange, executor.owner, self.config.follow_lease_s
        )
        self._owned: set[str] = set()
        """The accounts whose lease this replica holds (it follows their streams)."""
        self._wanted: set[str] = set()
        """Accounts this replica would follow: it takes them over when their lease lapses."""
        self._elsewhere: dict[str, bool] = {}
        """Accounts another replica follows, and whether its stream covers each."""
        self.reconciliations = 0
        """Reconciliations started."""
        self.reconciled = 0
        """Reconciliations finished."""
        self.corrections = 0

    # ---- what the executor and the tracker ask -----------------------------------------

    def live(self, user_id: str) -> bool:
        return self.streams.live(user_id)

    def covers(self, user_id: str) -> bool:
        """Whether the stream answers for this account: live, or down for less than
        ``stale_order_s`` (the reconciliation after the reconnect recovers the gap; an
        account down longer, or never up, is polled by the tracker). For an account
        another replica follows, that replica's own answer (renewed with its lease)."""
        if user_id not in self._owned:
            elsewhere = self._elsewhere.get(user_id)
            if elsewhere is not None:
                return elsewhere
        return self._covers_here(user_id)

    def _covers_here(self, user_id: str) -> bool:
        down = self.streams.down_for(user_id)
        return down is None or down < self.config.stale_order_s

    def watching(self, symbol: str) -> bool:
        return self.streams.watching(symbol)

    def follows_prices(self, position: PositionRow) -> bool:
        """Whether every watched leg of ``position`` is fired from pushed prices: by this
        replica when it follows the account, else by the replica that does (its stream
        covering the account: ``covers``; its own tracker polls what it cannot watch)."""
        if all(leg.native for leg in position.legs):
            return True
        if position.user_id not in self._owned and self._elsewhere.get(position.user_id):
            return True
        return position.user_id in self._owned and self.watching(position.symbol)

    async def follow(self, user_id: str) -> None:
        """Receive this account's events (idempotent; the connection opens in background),
        unless another replica follows it (its lease: it is taken over if that lapses)."""
        self._active[user_id] = self.executor.clock.monotonic()
        self._wanted.add(user_id)
        if user_id not in self._owned:
            if user_id in self._elsewhere:
                return  # another replica's; the renewal pass takes it over if it lapses
            await self._take([user_id])
            if user_id not in self._owned:
                return
        await self.streams.add(user_id, self.executor.signers(user_id, self.executor.exchange))

    async def _take(self, user_ids: Sequence[str]) -> list[str]:
        """Acquire the leases of these accounts that are free; follow those taken."""
        taken = await self.leases.acquire(user_ids)
        new = [u for u in user_ids if u in taken and u not in self._owned]
        if new:
            # The balance snapshot kept across restarts (written by whichever replica
            # followed the account), before the stream's first wallet message applies on
            # top of it; the refresh after the stream comes up reads it again.
            await self._restore([u for u in new if not self.balances.known(u)])
            self._dirty.set()  # their watched exits are this replica's now
        for user_id in new:
            self._owned.add(user_id)
            self._elsewhere.pop(user_id, None)
            await self.streams.add(user_id, self.executor.signers(user_id, self.executor.exchange))
        return new

    async def renew(self) -> None:
        """Renew this replica's leases (with whether its stream covers each account), stop
        following the accounts another replica took over, take over the lapsed leases of
        the accounts it wants, and re-read which accounts the others follow."""
        kept = await self.leases.renew({u: self._covers_here(u) for u in sorted(self._owned)})
        lost = sorted(self._owned - kept)
        for user_id in lost:
            self._owned.discard(user_id)
            self.balances.forget(user_id)
            await self.streams.remove(user_id)
        if lost:
            self._dirty.set()  # their watched exits are the new follower's
            log.warning("accounts taken over by another replica", count=len(lost))
        wanted = sorted(self._wanted - self._owned)
        if wanted:
            taken = await self._take(wanted)
            if taken:
                log.info("followed accounts whose lease had lapsed", count=len(taken))
        self._elsewhere = await self.leases.others()

    async def sweep(self) -> list[str]:
        """Stop following accounts with nothing open and no request for ``idle_s``: each
        Bybit account holds a connection of the egress IP's limited budget."""
        async with self.executor.pool.acquire() as conn:
            needed = set(await FeedQueries.users_to_follow(conn))
        now = self.executor.clock.monotonic()
        idle = [
            user_id
            for user_id in self.streams.users()
            if user_id not in needed
            and now - self._active.get(user_id, now) >= self.config.idle_s
            and self._queues.get(user_id) is None
        ]
        for user_id in idle:
            self._active.pop(user_id, None)
            self.balances.forget(user_id)
            self._owned.discard(user_id)
            await self.streams.remove(user_id)
        if idle:
            await self.leases.release(idle)
        # What this replica takes over if its follower stops: every account with something
        # open (another replica may have opened it), and those it had requests for lately.
        self._wanted = needed | {
            u for u in self._wanted if now - self._active.get(u, now) < self.config.idle_s
        }
        self._wanted -= set(idle)
        if idle:
            log.info("stopped following idle accounts", count=len(idle))
        return idle

    async def start(self) -> None:
        """Follow every account with open positions or unfinished orders; watch prices."""
        async with self.executor.pool.acquire() as conn:
            users = await FeedQueries.users_to_follow(conn)
        now = self.executor.clock.monotonic()
        for user_id in users:
            self._active[user_id] = now
        self._wanted.update(users)
        await self._take(users)
        self._elsewhere = await self.leases.others()
        await self._sync_watched()
        self.refresher.start()
        self._sync_task = asyncio.create_task(self._sync_loop(), name="stream-feed-watch")
        self._snapshot_task = asyncio.create_task(
            self._snapshot_loop(), name="stream-feed-snapshots"
        )

    async def stop(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
            with contextlib.suppress(BaseException):
                await self._snapshot_task
        await self.refresher.stop()
        try:
            # Every current snapshot as of now, while the streams are still up: the next
            # start (this replica's or another's) sizes from them.
            await self._persist(touch=True)
        except Exception as exc:
            log.warning("balance snapshots not written at stop", error=repr(exc))
        await self.streams.stop()
        try:
            await self.leases.release()  # another replica takes the accounts over now
        except Exception as exc:
            log.warning("stream leases not released; they lapse", error=repr(exc))
        self._owned.clear()
        for pending in self._pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
        tasks = [*self._workers.values(), *self._tasks, *self._price_tasks.values()]
        if self._sync_task is not None:
            tasks.append(self._sync_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    # ---- reports ---------------------------------------------------------------------

    async def _report(self, report: Report) -> None:
        """Called in arrival order by the stream's reader: route, never block on work."""
        if isinstance(report, PriceReport):
            metrics.STREAM_REPORTS.labels(self.exchange, "price", "received").inc()
            self._price(report)
            return
        if isinstance(report, BalanceReport):
            metrics.STREAM_REPORTS.labels(self.exchange, "balance", "applied").inc()
            self.balances.apply(report)
            return
        self._active[report.user_id] = self.executor.clock.monotonic()
        queue = self._queues.get(report.user_id)
        if queue is not None:
            queue.put_nowait(report)
            return
        queue = self._queues[report.user_id] = asyncio.Queue()
        queue.put_nowait(report)
        self._workers[report.user_id] = asyncio.create_task(
            self._work(report.user_id, queue),
            name=f"stream-feed-{report.user_id}",
            context=contextvars.Context(),
        )

    async def _work(self, user_id: str, queue: asyncio.Queue[Report | None]) -> None:
        """One account's reports in arrival order; the worker ends once its queue is empty
        (the next report starts a new one)."""
        try:
            while True:
                try:
                    report = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if report is None:
                    return
                try:
                    await self._handle(report)
                except Exception:
                    log.exception("stream report not applied; reconciliation will find it")
        finally:
            if self._queues.get(user_id) is queue and queue.empty():
                del self._queues[user_id]
                self._workers.pop(user_id, None)

    async def _handle(self, report: Report) -> None:
        if isinstance(report, StreamTerminated):
            # Subscribed again and refreshed (as after a reconnect); kept meanwhile.
            self.balances.interrupted(report.user_id)
            return
        if isinstance(report, OrderReport):
            state = report.state
            self._lag(report.received_ms, state.fills, report.event_ms)
            pending = self._pending.setdefault(state.exchange_order_id, _Pending(report.user_id))
            for fill in state.fills:
                pending.fills[fill.trade_id or f"{len(pending.fills)}"] = fill
            pending.state = replace(state, fills=())
            metrics.STREAM_REPORTS.labels(self.exchange, "order", "received").inc()
            await self._advance(state.exchange_order_id)
        elif isinstance(report, TradeReport):
            fill = report.fill
            self._lag(report.received_ms, (fill,), report.event_ms)
            order_id = fill.exchange_order_id or ""
            pending = self._pending.setdefault(order_id, _Pending(report.user_id))
            pending.fills[fill.trade_id or f"{len(pending.fills)}"] = fill
            metrics.STREAM_REPORTS.labels(self.exchange, "trade", "received").inc()
            await self._advance(order_id)

    def _lag(self, received_ms: int, fills: Sequence[Fill], event_ms: int | None) -> None:
        for fill in fills:
            if fill.filled_at is not None:
                lag = received_ms / 1000 - fill.filled_at.timestamp()
                metrics.STREAM_LAG.labels(self.exchange).observe(max(0.0, lag))
                return
        if fills and event_ms is not None:
            metrics.STREAM_LAG.labels(self.exchange).observe(
                max(0.0, (received_ms - event_ms) / 1000)
            )

    async def _advance(self, order_id: str, *, timed_out: bool = False) -> None:
        pending = self._pending.get(order_id)
        if pending is None or pending.state is None or not pending.state.status.is_final:
            return
        fills = tuple(
            sorted(
                pending.fills.values(),
                key=lambda f: (f.filled_at or _EPOCH, f.trade_id or ""),
            )
        )
        state = replace(pending.state, fills=fills)
        traded = sum((f.quantity for f in fills), Decimal(0))
        if traded != state.filled_quantity and not timed_out:
            if pending.timer is None:
                loop = asyncio.get_running_loop()
                pending.timer = loop.call_later(
                    self.config.fill_grace_s, self._grace_over, pending.user_id, order_id
                )
            return
        if pending.timer is not None:
            pending.timer.cancel()
        del self._pending[order_id]
        if timed_out and traded != state.filled_quantity:
            # Recorded from the REST trade records (``summarize`` reads them).
            state = replace(state, fills=())
        await self._final(pending.user_id, state)

    def _grace_over(self, user_id: str, order_id: str) -> None:
        del user_id
        task = asyncio.ensure_future(self._advance(order_id, timed_out=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _final(self, user_id: str, state: OrderState) -> None:
        """A final order report with its trades: record it where it belongs."""
        executor = self.executor
        cid = state.client_order_id
        if not cid:
            metrics.STREAM_REPORTS.labels(self.exchange, "order", "unknown_id").inc()
            return
        # An order of this executor's is read once, under its (user, symbol) lock, and
        # recorded there; the reads of the reports handled in one tick are one statement.
        async with executor.locks.hold(user_id, state.symbol):
            row = await executor.order_rows.get(cid)
            if row is not None:
                await self._record_order(row, state)
                return
        async with executor.pool.acquire() as conn:
            position = await FeedQueries.position_by_leg(conn, user_id, cid)
        if position is not None:
            leg = next(leg for leg in position.legs if leg.client_order_id == cid)
            if state.filled_quantity <= 0 and position.closing_order is not None:
                # Cancelled by the close under way (a fired exit, a close signal): nothing
                # to record or look at (a close that ends unfilled leaves the position
                # UNPROTECTED, which the tracker protects anew).
                metrics.STREAM_REPORTS.labels(self.exchange, "leg", "closing").inc()
                return
            await self._record_leg(position, leg, state)
            return
        metrics.STREAM_REPORTS.labels(self.exchange, "order", "unknown_id").inc()

    async def _record_order(self, row: OrderRow, state: OrderState) -> None:
        """Called under the order's (user, symbol) lock, ``row`` read under it."""
        executor = self.executor
        if row.state in RowState.FINAL:
            # Already recorded (Binance's FULL response, or the request path's lookup).
            metrics.STREAM_REPORTS.labels(self.exchange, "order", "already").inc()
            return
        try:
            await executor.record_result(row, state)
        except (ExchangeError, FillsIncompleteError) as exc:
            log.info("stream fill not recorded yet; reconciliation retries", error=str(exc))
            return
        metrics.STREAM_REPORTS.labels(self.exchange, "order", "recorded").inc()
        await self._sync_soon()

    async def _record_leg(self, position: PositionRow, leg: ExitLeg, state: OrderState) -> None:
        executor = self.executor
        async with executor.locks.hold(position.user_id, position.symbol):
            async with executor.pool.acquire() as conn:
                fresh = await Repository.get_position(conn, position.entry_client_order_id)
            if fresh is None or fresh.status != "OPEN":
                metrics.STREAM_REPORTS.labels(self.exchange, "leg", "already").inc()
                return
            if state.filled_quantity > 0:
                try:
                    closed = await executor.positions.record_exit(fresh, leg, state=state)
                except (ExchangeError, FillsIncompleteError) as exc:
                    log.info("exit fill not recorded yet", error=str(exc))
                    return
                effect = "closed" if closed else "not_closed"
                metrics.STREAM_REPORTS.labels(self.exchange, "leg", effect).inc()
                await self._sync_soon()
                return
        # Ended unfilled: an OCO's other leg expires when one executes (its fill report may
        # follow); after the grace a position still open is looked at by REST (protected
        # anew if its legs ended outside the platform).
        metrics.STREAM_REPORTS.labels(self.exchange, "leg", "ended_unfilled").inc()
        self._later(self.config.leg_grace_s, self._leg_check, position.entry_client_order_id)

    async def _leg_check(self, entry_id: str) -> None:
        executor = self.executor
        async with executor.pool.acquire() as conn:
            position = await Repository.get_position(conn, entry_id)
            if position is None or position.status != "OPEN":
                return
            await FeedQueries.due_now(conn, entry_id, executor.clock.now())

    def _later(self, delay_s: float, work: Callable[[str], Awaitable[None]], entry_id: str) -> None:
        async def run() -> None:
            await asyncio.sleep(delay_s)
            await work(entry_id)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- reconciliation (start-up, reconnect) -------------------------------------------

    async def _connected(self, user_ids: Sequence[str], reconnected: bool) -> None:
        cause = "reconnect" if reconnected else "start"
        up_at = self.executor.clock.now()
        for user_id in user_ids:
            # The subscription is up: the balance is read again in the background (what it
            # became during the gap is unknown; the kept snapshot sizes orders meanwhile,
            # within its age bound), and the wallet stream keeps it from there.
            self.balances.connected(user_id)
            self.refresher.enqueue(user_id)
            task = asyncio.ensure_future(self._reconcile_guarded(user_id, cause, up_at))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _reconcile_guarded(self, user_id: str, cause: str, up_at: datetime) -> None:
        """Reconcile, again after a failure (rate limit, timeout) while the stream stays
        up; if it falls, the next connection reconciles anyway."""
        for delay in (*self.config.reconcile_retry_s, None):
            async with self._reconcile_limit:
                try:
                    await self.reconcile(user_id, cause, up_at)
                    return
                except Exception as exc:
                    log.warning("reconciliation failed; retrying", user=user_id, error=repr(exc))
            if delay is None or not self.live(user_id):
                return
            await asyncio.sleep(delay)

    async def reconcile(self, user_id: str, cause: str, up_at: datetime | None = None) -> int:
        """What the exchange says of the account's unfinished orders and open positions;
        returns the corrections made (its balance is read by the refresher). ``up_at``:
        when the stream came up (orders changed since were sent while it was up: their
        reports follow)."""
        executor = self.executor
        metrics.STREAM_RECONCILIATIONS.labels(self.exchange, cause).inc()
        self.reconciliations += 1
        corrections = 0
        async with executor.pool.acquire() as conn:
            orders = await FeedQueries.unfinished_orders(
                conn, user_id, up_at or executor.clock.now()
            )
            positions = await FeedQueries.open_positions(conn, user_id)
        for row in orders:
            if await self._reconcile_order(row, up_at):
                corrections += 1
                metrics.STREAM_CORRECTIONS.labels(self.exchange, "order").inc()
        working = await self._working(user_id, positions)
        for position in positions:
            if await self._reconcile_position(position, working.get(position.spec())):
                corrections += 1
                metrics.STREAM_CORRECTIONS.labels(self.exchange, "position").inc()
        self.corrections += corrections
        if corrections:
            log.warning(
                "reconciliation found what the stream had not reported",
                user=user_id,
                cause=cause,
                corrections=corrections,
            )
        self.reconciled += 1
        await self._sync_soon()
        return corrections

    # ---- balance snapshots kept across restarts (snapshots.py) --------------------------

    async def _restore(self, user_ids: Sequence[str]) -> None:
        try:
            found = await self.snapshots.load(user_ids, self.config.snapshot_max_age_s)
        except Exception as exc:  # the orders read their balances by REST instead
            log.warning("balance snapshots not loaded", error=repr(exc))
            return
        for user_id, (balances, age_s) in found.items():
            self.balances.restore(user_id, balances, age_s)
        if found:
            log.info("balance snapshots restored", count=len(found), of=len(user_ids))

    async def _persist(self, *, touch: bool) -> None:
        """Write the current snapshots that changed; with ``touch`` mark the others still
        current too (both in one statement each, for every account)."""
        balances = self.balances
        live = set(balances.confirm_live()) & self._owned
        changed = sorted(balances.dirty & live)
        balances.dirty.difference_update(changed)
        try:
            await self.snapshots.save({u: balances.snapshot(u) for u in changed})
            if touch:
                await self.snapshots.touch(sorted(live - set(changed)))
        except BaseException:
            balances.dirty.update(changed)  # written at the next pass
            raise

    async def _snapshot_loop(self) -> None:
        touched = self.executor.clock.monotonic()
        while True:
            await asyncio.sleep(self.config.snapshot_flush_s)
            try:
                now = self.executor.clock.monotonic()
                touch = now - touched >= self.config.snapshot_touch_s
                await self._persist(touch=touch)
                if touch:
                    touched = now
            except Exception as exc:
                log.warning("balance snapshots not written; retrying", error=repr(exc))

    async def _reconcile_order(self, row: OrderRow, up_at: datetime | None) -> bool:
        executor = self.executor
        request = row.request
        async with executor.locks.hold(request.user_id, request.symbol):
            async with executor.pool.acquire() as conn:
                fresh = await Repository.get_order(conn, row.client_order_id)
                if up_at is not None and await FeedQueries.changed_since(
                    conn, row.client_order_id, up_at
                ):
                    # Sent (or answered) while the stream was up: its reports follow.
                    return False
            if (
                fresh is None
                or fresh.state in RowState.FINAL
                or not (fresh.state == RowState.PLACED or fresh.maybe_sent)
            ):
                return False
            found = await executor.venue.get_order(
                executor.signers(request.user_id, request.exchange),
                request.symbol,
                client_order_id=fresh.client_order_id,
            )
            if found is None or not found.status.is_final:
                return False  # still working, or not found: the request path resolves it
            await executor.record_result(fresh, found)
            return True

    async def _working(
        self, user_id: str, positions: Sequence[PositionRow]
    ) -> dict[ProtectionSpec, Protection]:
        """The protected positions whose legs are all still open, from the account's open
        orders: one read (paged) for the account, not one per position. The others (a leg
        ended during the gap) are then looked up one by one."""
        specs = [
            p.spec() for p in positions if p.phase is Phase.PROTECTED and p.closing_order is None
        ]
        if not specs:
            return {}
        executor = self.executor
        by_id = await executor.venue.working_protections(
            executor.signers(user_id, executor.exchange), specs
        )
        return {spec: by_id[spec.client_id] for spec in specs if spec.client_id in by_id}

    async def _reconcile_position(
        self, position: PositionRow, working: Protection | None = None
    ) -> bool:
        """One ``check`` of the position (its legs by id, unless the account's open orders
        showed them all open: ``working``, for the spec it was read with); a correction when
        it closed."""
        executor = self.executor
        async with executor.locks.hold(position.user_id, position.symbol):
            async with executor.pool.acquire() as conn:
                fresh = await Repository.get_position(conn, position.entry_client_order_id)
            if fresh is None or fresh.status != "OPEN" or fresh.phase is not Phase.PROTECTED:
                return False  # the tracker retries an unprotected one
            if fresh.closing_order is not None:
                return False
            protection: Protection | None
            if working is not None and fresh.spec() == position.spec():
                protection = working
            else:
                protection = await executor.venue.protection(
                    executor.signers(fresh.user_id, fresh.request.exchange), fresh.spec()
                )
            step = next_step(fresh.phase, fresh.exit_side, protection, None)
            if isinstance(step, RecordExit):
                return await executor.positions.record_exit(fresh, step.leg)
            if isinstance(step, Protect | Reprotect):
                # Its legs ended (or vanished) while the stream was down: the tracker
                # protects it anew.
                async with executor.pool.acquire() as conn:
                    await FeedQueries.due_now(
                        conn, fresh.entry_client_order_id, executor.clock.now()
                    )
                return True
            return False

    # ---- stale acknowledged orders (the tracker's safety net) ---------------------------

    async def overdue_orders(self, limit: int) -> list[OrderRow]:
        """Acknowledged orders of live accounts that no report finished in time."""
        before = self.executor.clock.now() - timedelta(seconds=self.config.stale_order_s)
        async with self.executor.pool.acquire() as conn:
            rows = await FeedQueries.placed_overdue(conn, before, limit)
        return rows

    # ---- watched exits from pushed prices ---------------------------------------------

    def _price(self, report: PriceReport) -> None:
        self._prices[report.symbol] = report.price
        running = self._price_tasks.get(report.symbol)
        if running is not None and not running.done():
            return  # the running check reads the latest price when it loops
        symbol = report.symbol
        task = asyncio.create_task(self._fire_reached(symbol))
        self._price_tasks[symbol] = task

        def done(_task: asyncio.Task[None]) -> None:
            self._price_tasks.pop(symbol, None)

        task.add_done_callback(done)

    async def _fire_reached(self, symbol: str) -> None:
        """Fire every watched leg the latest price reached, concurrently (each under its
        user's lock), and again while newer prices arrive."""
        seen: Decimal | None = None
        while (price := self._prices.get(symbol)) is not None and price != seen:
            seen = price
            due: list[tuple[_Watched, ExitLeg]] = []
            for watched in list(self._watched.get(symbol, ())):
                if watched.entry_id in self._fired or watched.user_id not in self._owned:
                    continue  # fired already, or followed by another replica now
                step = next_step(
                    watched.phase, watched.exit_side, Protection(legs=watched.legs), price
                )
                if isinstance(step, FireExit):
                    self._fired.add(watched.entry_id)
                    due.append((watched, step.leg))
            if due:
                await asyncio.gather(*(self._fire(w, leg) for w, leg in due))

    async def _fire(self, watched: _Watched, leg: ExitLeg) -> None:
        executor = self.executor
        try:
            async with self._fire_limit, executor.locks.hold(watched.user_id, watched.symbol):
                async with executor.pool.acquire() as conn:
                    fresh = await Repository.get_position(conn, watched.entry_id)
                if fresh is None or fresh.status != "OPEN" or fresh.closing_order is not None:
                    return
                if watched.user_id not in self._owned:
                    return  # taken over meanwhile: the new follower fires it
                # The leg as the position holds it now: the watched copy may be a second
                # old, from before the position was protected anew (another generation).
                current = next(
                    (
                        held
                        for held in fresh.legs
                        if held.kind is leg.kind
                        and not held.native
                        and held.trigger_price == leg.trigger_price
                    ),
                    None,
                )
                if current is None:
                    self._fired.discard(watched.entry_id)  # legs changed: the next read has them
                    return
                metrics.STREAM_REPORTS.labels(self.exchange, "price", "fired").inc()
                self.fired += 1
                await executor.positions.fire_exit(fresh, current)
        except Exception as exc:
            # Left to the tracker (the exit order row, if recorded, is resumed there).
            self._fired.discard(watched.entry_id)
            log.warning("watched exit not fired from the stream", error=repr(exc))

    async def _sync_loop(self) -> None:
        """Re-read the watched exits every ``watch_sync_s``, or soon after a change (a burst
        of changes is one read); now and then, stop following idle accounts."""
        swept = renewed = self.executor.clock.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._dirty.wait(), min(self.config.watch_sync_s, self.config.lease_renew_s)
                )
            await asyncio.sleep(0.05)
            self._dirty.clear()
            try:
                if self.executor.clock.monotonic() - renewed >= self.config.lease_renew_s:
                    renewed = self.executor.clock.monotonic()
                    await self.renew()
                await self._sync_watched()
                if self.executor.clock.monotonic() - swept >= self.config.sweep_s:
                    swept = self.executor.clock.monotonic()
                    await self.sweep()
            except Exception:
                log.exception("watched exits not re-read")

    async def _sync_soon(self) -> None:
        self._dirty.set()

    async def _sync_watched(self) -> None:
        """The watched exits of the accounts this replica follows (holds the lease of):
        one replica fires each exit; when a lease moves, both replicas' next pass (just
        after the renewal that saw it) moves the exits with it."""
        async with self.executor.pool.acquire() as conn:
            rows = await FeedQueries.watched(conn)
        watched: dict[str, list[_Watched]] = {}
        for row in rows:
            if row.user_id in self._owned:
                watched.setdefault(row.symbol, []).append(row)
        self._watched = watched
        ids = {w.entry_id for group in watched.values() for w in group}
        self._fired &= ids
        if watched:
            await self.streams.watch(sorted(watched))
        for symbol, price in list(self._prices.items()):
            if symbol in watched and symbol not in self._price_tasks:
                self._price(
                    PriceReport(
                        exchange=self.executor.exchange,
                        symbol=symbol,
                        price=price,
                        event_ms=None,
                        received_ms=0,
                    )
                )
