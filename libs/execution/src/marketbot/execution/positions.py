"""Position commands around the lifecycle state machine: protect, check, record an exit,
fire a watched leg.

Every path that records an entry fill (the placement, the lookup after a crash, the tracker
following a placed order) ends in ``protect``. Protection is idempotent on the venue (legs
are found by their own client ids before anything is placed) and guarded like an order: a
committed attempt mark precedes each call, and after an attempt whose outcome is unknown
'no legs found' is conclusive only once ``protect_settle_s`` has passed. A position that
cannot be protected stays UNPROTECTED: it is counted (``marketbot_execution_positions_
unprotected``, alert ``PositionUnprotected``) and retried by the tracker.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from marketbot.contracts import CloseReason
from marketbot.exchanges.errors import Rejected
from marketbot.exchanges.ratelimit import protective
from marketbot.exchanges.signer import Signer, order_scope
from marketbot.exchanges.venue import ExitKind, ExitLeg, Protection, Venue, leg_client_id
from marketbot.exchanges.venue import OrderState as VenueOrder
from marketbot.execution import events, metrics
from marketbot.execution.domain.lifecycle import (
    FireExit,
    Phase,
    Protect,
    Protected,
    RecordExit,
    Reprotect,
    already_reached,
    close_reason,
    next_step,
)
from marketbot.execution.domain.protection import Sale, remainder_sellable, sell_part
from marketbot.execution.repository import OrderState, PositionRow, Purpose, Repository
from marketbot.runtime.db import Conn
from marketbot.runtime.logs import get_logger

if TYPE_CHECKING:
    from marketbot.execution.placement import OrderExecutor

log = get_logger("marketbot.execution.positions")


class PositionKeeper:
    def __init__(self, executor: OrderExecutor) -> None:
        self.executor = executor

    @property
    def venue(self) -> Venue:
        return self.executor.venue

    def _signer(self, position: PositionRow) -> Signer:
        return self.executor.signers(position.user_id, position.request.exchange)

    async def _get(self, entry_id: str) -> PositionRow | None:
        async with self.executor.pool.acquire() as conn:
            return await Repository.get_position(conn, entry_id)

    # ---- protect --------------------------------------------------------------------
    async def protect_id(self, entry_id: str) -> None:
        """Protect a just-recorded entry; a failure leaves it to the tracker (logged)."""
        position = await self._get(entry_id)
        if position is None or position.status != "OPEN":
            return
        try:
            await self.protect(position)
        except Exception as exc:
            log.warning(
                "position not protected yet; the tracker retries",
                entry=entry_id,
                error=repr(exc),
            )

    async def protect(self, position: PositionRow, *, generation: int | None = None) -> None:
        """Put the position's legs on the exchange (exactly once) and record them, ahead of
        new orders for the rate-limit budget (``ratelimit.protective``)."""
        with protective():
            await self._protect(position, generation)

    async def _protect(self, position: PositionRow, generation: int | None) -> None:
        executor = self.executor
        gen = position.generation if generation is None else generation
        spec = position.spec(gen)
        signer = self._signer(position)
        now = executor.clock.now()
        if (
            gen == position.generation
            and position.protect_attempts > 0
            and position.protect_settle_until is not None
            and now < position.protect_settle_until
        ):
            # An earlier attempt may still land: only look, never place now.
            found = await self.venue.protection(signer, spec)
            if found is not None:
                await self._apply(position, found, gen)
            return
        # Nothing of this generation can be on the exchange before its first marked attempt.
        first_attempt = gen != position.generation or position.protect_attempts == 0
        async with executor.pool.acquire() as conn:
            if gen != position.generation:
                await Repository.set_protection(
                    conn,
                    position.entry_client_order_id,
                    phase=Phase.UNPROTECTED,
                    legs=(),
                    generation=gen,
                    error=None,
                )
            await Repository.mark_protect_attempt(
                conn, position.entry_client_order_id, now, executor.config.protect_settle_s
            )
        try:
            # The legs sell from this entry: the vault bounds them by what it signed for it.
            with order_scope(position.request.request_id, (position.entry_client_order_id,)):
                protection = await self.venue.protect(signer, spec, first_attempt=first_attempt)
        except Rejected as exc:
            kind = already_reached(
                spec.exit_side,
                spec.take_profit,
                spec.stop_loss,
                await self.venue.price(spec.symbol),
            )
            if kind is not None:
                # The price passed an exit before the legs were placed: that exit is due now.
                trigger = spec.take_profit if kind is ExitKind.TAKE_PROFIT else spec.stop_loss
                assert trigger is not None
                leg = ExitLeg(
                    kind=kind,
                    trigger_price=trigger,
                    client_order_id=leg_client_id(f"x{kind.value[0].lower()}", spec.client_id, gen),
                    native=False,
                )
                log.info("an exit was reached before protection; closing now", kind=kind.value)
                await self.fire_exit(position, leg)
                return
            metrics.PROTECT_FAILURES.labels(executor.exchange.value, "rejected").inc()
            async with executor.pool.acquire() as conn:
                await Repository.set_protection(
                    conn,
                    position.entry_client_order_id,
                    phase=Phase.UNPROTECTED,
                    legs=(),
                    generation=gen,
                    error=str(exc)[:500],
                )
            log.error(
                "exchange refused the position's exits; it is UNPROTECTED",
                entry=position.entry_client_order_id,
                error=str(exc),
            )
            return
        await self._apply(position, protection, gen)

    async def _apply(self, position: PositionRow, protection: Protection, generation: int) -> None:
        step = next_step(Phase.UNPROTECTED, position.exit_side, protection, None)
        if isinstance(step, RecordExit):
            await self.record_exit(position, step.leg)
            return
        phase = Phase.PROTECTED if isinstance(step, Protected) else Phase.UNPROTECTED
        async with self.executor.pool.acquire() as conn:
            await Repository.set_protection(
                conn,
                position.entry_client_order_id,
                phase=phase,
                legs=protection.legs,
                generation=generation,
                error=None,
            )
        if phase is Phase.PROTECTED:
            log.info(
                "position protected",
                entry=position.entry_client_order_id,
                legs=[leg.client_order_id for leg in protection.legs],
            )

    # ---- track ----------------------------------------------------------------------
    async def check(self, position: PositionRow) -> bool:
        """One look at an open position; ``True`` when it changed (closed, protected)."""
        executor = self.executor
        if position.closing_order is not None:
            async with executor.pool.acquire() as conn:
                row = await Repository.get_order(conn, position.closing_order)
            if row is not None and row.state not in OrderState.FINAL:
                if row.purpose == Purpose.EXIT:
                    await executor.resume(row)
                    return True
                return False  # a signal's close owns it; its request drives it
            # The close order ended without releasing the position (a crash between its
            # outcome and ``clear_closing``): release it, then take the normal step.
            async with executor.pool.acquire() as conn:
                await Repository.clear_closing(
                    conn, [position.entry_client_order_id], position.closing_order
                )
            released = await self._get(position.entry_client_order_id)
            if released is None or released.status != "OPEN" or released.closing_order:
                return True
            position = released
        signer = self._signer(position)
        spec = position.spec()
        protection = None
        if position.phase is Phase.PROTECTED or position.protect_attempts > 0:
            protection = await self.venue.protection(signer, spec)
        price = None
        if protection is not None and protection.watched():
            price = await self.venue.price(position.symbol)
        step = next_step(position.phase, position.exit_side, protection, price)
        match step:
            case Protect():
                await self.protect(position)
            case Protected(protection=found):
                await self._apply(position, found, position.generation)
            case RecordExit(leg=leg):
                await self.record_exit(position, leg)
            case FireExit(leg=leg):
                await self.fire_exit(position, leg)
            case Reprotect():
                log.warning(
                    "the position's exits ended without executing; protecting it anew",
                    entry=position.entry_client_order_id,
                )
                await self.protect(position, generation=position.generation + 1)
            case _:
                return False
        return True

    # ---- exits ----------------------------------------------------------------------
    async def record_exit(
        self,
        position: PositionRow,
        leg: ExitLeg,
        *,
        state: VenueOrder | None = None,
        protect_rest: bool = True,
    ) -> bool:
        """A native leg executed: close the position by that leg, from its trade records;
        ``True`` once its fill is recorded.

        ``state``: the leg's order as the private stream reported it (final, with its
        trades); otherwise it is read by REST. A leg still filling is not recorded yet: the
        position is closed once the leg's order is final (its whole fill known). A leg that
        ended having sold part of the position (its market order's remainder cancelled)
        reduces it (``PositionReduced``) and the rest is protected anew at once, unless
        ``protect_rest`` is off (a close order is about to sell it)."""
        executor = self.executor
        request = position.request
        if state is None:
            with protective():
                state = await self.venue.get_order(
                    self._signer(position),
                    position.symbol,
                    exchange_order_id=leg.exchange_order_id,
                    client_order_id=None if leg.exchange_order_id else leg.client_order_id,
                )
        if state is None or state.filled_quantity <= 0 or not state.status.is_final:
            return False
        filters = await self.venue.instrument(position.symbol)
        summary = await executor.summarize(request, state, filters)
        reason = close_reason(leg.kind)
        sale = sell_part(
            position.side,
            held=position.quantity,
            entry_price=position.entry_price,
            entry_fees_quote=position.entry_fees_quote,
            quantity=summary.quantity,
            exit_price=summary.average_price,
            exit_fees_quote=summary.fees_quote,
            sold=position.sold,
        )
        now = executor.clock.now()
        closed_at = summary.filled_at or now
        if sale.remaining > 0 and remainder_sellable(
            sale.remaining, summary.average_price, filters
        ):
            return await self._record_part(
                position,
                sale,
                exchange_order_id=state.exchange_order_id,
                exit_client_order_id=leg.client_order_id,
                reason=reason,
                fees_estimated=summary.estimated_fees,
                reduced_at=closed_at,
                protect_rest=protect_rest,
            )
        pnl = sale.totals.pnl
        event = events.position_sold(
            position,
            sale,
            partial=False,
            cause=None,
            exchange_order_id=state.exchange_order_id,
            exit_client_order_id=leg.client_order_id,
            reason=reason,
            fees_estimated=summary.estimated_fees,
            at=closed_at,
            now=now,
        )

        async def effect(conn: Conn) -> bool:
            return await Repository.close_position(
                conn,
                position.entry_client_order_id,
                reason=reason.value,
                exit_order_id=state.exchange_order_id,
                exit_client_order_id=leg.client_order_id,
                exit_price=sale.average_exit_price,
                realized_pnl=pnl,
                closed_at=closed_at,
            )

        closed = await executor.commit(effect, [event], group=True)
        if closed:
            metrics.ORDERS.labels(executor.exchange.value, request.plan.value, "closed").inc()
            log.info(
                "position closed by its exit leg",
                reason=reason.value,
                leg=leg.client_order_id,
                pnl=str(pnl),
                user=request.user_id,
            )
        return closed

    async def _record_part(
        self,
        position: PositionRow,
        sale: Sale,
        *,
        exchange_order_id: str,
        exit_client_order_id: str,
        reason: CloseReason,
        fees_estimated: bool,
        reduced_at: datetime,
        protect_rest: bool,
    ) -> bool:
        """A leg sold part of the position: reduce it (once: the generation it was
        protected under moves on) and protect what is left with new legs."""
        executor = self.executor
        now = executor.clock.now()
        event = events.position_sold(
            position,
            sale,
            partial=True,
            cause=None,
            exchange_order_id=exchange_order_id,
            exit_client_order_id=exit_client_order_id,
            reason=reason,
            fees_estimated=fees_estimated,
            at=reduced_at,
            now=now,
        )

        async def effect(conn: Conn) -> bool:
            return await Repository.reduce_position(
                conn,
                position.entry_client_order_id,
                generation=position.generation,
                remaining=sale.remaining,
                remaining_entry_fees=sale.remaining_entry_fees,
                sold=sale.totals,
                now=now,
            )

        reduced = await executor.commit(effect, [event], group=True)
        if reduced:
            metrics.ORDERS.labels(
                executor.exchange.value, position.request.plan.value, "reduced"
            ).inc()
            log.info(
                "part of the position sold by its exit leg; the rest is protected anew",
                reason=reason.value,
                leg=exit_client_order_id,
                sold=str(sale.quantity),
                remaining=str(sale.remaining),
                entry=position.entry_client_order_id,
            )
            if protect_rest:
                await self.protect_id(position.entry_client_order_id)
        return reduced

    async def fire_exit(self, position: PositionRow, leg: ExitLeg) -> None:
        """The price reached a watched leg: record an EXIT order under the leg's own id,
        then cancel the native legs and sell (``OrderExecutor._closing_order``)."""
        executor = self.executor
        now = executor.clock.now()
        # Recorded first (one statement: the row, and the position given to it); an
        # existing row (fired before) is read instead.
        async with executor.pool.acquire() as conn:
            row = await Repository.insert_sending(
                conn,
                position.request,
                now=now,
                owner=executor.owner,
                lease_s=executor.config.lease_s,
                quantity=position.quantity,
                quote_amount=position.quantity * leg.trigger_price,
                reference_price=leg.trigger_price,
                purpose=Purpose.EXIT,
                closes_positions=(position.entry_client_order_id,),
                client_order_id=leg.client_order_id,
                side=position.exit_side,
                exit_kind=leg.kind.value,
                closing=True,
            )
            inserted = row is not None
            if row is None:
                row = await Repository.get_order(conn, leg.client_order_id)
        if row is None:
            return
        if not inserted and row.state == OrderState.REJECTED:
            # This leg's order could not be placed: protect anew (new leg ids).
            await self.protect(position, generation=position.generation + 1)
            return
        if inserted:
            log.info(
                "watched exit reached; closing",
                leg=leg.client_order_id,
                kind=leg.kind.value,
                entry=position.entry_client_order_id,
            )
        # A row just inserted is leased to this executor already.
        await executor.resume(row, claimed=inserted)
