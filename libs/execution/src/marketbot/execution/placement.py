"""Placing one request exactly once, and recording every outcome with its event.

The order row (keyed by the request's client order id) is committed before anything is
sent, and every send is preceded by a committed attempt mark. A row that may have been sent
is first looked up on the exchange by client order id; "not found" is taken as conclusive
only once ``settle_until`` has passed (by then any request signed for an earlier attempt is
outside the exchange's receive window and can no longer be executed). Outcome events go
into the outbox in the same transaction as the state change that caused them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

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
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.venue import (
    InstrumentFilters,
    OrderRequest,
    OrderType,
    Venue,
)
from marketbot.exchanges.venue import OrderState as VenueOrder
from marketbot.execution import events, metrics
from marketbot.execution.domain.protection import protection_prices, realized_pnl
from marketbot.execution.domain.sizing import (
    LotRules,
    SizingRejection,
    SizingRules,
    round_down,
    size_order,
)
from marketbot.execution.exits import ExitOrder, cancel_open_exits, exit_kind, exit_orders
from marketbot.execution.fills import FillSummary, summarize
from marketbot.execution.repository import (
    ExitRef,
    NewPosition,
    OrderRow,
    OrderState,
    PositionRow,
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


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    max_request_age_s: float = 120.0
    unknown_settle_s: float = 15.0
    unknown_poll_s: float = 1.0
    retry_backoff_s: float = 0.5
    breaker_pause_s: float = 2.0
    lease_s: float = 60.0
    default_fee_rate: Decimal = Decimal("0.001")
    track_interval_s: float = 2.0
    track_max_interval_s: float = 30.0


class StoppingError(Exception):
    """The executor is shutting down: the request stays in the stream."""


class _WaitError(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"wait {seconds:.2f}s")
        self.seconds = seconds


class Gate:
    """Pauses every send of this process (IP ban, rate limit, open circuit breaker)."""

    def __init__(self, clock: Clock, exchange: Exchange) -> None:
        self._clock = clock
        self._exchange = exchange.value
        self._until = 0.0

    def pause(self, seconds: float, cause: str) -> None:
        until = self._clock.monotonic() + max(0.0, seconds)
        if until > self._until:
            self._until = until
            metrics.PAUSES.labels(self._exchange, cause).inc()
            log.warning("sending paused", cause=cause, seconds=round(seconds, 3))

    @property
    def remaining(self) -> float:
        return max(0.0, self._until - self._clock.monotonic())

    async def wait(self, stopping: asyncio.Event) -> None:
        while (remaining := self.remaining) > 0:
            if stopping.is_set():
                raise StoppingError
            await self._clock.sleep(min(remaining, 1.0))


class OrderExecutor:
    """Everything that happens to one request, and the shared recording of results."""

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
        self.stopping = asyncio.Event()
        self.turn: Callable[[Plan], Awaitable[None]] | None = None
        """Set by the engine: waits while a higher plan tier has work."""
        self._fee_rates: dict[str, Decimal] = {}

    # ---- the request loop -----------------------------------------------------------
    async def execute(self, request: OrderRequested) -> Outcome:
        """Run the request to a recorded outcome; waits out bans, not_before and unknowns."""
        while True:
            if self.stopping.is_set():
                raise StoppingError
            await self.gate.wait(self.stopping)
            if self.turn is not None:
                await self.turn(request.plan)
            try:
                return await self._attempt(request)
            except _WaitError as wait:
                await self._sleep(wait.seconds)
            except CircuitOpenError:
                self.gate.pause(self.config.breaker_pause_s, "breaker")
            except IpBannedError as exc:
                self.gate.pause(exc.retry_after_s, "ban")
            except RateLimited as exc:
                self.gate.pause(exc.retry_after_s, "rate_limit")
            except Retryable as exc:
                log.info("retryable exchange error", error=str(exc))
                await self._sleep(self.config.retry_backoff_s)
            except (OutcomeUnknown, DuplicateClientOrderIdError) as exc:
                await self._record_unknown(request, str(exc))
                await self._sleep(self.config.unknown_poll_s)
            except ExchangeError as exc:
                log.warning("unclassified exchange error; treated as unknown", error=str(exc))
                await self._record_unknown(request, str(exc))
                await self._sleep(self.config.unknown_poll_s)
            except (asyncpg.PostgresError, OSError, BusError) as exc:
                log.warning("infrastructure error; retrying", error=repr(exc))
                await self._sleep(self.config.retry_backoff_s)

    async def _sleep(self, seconds: float) -> None:
        if self.stopping.is_set():
            raise StoppingError
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return
        raise StoppingError

    def _stale(self, request: OrderRequested, now: datetime) -> bool:
        return (now - request.requested_at).total_seconds() > self.config.max_request_age_s

    async def _attempt(self, request: OrderRequested) -> Outcome:
        cid = request.client_order_id
        now = self.clock.now()
        async with self.pool.acquire() as conn:
            row = await Repository.get_order(conn, cid)
        if row is not None and row.state in OrderState.FINAL:
            return Outcome.DONE
        if row is not None and row.state == OrderState.PLACED:
            return Outcome.DONE  # acknowledged; the tracker follows it to its fill
        if row is None:
            if self._stale(request, now):
                return await self._stale_reject(request, now)
            due = (request.not_before - now).total_seconds()
            if due > 0:
                raise _WaitError(due)
            prepared = await self._prepare(request)
            if isinstance(prepared, Outcome):
                return prepared
            row = prepared
        else:
            if not await self._claim(cid):
                raise _WaitError(min(self.config.lease_s / 4, 5.0))
            if row.maybe_sent:
                found = await self._lookup(row)
                if found is not None:
                    return await self.record_result(row, found)
                if row.settle_until is not None and now < row.settle_until:
                    raise _WaitError((row.settle_until - now).total_seconds())
            if self._stale(request, now):
                return await self._stale_reject(request, now)
        return await self._send(row)

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
            client_order_id=request.client_order_id,
        )
        metrics.RECONCILIATIONS.labels(
            self.exchange.value, "found" if found is not None else "not_found"
        ).inc()
        return found

    # ---- before sending ---------------------------------------------------------------
    async def _prepare(self, request: OrderRequested) -> OrderRow | Outcome:
        try:
            if request.side is Side.BUY:
                return await self._prepare_entry(request)
            return await self._prepare_close(request)
        except Rejected as exc:
            return await self.reject(request, exc.reason, str(exc), code=exc.code)

    async def _prepare_entry(self, request: OrderRequested) -> OrderRow | Outcome:
        signer = self.signers(request.user_id, request.exchange)
        # Independent reads: one round trip of latency instead of three.
        filters, price, balance = await asyncio.gather(
            self.venue.instrument(request.symbol),
            self.venue.price(request.symbol),
            self.venue.balance(signer, self.sizing.quote_asset),
        )
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
            return await self.reject(request, sized.reason, sized.message, code=sized.filter)
        protection = protection_prices(
            request.side,
            price,
            stop_loss_percent=request.stop_loss_percent,
            take_profit_percent=request.take_profit_percent,
        )
        return await self._insert_sending(
            request,
            quantity=sized.quantity,
            quote_amount=sized.notional,
            reference_price=price,
            stop_loss=protection.stop_loss,
            take_profit=protection.take_profit,
        )

    async def _prepare_close(self, request: OrderRequested) -> OrderRow | Outcome:
        async with self.pool.acquire() as conn:
            position = await Repository.find_open_position(conn, request.user_id, request.symbol)
        if position is None:
            return await self.reject(
                request,
                RejectReason.NO_POSITION,
                f"no open position in {request.symbol} to close",
            )
        return await self._insert_sending(
            request,
            quantity=position.quantity,
            quote_amount=position.quantity * position.entry_price,
            reference_price=position.entry_price,
            closes_position=position.entry_client_order_id,
        )

    async def _insert_sending(
        self,
        request: OrderRequested,
        *,
        quantity: Decimal,
        quote_amount: Decimal,
        reference_price: Decimal,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
        closes_position: str | None = None,
    ) -> OrderRow:
        now = self.clock.now()
        async with self.pool.acquire() as conn:
            row = await Repository.insert_sending(
                conn,
                request,
                now=now,
                owner=self.owner,
                lease_s=self.config.lease_s,
                quantity=quantity,
                quote_amount=quote_amount,
                reference_price=reference_price,
                stop_loss_price=stop_loss,
                take_profit_price=take_profit,
                closes_position=closes_position,
            )
        if row is None:
            # Another delivery recorded it first: go round again and take the path for an
            # existing row (lease, lookup), never send on its behalf.
            raise _WaitError(0.0)
        return row

    # ---- sending -------------------------------------------------------------------
    async def _send(self, row: OrderRow) -> Outcome:
        request = row.request
        signer = self.signers(request.user_id, request.exchange)
        if row.closes_position is not None:
            order_or_outcome = await self._close_order(row, signer)
            if isinstance(order_or_outcome, Outcome):
                return order_or_outcome
            order = order_or_outcome
        else:
            assert row.quantity is not None
            order = OrderRequest(
                symbol=request.symbol,
                side=request.side,
                order_type=OrderType.MARKET,
                client_order_id=request.client_order_id,
                quantity=row.quantity,
                take_profit_price=row.take_profit_price,
                stop_loss_price=row.stop_loss_price,
            )
        async with self.pool.acquire() as conn:
            await Repository.mark_attempt(
                conn, request.client_order_id, self.clock.now(), self.config.unknown_settle_s
            )
        try:
            state = await self.venue.place_order(signer, order)
        except DuplicateClientOrderIdError:
            raise  # already placed: resolved by lookup in the request loop
        except Rejected as exc:
            return await self.reject(request, exc.reason, str(exc), code=exc.code)
        except Retryable:
            # An answer that says nothing executed (or a request never sent): nothing is
            # in flight, so a lookup that finds nothing is conclusive right away.
            async with self.pool.acquire() as conn:
                await Repository.set_settle(conn, request.client_order_id, self.clock.now())
            raise
        return await self.record_result(row, state)

    async def _close_order(self, row: OrderRow, signer: Signer) -> OrderRequest | Outcome:
        request = row.request
        assert row.closes_position is not None
        async with self.pool.acquire() as conn:
            position = await Repository.get_position(conn, row.closes_position)
        if position is None or position.status != "OPEN":
            return await self.reject(
                request, RejectReason.NO_POSITION, "the position was closed before the signal"
            )
        exits = await exit_orders(self.venue, signer, position)
        hit = next((e for e in exits if e.filled), None)
        if hit is not None:
            await self.close_by_exit(position, hit)
            return await self.reject(
                request,
                RejectReason.NO_POSITION,
                f"the position was already closed by its {exit_kind(position, hit).value} leg",
            )
        await cancel_open_exits(self.venue, signer, position, exits)
        filters = await self.venue.instrument(request.symbol)
        held = (await self.venue.balance(signer, position.base_asset)).free
        quantity = round_down(min(position.quantity, held), filters.qty_step)
        quantity = round_down(quantity, filters.market_qty_step)
        if quantity <= 0 or quantity < filters.min_qty:
            return await self.reject(
                request,
                RejectReason.FILTER,
                f"min_qty: closing quantity {quantity} (held {held}) is below the minimum "
                f"{filters.min_qty}",
            )
        return OrderRequest(
            symbol=request.symbol,
            side=Side.SELL,
            order_type=OrderType.MARKET,
            client_order_id=request.client_order_id,
            quantity=quantity,
        )

    # ---- recording -----------------------------------------------------------------
    async def commit(
        self, effect: Callable[[Conn], Awaitable[bool | None]], emitted: Sequence[Event]
    ) -> bool:
        """Apply ``effect`` and store ``emitted`` in one transaction, then publish them.

        ``effect`` returning ``False`` means another worker got there first: nothing is
        emitted."""
        async with self.pool.acquire() as conn, conn.transaction():
            applied = await effect(conn)
            if applied is False:
                return False
            rows = await Outbox.add(conn, emitted)
        try:
            await self.outbox.flush(rows)
        except (BusError, OSError, asyncpg.PostgresError) as exc:
            log.warning("outbox publish deferred to the relay", error=str(exc))
        return True

    async def reject(
        self,
        request: OrderRequested,
        reason: RejectReason,
        message: str,
        *,
        code: int | str | None = None,
    ) -> Outcome:
        now = self.clock.now()
        event = events.rejected(request, reason, message, now, code=code)

        async def effect(conn: Conn) -> None:
            inserted = await Repository.insert_order(
                conn, request, state=OrderState.REJECTED, now=now
            )
            if not inserted:
                await Repository.set_state(conn, request.client_order_id, OrderState.REJECTED, now)

        await self.commit(effect, [event])
        outcome = Outcome.STALE if reason is RejectReason.STALE else Outcome.REJECTED
        metrics.ORDERS.labels(self.exchange.value, request.plan.value, outcome.value).inc()
        log.info("order rejected", reason=reason.value, message=message, user=request.user_id)
        return outcome

    async def _stale_reject(self, request: OrderRequested, now: datetime) -> Outcome:
        age = (now - request.requested_at).total_seconds()
        return await self.reject(
            request,
            RejectReason.STALE,
            f"request is {age:.1f}s old, older than the maximum {self.config.max_request_age_s}s; "
            "not sent",
        )

    async def _record_unknown(self, request: OrderRequested, detail: str) -> None:
        now = self.clock.now()
        cid = request.client_order_id

        async def effect(conn: Conn) -> bool:
            await Repository.set_settle(
                conn, cid, now + timedelta(seconds=self.config.unknown_settle_s)
            )
            return await Repository.mark_unknown(conn, cid, now)

        if await self.commit(effect, [events.outcome_unknown(request, detail, now)]):
            log.warning("order outcome unknown; reconciling", detail=detail)

    async def record_result(self, row: OrderRow, state: VenueOrder) -> Outcome:
        """Record what the exchange says about the order: placed, filled or ended unfilled."""
        request = row.request
        now = self.clock.now()
        if row.state == OrderState.SENDING:
            metrics.ACK_LATENCY.labels(self.exchange.value, request.plan.value).observe(
                max(0.0, (now - request.requested_at).total_seconds())
            )
        if state.filled_quantity <= 0:
            if state.status.is_final:
                reason = f": {state.reject_reason}" if state.reject_reason else ""
                return await self.reject(
                    request,
                    RejectReason.EXCHANGE,
                    f"order {state.exchange_order_id} ended {state.status.value} with nothing "
                    f"filled{reason}",
                )
            if row.state == OrderState.PLACED:
                return Outcome.PLACED
            return await self._record_placed(row, state, now)
        if not state.status.is_final:
            if row.state == OrderState.PLACED:
                return Outcome.PLACED
            return await self._record_placed(row, state, now)
        filters = await self.venue.instrument(request.symbol)
        summary = await self._summarize(state, filters, request)
        if row.closes_position is not None:
            return await self._record_close_fill(row, state, summary, filters, now)
        return await self._record_entry_fill(row, state, summary, filters, now)

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
            now=now,
        )

    async def _record_placed(self, row: OrderRow, state: VenueOrder, now: datetime) -> Outcome:
        request = row.request

        async def effect(conn: Conn) -> None:
            await Repository.set_state(
                conn,
                request.client_order_id,
                OrderState.PLACED,
                now,
                exchange_order_id=state.exchange_order_id,
            )

        await self.commit(effect, [self._placed_event(row, state, now)])
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
        if state.exit_error:
            log.warning("entry filled but its exits were not placed", error=state.exit_error)
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
            exits=tuple(
                ExitRef(
                    kind=leg.kind.value,
                    trigger_price=leg.trigger_price,
                    exchange_order_id=leg.exchange_order_id,
                    client_order_id=leg.client_order_id,
                )
                for leg in state.exits
            ),
            exit_error=state.exit_error,
        )

        async def effect(conn: Conn) -> None:
            await Repository.set_state(
                conn,
                request.client_order_id,
                OrderState.FILLED,
                now,
                exchange_order_id=state.exchange_order_id,
            )
            await Repository.open_position(conn, position, now, self.config.track_interval_s)

        await self.commit(effect, emitted)
        plan = request.plan.value
        if row.state == OrderState.SENDING:
            metrics.ORDERS.labels(self.exchange.value, plan, "placed").inc()
        metrics.ORDERS.labels(self.exchange.value, plan, "filled").inc()
        return Outcome.FILLED

    async def _record_close_fill(
        self,
        row: OrderRow,
        state: VenueOrder,
        summary: FillSummary,
        filters: InstrumentFilters,
        now: datetime,
    ) -> Outcome:
        request = row.request
        assert row.closes_position is not None
        async with self.pool.acquire() as conn:
            position = await Repository.get_position(conn, row.closes_position)
        assert position is not None
        fees = position.entry_fees_quote + summary.fees_quote
        pnl = realized_pnl(
            position.side, summary.quantity, position.entry_price, summary.average_price, fees
        )
        emitted: list[Event] = []
        if row.state == OrderState.SENDING:
            emitted.append(self._placed_event(row, state, now))
        emitted.append(self._filled_event(request, state, summary, now))
        emitted.append(
            events.position_closed(
                position.request,
                cause=request,
                exchange_order_id=state.exchange_order_id,
                reason=CloseReason.SIGNAL,
                quantity=summary.quantity,
                entry_price=position.entry_price,
                exit_price=summary.average_price,
                fees_quote=fees,
                realized_pnl=pnl,
                now=now,
            )
        )

        async def effect(conn: Conn) -> None:
            await Repository.set_state(
                conn,
                request.client_order_id,
                OrderState.FILLED,
                now,
                exchange_order_id=state.exchange_order_id,
            )
            await Repository.close_position(
                conn,
                position.entry_client_order_id,
                reason=CloseReason.SIGNAL.value,
                exit_order_id=state.exchange_order_id,
                exit_price=summary.average_price,
                realized_pnl=pnl,
                now=now,
            )

        await self.commit(effect, emitted)
        plan = request.plan.value
        metrics.ORDERS.labels(self.exchange.value, plan, "filled").inc()
        metrics.ORDERS.labels(self.exchange.value, plan, "closed").inc()
        return Outcome.CLOSED

    async def close_by_exit(self, position: PositionRow, hit: ExitOrder) -> bool:
        """Close a position whose TP or SL leg filled; ``True`` if this call closed it."""
        request = position.request
        filters = await self.venue.instrument(position.symbol)
        summary = await self._summarize(hit.state, filters, request)
        kind = exit_kind(position, hit)
        reason = CloseReason.TAKE_PROFIT if kind.value == "TAKE_PROFIT" else CloseReason.STOP_LOSS
        fees = position.entry_fees_quote + summary.fees_quote
        pnl = realized_pnl(
            position.side, summary.quantity, position.entry_price, summary.average_price, fees
        )
        now = self.clock.now()
        event = events.position_closed(
            request,
            cause=None,
            exchange_order_id=hit.state.exchange_order_id,
            reason=reason,
            quantity=summary.quantity,
            entry_price=position.entry_price,
            exit_price=summary.average_price,
            fees_quote=fees,
            realized_pnl=pnl,
            now=now,
        )

        async def effect(conn: Conn) -> bool:
            return await Repository.close_position(
                conn,
                position.entry_client_order_id,
                reason=reason.value,
                exit_order_id=hit.state.exchange_order_id,
                exit_price=summary.average_price,
                realized_pnl=pnl,
                now=now,
            )

        closed = await self.commit(effect, [event])
        if closed:
            metrics.ORDERS.labels(self.exchange.value, request.plan.value, "closed").inc()
            log.info("position closed", reason=reason.value, pnl=str(pnl), user=request.user_id)
        return closed

    async def _summarize(
        self, state: VenueOrder, filters: InstrumentFilters, request: OrderRequested
    ) -> FillSummary:
        async def fee_rate() -> Decimal:
            return await self._fee_rate(request.user_id, request.exchange)

        async def price_of(symbol: str) -> Decimal | None:
            try:
                return await self.venue.price(symbol)
            except ExchangeError:
                return None

        return await summarize(state, filters, fee_rate=fee_rate, price_of=price_of)

    async def _fee_rate(self, user_id: str, exchange: Exchange) -> Decimal:
        cached = self._fee_rates.get(user_id)
        if cached is not None:
            return cached
        rate = self.config.default_fee_rate
        try:
            info = await self.venue.account_info(self.signers(user_id, exchange))
            if info.taker_commission is not None and info.taker_commission > 0:
                rate = info.taker_commission
        except ExchangeError as exc:
            log.info("taker fee rate unavailable; using the default", error=str(exc))
        self._fee_rates[user_id] = rate
        return rate
