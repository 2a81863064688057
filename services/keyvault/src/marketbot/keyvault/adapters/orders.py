"""The order requests the vault bounds signatures by, and the balances it sizes them with.

``store_request`` is the handler of the vault's durable consumer on ORDER_REQUESTS (the
runtime's exactly-once consumer; only the decision service may publish there). The rest is
read and written by the sign handler.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from marketbot.contracts import Event, Exchange, OrderRequested, RiskLevel, Side, access
from marketbot.keyvault.domain.bounds import RequestRecord
from marketbot.runtime.db import Conn
from marketbot.runtime.loop import ConsumerSpec

ORDER_REQUESTS_CONSUMER = ConsumerSpec(
    access.KEYVAULT_ORDER_REQUESTS, "ORDER_REQUESTS", ("orders.requested.>",)
)

_COLUMNS = (
    "request_id, client_order_id, user_id, exchange, symbol, side, risk_level, "
    "reference_price, allocation, allocation_currency, signs, signed_quantity"
)


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{name.strip()}" for name in _COLUMNS.split(","))


async def store_request(event: Event, conn: Conn) -> Sequence[Event]:
    """Keep one ``OrderRequested`` (idempotent: a request id is stored once)."""
    if not isinstance(event, OrderRequested):
        return ()
    await conn.execute(
        "INSERT INTO order_requests (request_id, client_order_id, user_id, exchange, symbol, "
        "side, risk_level, reference_price, allocation, allocation_currency, requested_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        event.request_id,
        event.client_order_id,
        event.user_id,
        event.exchange.value,
        event.symbol,
        event.side.value,
        event.risk_level.value,
        event.reference_price,
        event.allocation,
        event.allocation_currency,
        event.requested_at,
    )
    return ()


def _record(row: Any) -> RequestRecord:
    return RequestRecord(
        request_id=row["request_id"],
        client_order_id=row["client_order_id"],
        user_id=row["user_id"],
        exchange=Exchange(row["exchange"]),
        symbol=row["symbol"],
        side=Side(row["side"]),
        risk_level=RiskLevel(row["risk_level"]),
        reference_price=row["reference_price"],
        allocation=row["allocation"],
        allocation_currency=row["allocation_currency"],
        signs=row["signs"],
        signed_quantity=row["signed_quantity"],
    )


class OrderStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def request(
        self, request_id: uuid.UUID, asset: str
    ) -> tuple[RequestRecord | None, tuple[Decimal, datetime] | None]:
        """The request and, in the same round trip, the stored balance of its user."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_prefixed('r')}, b.free, b.read_at FROM order_requests r "
                "LEFT JOIN balances b ON b.user_id = r.user_id AND b.exchange = r.exchange "
                "AND b.asset = $2 WHERE r.request_id = $1",
                request_id,
                asset,
            )
        if row is None:
            return None, None
        balance = (row["free"], row["read_at"]) if row["free"] is not None else None
        return _record(row), balance

    async def entries(self, client_order_ids: Sequence[str]) -> list[RequestRecord]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM order_requests WHERE client_order_id = ANY($1::text[])",
                list(client_order_ids),
            )
        return [_record(row) for row in rows]

    async def record_sign(
        self, request_id: uuid.UUID, quantity: Decimal, now: datetime, max_signs: int
    ) -> bool:
        """Count one more signature for the request, keeping the largest signed quantity;
        ``False`` if it has had its ``max_signs`` already (a concurrent sign got there)."""
        async with self.pool.acquire() as conn:
            done = await conn.fetchval(
                "UPDATE order_requests SET signs = signs + 1, signed_at = $3, "
                "signed_quantity = GREATEST(COALESCE(signed_quantity, 0), $2) "
                "WHERE request_id = $1 AND signs < $4 RETURNING true",
                request_id,
                quantity,
                now,
                max_signs,
            )
        return bool(done)

    async def put_balance(
        self, user_id: str, exchange: Exchange, asset: str, free: Decimal, now: datetime
    ) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO balances (user_id, exchange, asset, free, read_at) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, exchange, asset) "
                "DO UPDATE SET free = EXCLUDED.free, read_at = EXCLUDED.read_at",
                user_id,
                exchange.value,
                asset,
                free,
                now,
            )
