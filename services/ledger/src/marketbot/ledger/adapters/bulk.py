"""Bulk-load a whole in-memory projection into empty tables (the rebuild's fast path)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from marketbot.contracts import Exchange, OperationStatus, Plan, Side
from marketbot.ledger.domain.operation import COLUMNS
from marketbot.ledger.domain.projection import Projection
from marketbot.runtime.db import Conn


def _plain(value: object) -> object:
    return value.value if isinstance(value, Exchange | Side | Plan | OperationStatus) else value


async def load_projection(
    conn: Conn, projection: Projection, processed: Iterable[tuple[str, uuid.UUID]]
) -> None:
    commissions = projection.commissions()
    await conn.copy_records_to_table(
        "operations",
        columns=[*COLUMNS, "commission"],
        records=[
            (
                *(_plain(getattr(op, c)) for c in COLUMNS),
                commissions[op.operation_id].amount if op.operation_id in commissions else None,
            )
            for op in projection.operations.values()
        ],
    )
    await conn.copy_records_to_table(
        "fills",
        columns=[
            "operation_id",
            "trade_id",
            "event_id",
            "price",
            "quantity",
            "fee",
            "fee_asset",
            "fee_quote",
            "filled_at",
        ],
        records=[
            (
                f.operation_id,
                f.fill.trade_id,
                f.event_id,
                f.fill.price,
                f.fill.quantity,
                f.fill.fee,
                f.fill.fee_asset,
                f.fill.fee_quote,
                f.filled_at,
            )
            for f in projection.fills.values()
        ],
    )
    await conn.copy_records_to_table(
        "commissions",
        columns=[
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
        ],
        records=[
            (
                c.operation_id,
                c.user_id,
                c.plan.value,
                c.currency,
                c.rate,
                c.realized_pnl,
                c.amount,
                c.referrer_id,
                c.affiliate_rate,
                c.affiliate_amount,
                c.accrued_at,
            )
            for c in commissions.values()
        ],
    )
    await conn.copy_records_to_table(
        "referrer_changes",
        columns=["user_id", "effective_at", "event_id", "referrer_id"],
        records=[
            (c.user_id, c.effective_at, c.event_id, c.referrer_id)
            for c in projection.referrer_changes()
        ],
    )
    await conn.copy_records_to_table(
        "signals",
        columns=["signal_id", "event_id", "received_at", "payload"],
        records=[
            (s.signal_id, s.event_id, s.received_at, s.model_dump_json())
            for s in projection.signals.values()
        ],
    )
    await conn.copy_records_to_table(
        "decisions",
        columns=["decision_id", "signal_id", "event_id", "decided_at", "payload"],
        records=[
            (d.decision_id, d.signal_id, d.event_id, d.decided_at, d.model_dump_json())
            for d in projection.decisions.values()
        ],
    )
    await conn.copy_records_to_table(
        "processed_events", columns=["consumer", "event_id"], records=list(processed)
    )
