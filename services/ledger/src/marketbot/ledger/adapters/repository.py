"""The ledger's write side: load and store operations, fills, commissions, referrers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from marketbot.contracts import (
    DecisionMade,
    Exchange,
    Fill,
    OperationStatus,
    Plan,
    Side,
    SignalReceived,
)
from marketbot.ledger.domain.commission import CommissionRecord, ReferrerChange
from marketbot.ledger.domain.operation import COLUMNS, OperationState
from marketbot.runtime.db import Conn

_ENUMS: dict[str, Any] = {
    "exchange": Exchange,
    "side": Side,
    "plan": Plan,
    "status": OperationStatus,
}

_SELECT_OPERATION = f"SELECT {', '.join(COLUMNS)} FROM operations WHERE operation_id = $1"
_UPSERT_OPERATION = (
    f"INSERT INTO operations ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))}) "
    "ON CONFLICT (operation_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "operation_id")
)
_COMMISSION_COLUMNS = (
    "operation_id",
    "user_id",
    "plan",
    "currency",
    "rate",
    "realized_pnl",
    "amount",
    "referrer_id",
    "affiliate_rate",
    "affiliate_amount",
    "accrued_at",
)
_UPSERT_COMMISSION = (
    f"INSERT INTO commissions ({', '.join(_COMMISSION_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_COMMISSION_COLUMNS) + 1))}) "
    "ON CONFLICT (operation_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COMMISSION_COLUMNS if c != "operation_id")
)


def _db_value(value: object) -> object:
    # StrEnums are str; asyncpg sends them as text.
    return value.value if isinstance(value, Exchange | Side | Plan | OperationStatus) else value


def operation_from_row(row: Any) -> OperationState:
    values = {c: row[c] for c in COLUMNS}
    for name, enum in _ENUMS.items():
        values[name] = enum(values[name])
    return OperationState(**values)


async def lock_user(conn: Conn, user_id: str) -> None:
    """Serialize commission work for one user (close vs referrer change) until commit."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", f"ledger:{user_id}")


async def lock_operation(conn: Conn, operation_id: uuid.UUID) -> None:
    """Serialize the consumers that write one operation (requests vs outcomes) until commit.

    A row lock is not enough: the first event of an operation finds no row to lock, and two
    first events racing would each insert their own half of it.
    """
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", f"ledger-op:{operation_id}"
    )


async def lock_all(conn: Conn, user_ids: Sequence[str], operation_ids: Sequence[uuid.UUID]) -> None:
    """``lock_user`` and ``lock_operation`` for a batch, in one statement: the users first,
    then the operations, each sorted. The single-event path takes a user before its
    operation too, so every transaction takes its locks in one total order (no cycle)."""
    keys = [f"ledger:{u}" for u in sorted(set(user_ids))]
    keys += [f"ledger-op:{o}" for o in sorted({str(o) for o in operation_ids})]
    if keys:
        # unnest yields the array's elements in order, and each row's lock is taken as the
        # row is produced.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 7)) FROM unnest($1::text[]) AS k",
            keys,
        )


async def load_operations(
    conn: Conn, operation_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, OperationState]:
    """``load_operation`` for many, in one statement."""
    rows = await conn.fetch(
        f"SELECT {', '.join(COLUMNS)} FROM operations WHERE operation_id = ANY($1::uuid[]) "
        "FOR UPDATE",
        list(set(operation_ids)),
    )
    return {row["operation_id"]: operation_from_row(row) for row in rows}


async def save_operations(conn: Conn, states: Sequence[OperationState]) -> None:
    """``save_operation`` for many, in one round trip (a pipelined executemany)."""
    if states:
        await conn.executemany(
            _UPSERT_OPERATION,
            [tuple(_db_value(getattr(state, c)) for c in COLUMNS) for state in states],
        )


async def load_operation(conn: Conn, operation_id: uuid.UUID) -> OperationState | None:
    row = await conn.fetchrow(_SELECT_OPERATION + " FOR UPDATE", operation_id)
    return operation_from_row(row) if row is not None else None


async def save_operation(conn: Conn, state: OperationState) -> None:
    await conn.execute(_UPSERT_OPERATION, *(_db_value(getattr(state, c)) for c in COLUMNS))


async def set_operation_commission(
    conn: Conn, operation_id: uuid.UUID, amount: Decimal | None
) -> None:
    await conn.execute(
        "UPDATE operations SET commission = $2 WHERE operation_id = $1 "
        "AND commission IS DISTINCT FROM $2",
        operation_id,
        amount,
    )


async def save_fills(
    conn: Conn, operation_id: uuid.UUID, event_id: uuid.UUID, at: datetime, fills: Sequence[Fill]
) -> None:
    """Insert each trade once; a conflicting copy is settled by the greater event id."""
    await save_fill_rows(conn, fill_rows(operation_id, event_id, at, fills))


