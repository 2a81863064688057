"""The query API the gateway calls over NATS request/reply (read-only, on the ledger's pool)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from marketbot.contracts import ErrorDetail
from marketbot.contracts.ledger import (
    CommissionsQuery,
    CommissionsReply,
    OperationsPage,
    OperationsQuery,
    SignalTrace,
    SignalTraceQuery,
    StatementQuery,
    StatementReply,
)
from marketbot.ledger.adapters import queries
from marketbot.runtime.bus import Bus


@dataclass(frozen=True)
class LedgerQueries:
    pool: asyncpg.Pool
    max_commission_entries: int = 1000

    async def operations(self, query: OperationsQuery) -> OperationsPage:
        async with self.pool.acquire() as conn:
            rows, total = await queries.operations_page(
                conn,
                query.user_id,
                status=query.status,
                symbol=query.symbol,
                page=query.page,
                page_size=query.page_size,
            )
        return OperationsPage(
            operations=tuple(rows), total=total, page=query.page, page_size=query.page_size
        )

    async def statement(self, query: StatementQuery) -> StatementReply:
        if query.since and query.until and query.since > query.until:
            return StatementReply(
                ok=False,
                error=ErrorDetail(
                    code="invalid_request", message="since must not be after until", field="since"
                ),
            )
        async with self.pool.acquire() as conn:
            lines = await queries.statement(conn, query.user_id, query.since, query.until)
            affiliate = await queries.affiliate_earned(
                conn, query.user_id, query.since, query.until
            )
        return StatementReply(
            lines=tuple(lines),
            total_realized_pnl=sum((line.realized_pnl for line in lines), start=_zero()),
            total_commissions=sum((line.commissions for line in lines), start=_zero()),
            total_volume=sum((line.volume for line in lines), start=_zero()),
            total_operations=sum(line.operations for line in lines),
            total_affiliate_commissions=affiliate,
        )

    async def commissions(self, query: CommissionsQuery) -> CommissionsReply:
        async with self.pool.acquire() as conn:
            entries, total = await queries.commissions(
                conn, query.user_id, query.referrer_id, self.max_commission_entries
            )
        return CommissionsReply(entries=tuple(entries), total=total)

    async def trace(self, query: SignalTraceQuery) -> SignalTrace:
        async with self.pool.acquire() as conn:
            signal, decision, operations = await queries.trace(conn, query.signal_id)
        if signal is None and decision is None and not operations:
            return SignalTrace(
                ok=False,
                signal_id=query.signal_id,
                error=ErrorDetail(
                    code="not_found", message="the ledger knows no such signal", field="signal_id"
                ),
            )
        return SignalTrace(
            signal_id=query.signal_id,
            signal=signal,
            decision=decision,
            operations=tuple(operations),
        )

    async def serve(self, bus: Bus) -> None:
        await bus.serve(OperationsQuery, OperationsPage, self.operations)
        await bus.serve(StatementQuery, StatementReply, self.statement)
        await bus.serve(CommissionsQuery, CommissionsReply, self.commissions)
        await bus.serve(SignalTraceQuery, SignalTrace, self.trace)


def _zero() -> Decimal:
    return Decimal(0)
