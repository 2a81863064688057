"""Placing one request exactly once, and recording every outcome with its event.

The order row (keyed by the request's client order id) is committed before anything is
sent, and every send is preceded by a committed attempt mark. A row that may have been sent
is first looked up on the exchange by client order id; "not found" is taken as conclusive
only once ``settle_until`` has passed (by then any request signed for an earlier attempt is
outside the exchange's receive window and can no longer be executed). Outcome events go
into the outbox in the same transaction as the state change that caused them.

An order whose outcome is unknown (a timeout, a 5xx, a lost answer) does not hold its
request: it is recorded as unknown and handed to the reconciler (``reconcile.py``), which
resolves it by client order id, and the request ends with ``Outcome.UNKNOWN`` (acked; the
durable row is the hand-off). Every wait of a request (a ban, a rate-limit hold, an open
breaker, the higher tiers, the limiter and the connection slots) is capped at the request's
remaining life: past it the request is rejected ``STALE`` with the cause, never left to age.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg

from marketbot.contracts import (
    CloseReason,
    Event,
    Exchange,
    OrderRequested,
    Plan,
    RejectReason,
    Side,
)
from marketbot.contracts.sizing import SizingRules
from marketbot.exchanges.deadline import within
from marketbot.exchanges.errors import (
    CircuitOpenError,
    DuplicateClientOrderIdError,
    ExchangeError,
    IpBannedError,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    Retryable,
)
from marketbot.exchanges.ratelimit import protection_follows, protective
from marketbot.exchanges.signer import Signer, order_scope
from marketbot.exchanges.venue import (
    ExitKind,
    InstrumentFilters,
    OrderRequest,
    OrderType,
    TimeInForce,
    Venue,
)
from marketbot.exchanges.venue import OrderState as VenueOrder
from marketbot.execution import events, metrics
from marketbot.execution.domain.lifecycle import (
    Phase,
    allocate,
    close_reason,
    entry_limit_price,
)
from marketbot.execution.domain.protection import (
    Sale,
    protection_prices,
    remainder_sellable,
    sell_part,
)
from marketbot.execution.domain.sizing import (
    LotRules,
    SizingRejection,
    round_down,
    size_order,
)
from marketbot.execution.fills import FillsIncompleteError, FillSummary, covers, summarize
from marketbot.execution.groupcommit import GroupCommit, GroupInsert, GroupRead, RowEffect
from marketbot.execution.repository import (
    EntryFill,
    NewEntry,
    NewPosition,
    OrderRow,
    OrderState,
    PositionRow,
    Purpose,
    Repository,
)
from marketbot.runtime.bus import BusError
from marketbot.runtime.clock import Clock
from marketbot.runtime.consumer import Outbox
from marketbot.runtime.db import Conn
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.execution")

SignerFactory = Callable[[str, Exchange], Signer]
"""``(user_id, exchange) -> Signer``: the vault's signer in production, a local one in tests."""


class Outcome(StrEnum):
    PLACED = "placed"
    FILLED = "filled"
    CLOSED = "closed"
    REJECTED = "rejected"
    STALE = "stale"
    DONE = "done"
    """Already decided by an earlier delivery."""
    UNKNOWN = "unknown"
    """Sent, outcome unknown: recorded and handed to the reconciler (``reconcile.py``)."""


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    max_request_age_s: float = 120.0
    unknown_settle_s: float = 15.0
    unknown_poll_s: float = 1.0
    retry_backoff_s: float = 0.5
    lease_s: float = 60.0
    max_slippage_percent: Decimal = Decimal("0.5")
    """An entry is an IOC limit order at the reference price moved this much against it."""
    protect_settle_s: float = 15.0
    """After a protect attempt whose outcome is unknown, 'no legs found' is conclusive only
    this much later (beyond the signed request's receive window)."""
    track_interval_s: float = 2.0
    track_max_interval_s: float = 30.0
    send_timeout_s: float = 10.0
    """The longest one send can take before its outcome is unknown (the HTTP read timeout).
    A resend is made only while the request can still be resolved before its maximum age
    (``send_timeout_s + unknown_settle_s`` of life left)."""
    reconcile_poll_s: float = 5.0
    """How often the reconciler looks an unknown order up until its settle time."""


class StoppingError(Exception):
    """The executor is shutting down: the request stays in the stream."""


class _RecordedAlreadyError(Exception):
    """The request's row exists although it was not read first (``execute`` with
    ``first_delivery``): nothing was written; the request takes the existing-row path."""


class _WaitError(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"wait {seconds:.2f}s")
        self.seconds = seconds


class Gate:
    """Pauses every send of this process while the exchange bans or rate-limits its IP
    (a breaker is per endpoint and pauses nothing here: ``breaker.py``)."""

    def __init__(self, clock: Clock, exchange: Exchange) -> None:
        self._clock = clock
        self._exchange = exchange.value
        self._until = 0.0
        self.cause = ""

    def pause(self, seconds: float, cause: str) -> None:
        until = self._clock.monotonic() + max(0.0, seconds)
        if until > self._until:
            self._until = until
            self.cause = cause
            metrics.PAUSES.labels(self._exchange, cause).inc()
            log.warning("sending paused", cause=cause, seconds=round(seconds, 3))

    @property
    def remaining(self) -> float:
        return max(0.0, self._until - self._clock.monotonic())

    async def wait(self, stopping: asyncio.Event, life_s: float | None = None) -> bool:
        """Wait out the pause; ``False`` at once if it would outlast ``life_s``."""
        while (remaining := self.remaining) > 0:
            if stopping.is_set():
                raise StoppingError
            if life_s is not None and remaining >= life_s:
                return False
            await self._clock.sleep(min(remaining, 1.0))
        return True