def fill_rows(
    operation_id: uuid.UUID, event_id: uuid.UUID, at: datetime, fills: Sequence[Fill]
) -> list[tuple[object, ...]]:
    return [
        (
            operation_id,
            f.trade_id,
            event_id,
            f.price,
            f.quantity,
            f.fee,
            f.fee_asset,
            f.fee_quote,
            f.filled_at or at,
            f.fee_price,
            f.fee_estimated,
        )
        for f in fills
    ]


async def save_fill_rows(conn: Conn, rows: Sequence[tuple[object, ...]]) -> None:
    """The fills of any number of events, in one round trip (a pipelined executemany: a row
    twice is two statements, so the greater event id still wins)."""
    if not rows:
        return
    await conn.executemany(
        "INSERT INTO fills (operation_id, trade_id, event_id, price, quantity, fee, fee_asset, "
        "fee_quote, filled_at, fee_price, fee_estimated) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
        "ON CONFLICT (operation_id, trade_id) DO UPDATE SET event_id = EXCLUDED.event_id, "
        "price = EXCLUDED.price, quantity = EXCLUDED.quantity, fee = EXCLUDED.fee, "
        "fee_asset = EXCLUDED.fee_asset, fee_quote = EXCLUDED.fee_quote, "
        "filled_at = EXCLUDED.filled_at, fee_price = EXCLUDED.fee_price, "
        "fee_estimated = EXCLUDED.fee_estimated "
        "WHERE EXCLUDED.event_id::text > fills.event_id::text",
        rows,
    )


def _commission_from_row(row: Any) -> CommissionRecord:
    values = {c: row[c] for c in _COMMISSION_COLUMNS}
    values["plan"] = Plan(values["plan"])
    return CommissionRecord(**values)


async def load_commission(conn: Conn, operation_id: uuid.UUID) -> CommissionRecord | None:
    row = await conn.fetchrow(
        f"SELECT {', '.join(_COMMISSION_COLUMNS)} FROM commissions WHERE operation_id = $1",
        operation_id,
    )
    return _commission_from_row(row) if row is not None else None


async def commissions_since(conn: Conn, user_id: str, since: datetime) -> list[CommissionRecord]:
    rows = await conn.fetch(
        f"SELECT {', '.join(_COMMISSION_COLUMNS)} FROM commissions "
        "WHERE user_id = $1 AND accrued_at >= $2 ORDER BY accrued_at, operation_id",
        user_id,
        since,
    )
    return [_commission_from_row(r) for r in rows]


async def save_commission(conn: Conn, record: CommissionRecord) -> None:
    row = record.as_row()
    await conn.execute(_UPSERT_COMMISSION, *(_db_value(row[c]) for c in _COMMISSION_COLUMNS))


async def delete_commission(conn: Conn, operation_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM commissions WHERE operation_id = $1", operation_id)


async def referrer_history(conn: Conn, user_id: str) -> list[ReferrerChange]:
    rows = await conn.fetch(
        "SELECT user_id, effective_at, event_id, referrer_id FROM referrer_changes "
        "WHERE user_id = $1",
        user_id,
    )
    return [
        ReferrerChange(r["user_id"], r["effective_at"], r["event_id"], r["referrer_id"])
        for r in rows
    ]


async def add_referrer_change(conn: Conn, change: ReferrerChange) -> bool:
    added = await conn.fetchval(
        "INSERT INTO referrer_changes (user_id, effective_at, event_id, referrer_id) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        change.user_id,
        change.effective_at,
        change.event_id,
        change.referrer_id,
    )
    return bool(added)


async def save_signal(conn: Conn, event: SignalReceived) -> None:
    await conn.execute(
        "INSERT INTO signals (signal_id, event_id, received_at, payload) "
        "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (signal_id) DO UPDATE SET "
        "event_id = EXCLUDED.event_id, received_at = EXCLUDED.received_at, "
        "payload = EXCLUDED.payload WHERE EXCLUDED.event_id::text > signals.event_id::text",
        event.signal_id,
        event.event_id,
        event.received_at,
        event.model_dump_json(),
    )


async def save_decision(conn: Conn, event: DecisionMade) -> None:
    await conn.execute(
        "INSERT INTO decisions (decision_id, signal_id, event_id, decided_at, payload) "
        "VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (decision_id) DO UPDATE SET "
        "signal_id = EXCLUDED.signal_id, event_id = EXCLUDED.event_id, "
        "decided_at = EXCLUDED.decided_at, payload = EXCLUDED.payload "
        "WHERE EXCLUDED.event_id::text > decisions.event_id::text",
        event.decision_id,
        event.signal_id,
        event.event_id,
        event.decided_at,
        event.model_dump_json(),
    )
