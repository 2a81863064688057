"""The ledger's read side: pages of operations, statements, commissions, traces, checksums."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from marketbot.contracts import Exchange, OperationStatus, Plan, Side
from marketbot.contracts.ledger import CommissionEntry, Operation, StatementLine
from marketbot.runtime.db import Conn

_OPERATION_COLUMNS = (
    "operation_id, signal_id, decision_id, user_id, exchange, symbol, side, plan, status, "
    "client_order_id, coalesce(placed_order_id, filled_order_id, closed_order_id) AS order_id, "
    "placed_quantity, filled_quantity, coalesce(average_price, entry_price) AS avg_price, "
    "exit_price, coalesce(fees_quote, entry_fees) AS fees, "
    # an open position sold in parts shows the profit realised so far
    "coalesce(realized_pnl, reduced_pnl) AS realized_pnl, commission, "
    "reject_reason, reject_message, sort_at, updated_at, limit_price, max_slippage_percent, "
    "exit_client_order_id, (entry_fees_estimated OR fees_estimated) AS fees_estimated"
)


def operation_from_row(row: Any) -> Operation:
    reason = row["reject_reason"]
    if reason is not None and row["reject_message"]:
        reason = f"{reason}: {row['reject_message']}"
    return Operation(
        operation_id=row["operation_id"],
        signal_id=row["signal_id"],
        decision_id=row["decision_id"],
        user_id=row["user_id"],
        exchange=Exchange(row["exchange"]),
        symbol=row["symbol"],
        side=Side(row["side"]),
        plan=Plan(row["plan"]),
        status=OperationStatus(row["status"]),
        client_order_id=row["client_order_id"],
        exchange_order_id=row["order_id"],
        requested_quantity=row["placed_quantity"],
        filled_quantity=row["filled_quantity"],
        average_price=row["avg_price"],
        exit_price=row["exit_price"],
        fees_quote=row["fees"],
        realized_pnl=row["realized_pnl"],
        commission=row["commission"],
        reject_reason=reason,
        requested_at=row["sort_at"],
        updated_at=row["updated_at"],
        limit_price=row["limit_price"],
        max_slippage_percent=row["max_slippage_percent"],
        exit_client_order_id=row["exit_client_order_id"],
        fees_estimated=row["fees_estimated"],
    )


async def operations_page(
    conn: Conn,
    user_id: str,
    *,
    status: OperationStatus | None = None,
    symbol: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> tuple[list[Operation], int]:
    """Newest first. Only the filters given appear in the SQL, so the matching index is used."""
    where = ["user_id = $1"]
    args: list[object] = [user_id]
    if status is not None:
        args.append(status.value)
        where.append(f"status = ${len(args)}")
    if symbol is not None:
        args.append(symbol)
        where.append(f"symbol = ${len(args)}")
    condition = " AND ".join(where)
    total = await conn.fetchval(f"SELECT count(*) FROM operations WHERE {condition}", *args)
    rows = await conn.fetch(
        f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE {condition} "
        f"ORDER BY sort_at DESC, operation_id DESC "
        f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
        *args,
        page_size,
        (page - 1) * page_size,
    )
    return [operation_from_row(r) for r in rows], int(total)


def _user_filter(user_id: str | None, args: list[object]) -> str:
    if user_id is None:
        return ""
    args.append(user_id)
    return f" AND user_id = ${len(args)}"


def _day_filter(column: str, since: date | None, until: date | None, args: list[object]) -> str:
    sql = ""
    if since is not None:
        args.append(since)
        sql += f" AND ({column} AT TIME ZONE 'UTC')::date >= ${len(args)}"
    if until is not None:
        args.append(until)
        sql += f" AND ({column} AT TIME ZONE 'UTC')::date <= ${len(args)}"
    return sql


async def statement(
    conn: Conn, user_id: str | None, since: date | None, until: date | None
) -> list[StatementLine]:
    """By UTC day: operations filled, volume (entry + exit notional), realized PnL, commissions."""
    args: list[object] = []
    user = _user_filter(user_id, args)
    filled = _day_filter("filled_at", since, until, args)
    closed = _day_filter("closed_at", since, until, args)
    rows = await conn.fetch(
        "SELECT day, sum(n)::int AS operations, sum(volume) AS volume, sum(pnl) AS pnl, "
        "sum(commission) AS commissions FROM ("
        "  SELECT (filled_at AT TIME ZONE 'UTC')::date AS day, 1 AS n, filled_quote AS volume, "
        "         0::numeric AS pnl, 0::numeric AS commission"
        f"  FROM operations WHERE filled_at IS NOT NULL AND filled_quote IS NOT NULL{user}{filled}"
        "  UNION ALL"
        "  SELECT (closed_at AT TIME ZONE 'UTC')::date, 0,"
        "         coalesce(closed_quantity * exit_price, 0), realized_pnl, coalesce(commission, 0)"
        f"  FROM operations WHERE closed_at IS NOT NULL{user}{closed}"
        ") legs GROUP BY day ORDER BY day",
        *args,
    )
    return [
        StatementLine(
            day=r["day"],
            operations=r["operations"],
            volume=r["volume"],
            realized_pnl=r["pnl"],
            commissions=r["commissions"],
        )
        for r in rows
    ]


async def affiliate_earned(
    conn: Conn, referrer_id: str | None, since: date | None, until: date | None
) -> Decimal:
    """Affiliate commissions earned by ``referrer_id`` (None: paid to every referrer)."""
    args: list[object] = []
    sql = "SELECT coalesce(sum(affiliate_amount), 0) FROM commissions WHERE referrer_id IS NOT NULL"
    if referrer_id is not None:
        args.append(referrer_id)
        sql += f" AND referrer_id = ${len(args)}"
    sql += _day_filter("accrued_at", since, until, args)
    return Decimal(await conn.fetchval(sql, *args))


async def commissions(
    conn: Conn, user_id: str | None, referrer_id: str | None, limit: int
) -> tuple[list[CommissionEntry], Decimal]:
    """Newest first, at most ``limit`` entries; the total covers every matching entry.

    The total is the platform commission, or the affiliate share when asked by referrer only.
    """
    args: list[object] = []
    where = "true"
    if user_id is not None:
        args.append(user_id)
        where += f" AND user_id = ${len(args)}"
    if referrer_id is not None:
        args.append(referrer_id)
        where += f" AND referrer_id = ${len(args)}"
    summed = "affiliate_amount" if referrer_id is not None and user_id is None else "amount"
    total = await conn.fetchval(
        f"SELECT coalesce(sum({summed}), 0) FROM commissions WHERE {where}", *args
    )
    rows = await conn.fetch(
        "SELECT operation_id, user_id, plan, rate, realized_pnl, amount, accrued_at, referrer_id, "
        f"affiliate_amount FROM commissions WHERE {where} "
        f"ORDER BY accrued_at DESC, operation_id DESC LIMIT ${len(args) + 1}",
        *args,
        limit,
    )
    entries = [
        CommissionEntry(
            operation_id=r["operation_id"],
            user_id=r["user_id"],
            plan=Plan(r["plan"]),
            rate=r["rate"],
            realized_pnl=r["realized_pnl"],
            amount=r["amount"],
            accrued_at=r["accrued_at"],
            referrer_id=r["referrer_id"],
            affiliate_amount=r["affiliate_amount"],
        )
        for r in rows
    ]
    return entries, Decimal(total)


async def trace(
    conn: Conn, signal_id: uuid.UUID
) -> tuple[dict[str, object] | None, dict[str, object] | None, list[Operation]]:
    """The signal, its decision and every user's operation (plan priority, then time)."""
    signal = await conn.fetchval("SELECT payload FROM signals WHERE signal_id = $1", signal_id)
    decision = await conn.fetchval(
        "SELECT payload FROM decisions WHERE signal_id = $1 "
        "ORDER BY decided_at DESC, decision_id DESC LIMIT 1",
        signal_id,
    )
    rows = await conn.fetch(
        f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE signal_id = $1 "
        "ORDER BY priority NULLS LAST, sort_at, user_id, operation_id",
        signal_id,
    )
    return (
        json.loads(signal) if signal is not None else None,
        json.loads(decision) if decision is not None else None,
        [operation_from_row(r) for r in rows],
    )


PROJECTION_TABLES: dict[str, str] = {
    "operations": "operation_id",
    "fills": "operation_id, trade_id",
    "commissions": "operation_id",
    "referrer_changes": "user_id, effective_at, event_id",
    "signals": "signal_id",
    "decisions": "decision_id",
}


async def checksums(conn: Conn) -> dict[str, str]:
    """sha256 of a canonical dump of each projection table (rows in key order, UTC text).

    Processing bookkeeping (processed_events, outbox, dead_letters) is not part of it.
    """
    result: dict[str, str] = {}
    async with conn.transaction():
        await conn.execute("SET LOCAL TimeZone = 'UTC'")
        await conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
        for table, key in PROJECTION_TABLES.items():
            digest = await conn.fetchval(
                "SELECT encode(sha256(convert_to(coalesce(string_agg(t::text, E'\\n' "
                f"ORDER BY {key}), ''), 'UTF8')), 'hex') FROM {table} t"
            )
            result[table] = str(digest)
    combined = hashlib.sha256(
        "".join(f"{t}:{h}\n" for t, h in sorted(result.items())).encode()
    ).hexdigest()
    result["all"] = combined
    return result