class KeyedLocks:
    """One asyncio lock per (user, symbol): a user's orders in one symbol never interleave,
    so several alerts on one bar run one after the other, in the order they arrived."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._users: dict[tuple[str, str], int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, user_id: str, symbol: str) -> AsyncIterator[None]:
        key = (user_id, symbol)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:
                del self._users[key]
                del self._locks[key]


def _transaction(conn: Conn, needed: bool) -> contextlib.AbstractAsyncContextManager[Any]:
    """A transaction around several statements; none around one (BEGIN/COMMIT saved)."""
    return conn.transaction() if needed else contextlib.nullcontext()


class OrderExecutor:
    """The order commands: place an entry, close for a signal, fire an exit; record results.

    Positions (protect, track, record exits) are ``positions.PositionKeeper``'s, which this
    executor calls after an entry fills and whose ``record_exit`` it uses for a leg that
    executed while a close was being prepared."""

    def __init__(
        self,
        *,
        venue: Venue,
        signers: SignerFactory,
        pool: asyncpg.Pool,
        outbox: Outbox,
        clock: Clock,
        sizing: SizingRules,
        config: ExecutionConfig,
        owner: str | None = None,
    ) -> None:
        self.venue = venue
        self.exchange = venue.exchange
        self.signers = signers
        self.pool = pool
        self.outbox = outbox
        self.clock = clock
        self.sizing = sizing
        self.config = config
        self.owner = owner or uuid.uuid4().hex
        self.gate = Gate(clock, venue.exchange)
        self.group_commit = GroupCommit(pool, outbox)
        """Outcomes of concurrent orders, committed in one transaction per event-loop tick."""
        self.entry_rows = GroupInsert(
            pool,
            clock,
            owner=self.owner,
            lease_s=config.lease_s,
            settle_s=config.unknown_settle_s,
        )
        """Record-before-send rows of concurrent entries, in one INSERT per event-loop tick."""
        self.order_rows = GroupRead(pool)
        """Order rows read by concurrent workers (the stream feed's final reports), in one
        SELECT per event-loop tick."""
        self.stopping = asyncio.Event()
        self.locks = KeyedLocks()
        self.turn: Callable[[Plan, float], Awaitable[bool]] | None = None
        """Set by the engine: waits while a higher plan tier has work, at most the given
        seconds (``False`` when that ran out)."""
        self.reconciliation_due = asyncio.Event()
        """Set when an order is handed to the reconciler (it wakes up at once)."""
        from marketbot.execution.balances import BalanceSource, RestBalances

        self.balances: BalanceSource = RestBalances(venue)
        """Where sizing reads the balance (the stream feed puts its wallet snapshots here)."""
        self.follow: Callable[[str], Awaitable[None]] | None = None
        """Set by the stream feed: receive this user's private events from now on."""
        self.streamed: Callable[[str], bool] = lambda _user_id: False
        """Whether a user's private stream is up: their orders are then followed there, not
        read back after the create (a Bybit create answer is only an acknowledgement)."""
        from marketbot.execution.positions import PositionKeeper

        self.positions = PositionKeeper(self)

    # ---- the request loop -----------------------------------------------------------
    async def execute(self, request: OrderRequested, *, first_delivery: bool = False) -> Outcome:
        """Run the request to a recorded outcome, or hand it to the reconciler when its
        outcome is unknown. Waits out bans, holds and not_before, each capped at the
        request's remaining life (``life_s``): a wait that would outlive it ends the
        request ``STALE`` at once, naming what it waited for.

        ``first_delivery`` (JetStream's delivery count is 1): the first attempt does not
        read the request's row first, as there almost never is one. That is safe because
        every write on that path is an insert-if-absent: the entry's row
        (``GroupInsert``, ``ON CONFLICT DO NOTHING``), a close's row, and a rejection's
        (``reject(..., unread=True)``); a row found there (a duplicate published by a
        decision redelivered late, or a delivery whose count JetStream did not carry) is
        never overwritten: the request goes on by the existing-row path, as if it had
        read it. Every later attempt reads the row first."""
        unread = first_delivery
        while True:
            if self.stopping.is_set():
                raise StoppingError
            if not await self.gate.wait(self.stopping, self.life_s(request)):
                return await self.expire(
                    request,
                    f"sending to {self.exchange.value} is paused for "
                    f"{self.gate.remaining:.1f}s ({self.gate.cause})",
                )
            if self.turn is not None and not await self.turn(request.plan, self.life_s(request)):
                return await self.expire(request, "the higher plan tiers were still being served")
            wait: tuple[float, str] | None = None
            try:
                with within(self.life_s(request), self.clock):
                    async with self.locks.hold(request.user_id, request.symbol):
                        skip_read, unread = unread, False
                        return await self._attempt(request, read=not skip_read)
            except _WaitError as exc:
                wait = (exc.seconds, "waiting for the order's turn")
            except CircuitOpenError as exc:
                wait = (exc.retry_after_s, str(exc))
            except IpBannedError as exc:
                self.gate.pause(exc.retry_after_s, "ban")
            except RateLimited as exc:
                # The limiter holds every request itself after a 429 (ratelimit.py); this
                # request waits for its own budget, never longer than it may live.
                wait = (exc.retry_after_s, str(exc))
            except Retryable as exc:
                log.info("retryable exchange error", error=str(exc))
                wait = (self.config.retry_backoff_s, str(exc))
            except FillsIncompleteError as exc:
                log.info("trade records not complete yet", detail=str(exc))
                wait = (self.config.unknown_poll_s, str(exc))
            except (OutcomeUnknown, DuplicateClientOrderIdError) as exc:
                if await self.hand_off(request, str(exc)):
                    return Outcome.UNKNOWN
                wait = (self.config.retry_backoff_s, str(exc))  # a read: nothing was sent
            except ExchangeError as exc:
                log.warning("unclassified exchange error; treated as unknown", error=str(exc))
                if await self.hand_off(request, str(exc)):
                    return Outcome.UNKNOWN
                wait = (self.config.retry_backoff_s, str(exc))
            except (asyncpg.PostgresError, OSError, BusError) as exc:
                log.warning("infrastructure error; retrying", error=repr(exc))
                wait = (self.config.retry_backoff_s, repr(exc))
            if wait is not None:
                seconds, cause = wait
                life = self.life_s(request)
                if seconds >= life and request.age_s(self.clock.now()) >= 0:
                    return await self.expire(
                        request, f"{cause}; waiting {seconds:.1f}s more would outlive it"
                    )
                await self._sleep(min(seconds, max(life, 0.0)))

    def life_s(self, request: OrderRequested, now: datetime | None = None) -> float:
        """Seconds the request may still wait before it is too old to send: a send must
        start early enough for its answer (within ``send_timeout_s``) to come before the
        maximum age, so an order is placed, or rejected, before it."""
        age = request.age_s(now or self.clock.now())
        return self.config.max_request_age_s - self.config.send_timeout_s - age

    async def expire(self, request: OrderRequested, cause: str) -> Outcome:
        """The request cannot be sent within its maximum age: reject it ``STALE`` now, with
        the cause. A row that may exist on the exchange is the reconciler's instead: it is
        resolved by client id, never rejected unseen."""
        now = self.clock.now()
        message = (
            f"request is {request.age_s(now):.1f}s old and could not be sent within the "
            f"maximum {self.config.max_request_age_s:.0f}s: {cause}; not sent"
        )
        async with self.pool.acquire() as conn:
            row = await Repository.get_order(conn, request.client_order_id)
        if row is None:
            return await self.reject(request, RejectReason.STALE, message)
        if row.state in OrderState.FINAL or row.state == OrderState.PLACED:
            return Outcome.DONE
        if row.maybe_sent and (row.settle_until is None or now < row.settle_until):
            await self.hand_off(request, f"may have been sent; {cause}")
            return Outcome.UNKNOWN
        return await self.reject_row(row, RejectReason.STALE, message)

    async def _sleep(self, seconds: float) -> None:
        if self.stopping.is_set():
            raise StoppingError
        try:
            async with asyncio.timeout(max(0.0, seconds)):  # not wait_for: engine._pause
                await self.stopping.wait()
        except TimeoutError:
            return
        raise StoppingError

    def _stale(self, request: OrderRequested, now: datetime) -> bool:
        return self.life_s(request, now) <= 0

    async def _attempt(self, request: OrderRequested, *, read: bool = True) -> Outcome:
        """One attempt under the (user, symbol) lock. ``read=False``: the row is not read
        first (a first delivery): the new-row path's writes are all insert-if-absent, and
        a row found by them sends the request down the existing-row path."""
        cid = request.client_order_id
        now = self.clock.now()
        if read:
            async with self.pool.acquire() as conn:
                row = await Repository.get_order(conn, cid)
        else:
            try:
                return await self._new_row(request, now, unread=True)
            except _RecordedAlreadyError:
                async with self.pool.acquire() as conn:
                    row = await Repository.get_order(conn, cid)
                if row is None:  # recorded, then gone: cannot be (rows are never deleted)
                    raise _WaitError(0.0) from None
        if row is not None and row.state in OrderState.FINAL:
            return Outcome.DONE
        if row is not None and row.state == OrderState.PLACED:
            return Outcome.DONE  # acknowledged; the tracker follows it to its fill
        if row is not None and row.unknown_since is not None:
            return Outcome.UNKNOWN  # the reconciler's (reconcile.py), resolved by client id
        if row is None:
            return await self._new_row(request, now)
        if not await self._claim(cid):
            raise _WaitError(min(self.config.lease_s / 4, 5.0))
        try:
            resolved = await self._reconcile(row, now)
        except _WaitError:
            # Sent by an earlier delivery (a crash between the send and its record) and not
            # found yet: not conclusive before its settle time, and the reconciler's to wait.
            await self.hand_off(request, "sent by an earlier delivery and not found yet")
            return Outcome.UNKNOWN
        if resolved is not None:
            return resolved
        if self._stale(request, now):
            return await self._stale_reject(request, now, row)
        if row.maybe_sent and not self.can_resend(request, now):
            return await self.reject_row(
                row, RejectReason.STALE, self.too_late_to_resend(request, now)
            )
        return await self._send(row)

    async def _new_row(
        self, request: OrderRequested, now: datetime, *, unread: bool = False
    ) -> Outcome:
        """A request with no row (read, or with ``unread`` not read: then a row found by
        an insert raises ``_RecordedAlreadyError``, nothing written)."""
        if self._stale(request, now):
            return await self._stale_reject(request, now, unread=unread)
        due = (request.not_before - now).total_seconds()
        if due > 0:
            raise _WaitError(due)
        prepared = await self._prepare(request, unread=unread)
        if isinstance(prepared, Outcome):
            return prepared
        # an entry's row comes with its first attempt marked (GroupInsert)
        return await self._send(prepared, marked=prepared.purpose == Purpose.ENTRY)

    def can_resend(self, request: OrderRequested, now: datetime) -> bool:
        """A resend is made only if, should its outcome be unknown too, it can still be
        resolved (one send timeout plus the settle time) before the maximum age."""
        return self.life_s(request, now) > self.config.unknown_settle_s

    def too_late_to_resend(self, request: OrderRequested, now: datetime) -> str:
        return (
            f"not found on the exchange by its client order id; at {request.age_s(now):.1f}s "
            f"old it is too late to send again (a resend could not be resolved within the "
            f"maximum {self.config.max_request_age_s:.0f}s); not sent again"
        )

    async def _reconcile(self, row: OrderRow, now: datetime) -> Outcome | None:
        """For a row that may have been sent: what the exchange knows of it, by client id.

        Raises ``_WaitError`` while 'not found' is not yet conclusive; ``None`` when the
        order provably does not exist and may be sent (again)."""
        if not row.maybe_sent:
            return None
        found = await self._lookup(row)
        if found is not None:
            return await self.record_result(row, found)
        if row.settle_until is not None and now < row.settle_until:
            raise _WaitError((row.settle_until - now).total_seconds())
        return None

    async def resume(self, row: OrderRow, *, claimed: bool = False) -> Outcome:
        """Carry an existing row (an exit fired by the tracker) one step further; never
        waits: 'not found yet' is left to the next tick. ``claimed``: the row was just
        inserted leased to this executor (no claim needed)."""
        if row.state in OrderState.FINAL or row.state == OrderState.PLACED:
            return Outcome.DONE
        if not claimed and not await self._claim(row.client_order_id):
            return Outcome.DONE
        try:
            resolved = await self._reconcile(row, self.clock.now())
        except _WaitError:
            return Outcome.PLACED
        if resolved is not None:
            return resolved
        try:
            return await self._send(row)
        except (OutcomeUnknown, DuplicateClientOrderIdError):
            # As ``hand_off`` does for a request (an exit has no events of its own):
            # 'not found' is conclusive only a settle time after this answer, not after the
            # attempt mark (the send may have taken longer than the settle time itself).
            now = self.clock.now()
            async with self.pool.acquire() as conn:
                await Repository.set_settle(
                    conn,
                    row.client_order_id,
                    now + timedelta(seconds=self.config.unknown_settle_s),
                )
                await Repository.mark_unknown(conn, row.client_order_id, now)
            raise

    async def _claim(self, cid: str) -> bool:
        async with self.pool.acquire() as conn:
            return await Repository.claim(
                conn, cid, self.owner, self.clock.now(), self.config.lease_s
            )

    async def _lookup(self, row: OrderRow) -> VenueOrder | None:
        request = row.request
        found = await self.venue.get_order(
            self.signers(request.user_id, request.exchange),
            request.symbol,
            client_order_id=row.client_order_id,
        )
        metrics.RECONCILIATIONS.labels(
            self.exchange.value, "found" if found is not None else "not_found"
        ).inc()
        return found

    # ---- before sending ---------------------------------------------------------------
    async def _prepare(
        self, request: OrderRequested, *, unread: bool = False
    ) -> OrderRow | Outcome:
        if self.follow is not None:
            await self.follow(request.user_id)
        try:
            if request.side is Side.BUY:
                return await self._prepare_entry(request, unread=unread)
            return await self._prepare_close(request, unread=unread)
        except Rejected as exc:
            return await self.reject(request, exc.reason, str(exc), code=exc.code, unread=unread)

    async def _prepare_entry(
        self, request: OrderRequested, *, unread: bool = False
    ) -> OrderRow | Outcome:
        signer = self.signers(request.user_id, request.exchange)
        # Independent reads: one round trip of latency instead of three.
        filters, price, balance = await asyncio.gather(
            self.venue.instrument(request.symbol),
            self.venue.price(request.symbol),
            self.balances.balance(request.user_id, signer, self.sizing.quote_asset),
        )
        slippage = self.config.max_slippage_percent
        # On the tick, never beyond the bound (a buy's bound is rounded down).
        limit = round_down(entry_limit_price(request.side, price, slippage), filters.tick_size)
        sized = size_order(
            balance=balance.free,
            risk_level=request.risk_level,
            price=price,
            lot=LotRules.from_filters(filters),
            rules=self.sizing,
            allocation=request.allocation,
            allocation_currency=request.allocation_currency,
        )
        if isinstance(sized, SizingRejection):
            return await self.reject(
                request, sized.reason, sized.message, code=sized.filter, unread=unread
            )
        protection = protection_prices(
            request.side,
            price,
            stop_loss_percent=request.stop_loss_percent,
            take_profit_percent=request.take_profit_percent,
        )
        # Recorded with its first attempt marked, in one statement with the entries of
        # the other requests prepared in this tick (groupcommit.GroupInsert): committed
        # before it is sent, and from then on it may exist on the exchange.
        row = await self.entry_rows.insert(
            NewEntry(
                request=request,
                quantity=sized.quantity,
                quote_amount=sized.notional,
                reference_price=price,
                stop_loss_price=protection.stop_loss,
                take_profit_price=protection.take_profit,
                limit_price=limit,
                max_slippage_percent=slippage,
            )
        )
        if row is None:
            if unread:
                raise _RecordedAlreadyError
            raise _WaitError(0.0)  # another delivery recorded it first: see _insert_sending
        return row

    async def _prepare_close(
        self, request: OrderRequested, *, unread: bool = False
    ) -> OrderRow | Outcome:
        """A SELL closes every open position the user holds in the symbol (what a
        TradingView strategy's exit means: docs/tradingview.md). The row names them and
        marks them closing, in one transaction, before any leg is cancelled."""
        async with self.pool.acquire() as conn:
            positions = await Repository.open_positions_of(conn, request.user_id, request.symbol)
        # A position another order is already closing (a watched exit the tracker fired,
        # whose outcome may still be unknown) is that order's: selling it here too would
        # sell it twice.
        positions = [p for p in positions if p.closing_order is None]
        if not positions:
            return await self.reject(
                request,
                RejectReason.NO_POSITION,
                f"no open position in {request.symbol} to close",
                unread=unread,
            )
        quantity = sum((p.quantity for p in positions), Decimal(0))
        return await self._insert_sending(
            request,
            unread=unread,
            quantity=quantity,
            quote_amount=sum((p.quantity * p.entry_price for p in positions), Decimal(0)),
            reference_price=positions[0].entry_price,
            purpose=Purpose.CLOSE,
            closes_positions=tuple(p.entry_client_order_id for p in positions),
        )

    async def _insert_sending(
        self, request: OrderRequested, *, unread: bool = False, **fields: Any
    ) -> OrderRow:
        now = self.clock.now()
        closes: tuple[str, ...] = fields.get("closes_positions", ())
        # One INSERT is atomic on its own; a close also marks its positions, in one transaction.
        async with self.pool.acquire() as conn, _transaction(conn, bool(closes)):
            row = await Repository.insert_sending(
                conn,
                request,
                now=now,
                owner=self.owner,
                lease_s=self.config.lease_s,
                **fields,
            )
            if row is not None and closes:
                await Repository.set_closing(conn, list(closes), row.client_order_id)
        if row is None:
            # Another delivery recorded it first: go round again and take the path for an
            # existing row (lease, lookup), never send on its behalf.
            if unread:
                raise _RecordedAlreadyError
            raise _WaitError(0.0)
        return row

    # ---- sending -------------------------------------------------------------------
    async def send(self, row: OrderRow) -> Outcome:
        """Send a recorded order (again): the reconciler's resend after 'not found'."""
        return await self._send(row)

    async def _send(self, row: OrderRow, *, marked: bool = False) -> Outcome:
        """``marked``: the row was recorded with this attempt already marked.

        A close or an exit reduces a position: it goes ahead of entries for the rate-limit
        budget (``ratelimit.protective``), as the legs it replaces did. An entry with exits
        has other orders leave its protection's share of the budget free until it is placed
        (``ratelimit.protection_follows``)."""
        if row.purpose != Purpose.ENTRY:
            with protective():
                return await self._send_row(row, marked)
        request = row.request
        if request.stop_loss_percent is None and request.take_profit_percent is None:
            return await self._send_row(row, marked)
        # Its exits follow its fill: orders leave their budget free meanwhile.
        with protection_follows():
            return await self._send_row(row, marked)

    async def _send_row(self, row: OrderRow, marked: bool) -> Outcome:
        request = row.request
        signer = self.signers(request.user_id, request.exchange)
        if row.purpose == Purpose.ENTRY:
            assert row.quantity is not None
            assert row.limit_price is not None
            order = OrderRequest(
                symbol=request.symbol,
                side=request.side,
                order_type=OrderType.LIMIT,
                time_in_force=TimeInForce.IOC,
                client_order_id=row.client_order_id,
                quantity=row.quantity,
                price=row.limit_price,
            )
        else:
            closing = await self._closing_order(row, signer)
            if isinstance(closing, Outcome):
                return closing
            order = closing
        # the attempts and settle time from before this attempt (undone if it never ran)
        before = (row.attempts - 1, None) if marked else (row.attempts, row.settle_until)
        if not marked:
            async with self.pool.acquire() as conn:
                await Repository.mark_attempt(
                    conn, row.client_order_id, self.clock.now(), self.config.unknown_settle_s
                )
        try:
            # The vault signs the order only within its request (an entry) or the entries
            # it sells from (a close, an exit): docs/security.md.
            with order_scope(request.request_id, row.closes_positions):
                if self.streamed(request.user_id):
                    state = await self.venue.place_order(signer, order, confirm=False)
                else:
                    state = await self.venue.place_order(signer, order)
        except DuplicateClientOrderIdError:
            raise  # an earlier attempt was placed: resolved by lookup
        except Rejected as exc:
            if exc.reason is RejectReason.INSUFFICIENT_BALANCE and row.purpose == Purpose.ENTRY:
                self.balances.refused(request.user_id)  # what sized it is read again first
            return await self.reject_row(row, exc.reason, str(exc), code=exc.code)
        except Retryable:
            # An answer that says nothing executed (or a request never sent: the limiter,
            # a breaker, no connection): this attempt is taken back, so the row is exactly
            # as maybe-sent as before it. A first send stays a first send (no lookup, no
            # resend rule), and a resend keeps the settle time of the attempt before.
            async with self.pool.acquire() as conn:
                await Repository.undo_attempt(conn, row.client_order_id, *before)
            raise
        return await self.record_result(row, state)

    async def _closing_order(self, row: OrderRow, signer: Signer) -> OrderRequest | Outcome:
        """Cancel the exits of every position the row closes, then sell what is left.

        A position whose leg executed first is closed by that leg (not by this order)."""
        remaining: list[PositionRow] = []
        for entry_id in row.closes_positions:
            async with self.pool.acquire() as conn:
                position = await Repository.get_position(conn, entry_id)
            if (
                position is None
                or position.status != "OPEN"
                or position.closing_order != row.client_order_id
            ):
                continue  # closed, or owned by another close order
            if position.phase is not Phase.UNPROTECTED or position.protect_attempts > 0:
                protection = await self.venue.unprotect(signer, position.spec())
                # A leg that executed, or is executing (triggered, nothing filled yet: it
                # fills next and can no longer be cancelled), sells the position itself.
                own = None if protection is None else protection.executed or protection.executing
                if protection is not None and own is not None:
                    if not await self.positions.record_exit(position, own, protect_rest=False):
                        # Sold by its own leg, not recorded yet: not this order's to close
                        # (no share of its fill); the stream or the tracker records the leg.
                        async with self.pool.acquire() as conn:
                            await Repository.clear_closing(conn, [entry_id], row.client_order_id)
                        continue
                    # The leg sold part of it: this order sells the rest.
                    async with self.pool.acquire() as conn:
                        await Repository.set_closing(conn, [entry_id], row.client_order_id)
                        rest = await Repository.get_position(conn, entry_id)
                    if rest is None or rest.status != "OPEN":
                        continue
                    position = rest
                # Its exits are cancelled: UNPROTECTED (counted, alerted) until the close
                # fills; if the close ends unfilled, the tracker protects it anew.
                async with self.pool.acquire() as conn:
                    await Repository.set_protection(
                        conn,
                        entry_id,
                        phase=Phase.UNPROTECTED,
                        legs=protection.legs if protection is not None else position.legs,
                        generation=position.generation,
                        error=None,
                    )
            remaining.append(position)
        if not remaining:
            return await self.reject_row(
                row,
                RejectReason.NO_POSITION,
                "the positions were closed by their own exit legs before the close order",
            )
        filters = await self.venue.instrument(row.request.symbol)
        quantity = round_down(sum((p.quantity for p in remaining), Decimal(0)), filters.qty_step)
        quantity = round_down(quantity, filters.market_qty_step)
        if quantity <= 0 or quantity < filters.min_qty:
            return await self.reject_row(
                row,
                RejectReason.FILTER,
                f"min_qty: closing quantity {quantity} is below the minimum {filters.min_qty}",
            )
        return OrderRequest(
            symbol=row.request.symbol,
            side=remaining[0].exit_side,
            order_type=OrderType.MARKET,
            client_order_id=row.client_order_id,
            quantity=quantity,
        )

    # ---- recording -----------------------------------------------------------------
    async def commit(
        self,
        effect: Callable[[Conn], Awaitable[bool | None]],
        emitted: Sequence[Event],
        *,
        group: bool = False,
    ) -> bool:
        """Apply ``effect`` and store ``emitted`` in one transaction, then publish them
        (from memory: the outbox rows are not read back; they stay for the relay if the
        publish fails).

        ``effect`` returning ``False`` means another worker got there first: nothing is
        emitted. ``group``: the effect is database statements only, and may share its
        transaction with the outcomes of other orders recorded in the same event-loop tick
        (``groupcommit.py``); it is committed before this returns either way."""
        if group:
            return await self.group_commit.commit(effect, emitted)
        async with self.pool.acquire() as conn, conn.transaction():
            applied = await effect(conn)
            if applied is False:
                return False
            rows = await Outbox.stage(conn, emitted)
        await self.outbox.publish_staged(rows)
        return True

    async def reject(
        self,
        request: OrderRequested,
        reason: RejectReason,
        message: str,
        *,
        code: int | str | None = None,
        unread: bool = False,
    ) -> Outcome:
        """Record the request rejected, with its event. ``unread``: its row was not read
        first, so one that exists is not this rejection's to finish (it may be PLACED by
        an earlier delivery): ``_RecordedAlreadyError``, nothing written."""
        now = self.clock.now()
        event = events.rejected(request, reason, message, now, code=code)

        async def effect(conn: Conn) -> bool:
            inserted = await Repository.insert_order(
                conn, request, state=OrderState.REJECTED, now=now
            )
            if inserted:
                return True
            if unread:
                raise _RecordedAlreadyError
            return await Repository.finish(
                conn, request.client_order_id, OrderState.REJECTED, now, exchange_order_id=None
            )

        if not await self.commit(effect, [event]):
            return Outcome.DONE
        outcome = Outcome.STALE if reason is RejectReason.STALE else Outcome.REJECTED
        metrics.ORDERS.labels(self.exchange.value, request.plan.value, outcome.value).inc()
        log.info("order rejected", reason=reason.value, message=message, user=request.user_id)
        return outcome

    async def reject_row(
        self,
        row: OrderRow,
        reason: RejectReason,
        message: str,
        *,
        code: int | str | None = None,
    ) -> Outcome:
        """End a recorded order unfilled. The positions it was to close stop being closed
        by it (the tracker protects them again). An EXIT order emits nothing: it has no
        request of its own, and its position stays open."""
        if row.purpose == Purpose.ENTRY or row.purpose == Purpose.CLOSE:
            outcome = await self.reject(row.request, reason, message, code=code)
        else:
            now = self.clock.now()
            async with self.pool.acquire() as conn:
                await Repository.set_state(conn, row.client_order_id, OrderState.REJECTED, now)
            log.warning("exit order not placed", reason=reason.value, message=message)
            outcome = Outcome.REJECTED
        if row.closes_positions:
            async with self.pool.acquire() as conn:
                await Repository.clear_closing(
                    conn, list(row.closes_positions), row.client_order_id
                )
        return outcome

    async def _stale_reject(
        self,
        request: OrderRequested,
        now: datetime,
        row: OrderRow | None = None,
        *,
        unread: bool = False,
    ) -> Outcome:
        age = request.age_s(now)
        message = (
            f"request is {age:.1f}s old: too old to be sent and answered (within the "
            f"{self.config.send_timeout_s:.0f}s send timeout) before its maximum age of "
            f"{self.config.max_request_age_s:.0f}s; not sent"
        )
        if row is not None:
            return await self.reject_row(row, RejectReason.STALE, message)
        return await self.reject(request, RejectReason.STALE, message, unread=unread)

    async def hand_off(self, request: OrderRequested, detail: str) -> bool:
        """Record the order's outcome as unknown and give it to the reconciler: 'not found'
        becomes conclusive a settle time from now; the lease is released so any replica's
        reconciler may resolve it. ``OrderOutcomeUnknown`` is emitted the first time.

        ``False`` when there is no order that may have been sent (an unknown answer to a
        read before the send): nothing to reconcile, the request just tries again."""
        now = self.clock.now()
        cid = request.client_order_id
        settle_until = now + timedelta(seconds=self.config.unknown_settle_s)
        handed: list[bool | None] = []

        async def effect(conn: Conn) -> bool:
            first = await Repository.hand_off(conn, cid, now, settle_until)
            handed.append(first)
            return bool(first)

        if await self.commit(effect, [events.outcome_unknown(request, detail, now)]):
            metrics.HANDED_OFF.labels(self.exchange.value, request.plan.value).inc()
            log.warning("order outcome unknown; handed to the reconciler", detail=detail)
        if not handed or handed[0] is None:
            return False
        self.reconciliation_due.set()
        return True

    async def record_result(self, row: OrderRow, state: VenueOrder) -> Outcome:
        """Record what the exchange says about the order: placed, filled or ended unfilled."""
        request = row.request
        now = self.clock.now()
        if row.state == OrderState.SENDING and row.purpose != Purpose.EXIT:
            metrics.ACK_LATENCY.labels(self.exchange.value, request.plan.value).observe(
                max(0.0, (now - request.requested_at).total_seconds())
            )
        if state.filled_quantity <= 0:
            if state.status.is_final:
                reason = f": {state.reject_reason}" if state.reject_reason else ""
                return await self.reject_row(
                    row,
                    RejectReason.EXCHANGE,
                    f"order {state.exchange_order_id} ended {state.status.value} with nothing "
                    f"filled{reason}",
                )
            return await self._record_placed(row, state, now)
        if not state.status.is_final:
            return await self._record_placed(row, state, now)
        filters = await self.venue.instrument(request.symbol)
        summary = await self.summarize(request, state, filters)
        if row.purpose == Purpose.ENTRY:
            return await self._record_entry_fill(row, state, summary, filters, now)
        return await self._record_close_fill(row, state, summary, filters, now)

    async def summarize(
        self, request: OrderRequested, state: VenueOrder, filters: InstrumentFilters
    ) -> FillSummary:
        """The order's fills from the exchange's trade records (the report itself when it
        carries every trade, as Binance's FULL response does)."""
        trades = state.fills
        if not covers(state):
            trades = tuple(
                await self.venue.trades(
                    self.signers(request.user_id, request.exchange),
                    request.symbol,
                    exchange_order_id=state.exchange_order_id,
                )
            )

        async def price_of(symbol: str) -> Decimal | None:
            try:
                return await self.venue.price(symbol)
            except ExchangeError:
                return None

        return await summarize(state, trades, filters, price_of=price_of)

    def _placed_event(self, row: OrderRow, state: VenueOrder, now: datetime) -> Event:
        request = row.request
        quantity = state.quantity if state.quantity > 0 else (row.quantity or Decimal(0))
        price = row.reference_price or state.average_price or Decimal(0)
        return events.placed(
            request,
            exchange_order_id=state.exchange_order_id,
            quantity=quantity,
            quote_amount=row.quote_amount or quantity * price,
            reference_price=price,
            stop_loss=row.stop_loss_price,
            take_profit=row.take_profit_price,
            limit_price=row.limit_price,
            max_slippage_percent=row.max_slippage_percent,
            now=now,
        )

    async def _record_placed(self, row: OrderRow, state: VenueOrder, now: datetime) -> Outcome:
        if row.state == OrderState.PLACED:
            return Outcome.PLACED
        request = row.request
        # the group's acknowledged orders are set PLACED in one statement
        effect = RowEffect(
            Repository.set_placed_many,
            row.client_order_id,
            (row.client_order_id, now, state.exchange_order_id),
        )
        emitted = [] if row.purpose == Purpose.EXIT else [self._placed_event(row, state, now)]
        await self.commit(effect, emitted, group=True)
        metrics.ORDERS.labels(self.exchange.value, request.plan.value, "placed").inc()
        return Outcome.PLACED

    def _filled_event(
        self, request: OrderRequested, state: VenueOrder, summary: FillSummary, now: datetime
    ) -> Event:
        return events.filled(
            request,
            exchange_order_id=state.exchange_order_id,
            fills=summary.fills,
            filled_quantity=summary.quantity,
            average_price=summary.average_price,
            quote_quantity=summary.quote_quantity,
            fees_quote=summary.fees_quote,
            fees_estimated=summary.estimated_fees,
            filled_at=summary.filled_at or now,
            now=now,
        )

    async def _record_entry_fill(
        self,
        row: OrderRow,
        state: VenueOrder,
        summary: FillSummary,
        filters: InstrumentFilters,
        now: datetime,
    ) -> Outcome:
        request = row.request
        emitted: list[Event] = []
        if row.state == OrderState.SENDING:
            emitted.append(self._placed_event(row, state, now))
        emitted.append(self._filled_event(request, state, summary, now))
        position = NewPosition(
            entry_client_order_id=request.client_order_id,
            request=request,
            base_asset=filters.base_asset,
            quote_asset=filters.quote_asset,
            quantity=summary.held_quantity(request.side, filters.qty_step),
            filled_quantity=summary.quantity,
            entry_price=summary.average_price,
            entry_fees_quote=summary.fees_quote,
            entry_order_id=state.exchange_order_id,
            stop_loss_price=row.stop_loss_price,
            take_profit_price=row.take_profit_price,
            opened_at=summary.filled_at or now,
            fees_estimated=summary.estimated_fees,
        )
        # No stop loss and no take profit: no leg to place on any venue (each venue's
        # protect returns no legs), so the position is stored protected, with no round trip.
        unguarded = row.stop_loss_price is None and row.take_profit_price is None

        # the row finished and the position stored in one statement, for the group's
        # filled entries at once
        effect = RowEffect(
            Repository.fill_entries,
            request.client_order_id,
            EntryFill(
                position=position,
                now=now,
                interval_s=self.config.track_interval_s,
                phase=Phase.PROTECTED if unguarded else Phase.UNPROTECTED,
                exchange_order_id=state.exchange_order_id,
            ),
        )

        if not await self.commit(effect, emitted, group=True):
            return Outcome.DONE
        plan = request.plan.value
        if row.state == OrderState.SENDING:
            metrics.ORDERS.labels(self.exchange.value, plan, "placed").inc()
        metrics.ORDERS.labels(self.exchange.value, plan, "filled").inc()
        # Protect now; if this fails the position stays UNPROTECTED (counted, alerted) and
        # the tracker protects it on its next pass. The request's outcome is the fill.
        if not unguarded:
            await self.positions.protect_id(request.client_order_id)
        return Outcome.FILLED

    async def _record_close_fill(
        self,
        row: OrderRow,
        state: VenueOrder,
        summary: FillSummary,
        filters: InstrumentFilters,
        now: datetime,
    ) -> Outcome:
        """A close order filled: each position it closes gets its share of the fill, oldest
        first; a position left without a share keeps running (the tracker protects it), one
        whose share sold only part of it is reduced and its rest protected anew."""
        request = row.request
        positions: list[PositionRow] = []
        async with self.pool.acquire() as conn:
            for entry_id in row.closes_positions:
                position = await Repository.get_position(conn, entry_id)
                if (
                    position is not None
                    and position.status == "OPEN"
                    and position.closing_order == row.client_order_id
                ):
                    positions.append(position)
        shares = allocate(summary.quantity, [p.quantity for p in positions])
        reason = (
            CloseReason.SIGNAL
            if row.purpose == Purpose.CLOSE
            else close_reason(ExitKind(row.exit_kind or ExitKind.TAKE_PROFIT.value))
        )
        emitted: list[Event] = []
        if row.purpose == Purpose.CLOSE:
            if row.state == OrderState.SENDING:
                emitted.append(self._placed_event(row, state, now))
            emitted.append(self._filled_event(request, state, summary, now))
        closing: list[tuple[PositionRow, Sale]] = []
        reducing: list[tuple[PositionRow, Sale]] = []
        cause = request if row.purpose == Purpose.CLOSE else None
        for position, share in zip(positions, shares, strict=True):
            if share <= 0:
                continue
            sale = sell_part(
                position.side,
                held=position.quantity,
                entry_price=position.entry_price,
                entry_fees_quote=position.entry_fees_quote,
                quantity=share,
                exit_price=summary.average_price,
                exit_fees_quote=summary.fees_quote * share / summary.quantity,
                sold=position.sold,
            )
            # Part of it sold (the sell's remainder was cancelled): it stays open for the
            # rest, protected anew.
            partial = sale.remaining > 0 and remainder_sellable(
                sale.remaining, summary.average_price, filters
            )
            (reducing if partial else closing).append((position, sale))
            emitted.append(
                events.position_sold(
                    position,
                    sale,
                    partial=partial,
                    cause=cause,
                    exchange_order_id=state.exchange_order_id,
                    exit_client_order_id=row.client_order_id,
                    reason=reason,
                    fees_estimated=summary.estimated_fees,
                    at=summary.filled_at or now,
                    now=now,
                )
            )
        left = [p.entry_client_order_id for p, s in zip(positions, shares, strict=True) if s <= 0]

        async def effect(conn: Conn) -> bool:
            if not await Repository.finish(
                conn,
                row.client_order_id,
                OrderState.FILLED,
                now,
                exchange_order_id=state.exchange_order_id,
            ):
                return False
            for position, sale in closing:
                await Repository.close_position(
                    conn,
                    position.entry_client_order_id,
                    reason=reason.value,
                    exit_order_id=state.exchange_order_id,
                    exit_client_order_id=row.client_order_id,
                    exit_price=sale.average_exit_price,
                    realized_pnl=sale.totals.pnl,
                    closed_at=summary.filled_at or now,
                )
            for position, sale in reducing:
                await Repository.reduce_position(
                    conn,
                    position.entry_client_order_id,
                    generation=position.generation,
                    remaining=sale.remaining,
                    remaining_entry_fees=sale.remaining_entry_fees,
                    sold=sale.totals,
                    now=now,
                )
            if left:
                await Repository.clear_closing(conn, left, row.client_order_id)
            return True

        if not await self.commit(effect, emitted, group=True):
            return Outcome.DONE
        plan = request.plan.value
        metrics.ORDERS.labels(self.exchange.value, plan, "filled").inc()
        metrics.ORDERS.labels(self.exchange.value, plan, "closed").inc(len(closing))
        if reducing:
            metrics.ORDERS.labels(self.exchange.value, plan, "reduced").inc(len(reducing))
        for position, _ in reducing:
            await self.positions.protect_id(position.entry_client_order_id)
        return Outcome.CLOSED
