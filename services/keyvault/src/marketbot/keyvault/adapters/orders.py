"""The order requests the vault bounds signatures by, and the balances it sizes them with.

``store_request`` is the handler of the vault's durable consumer on ORDER_REQUESTS (the
runtime's exactly-once consumer; only the decision service may publish there), and
``store_requests`` the same for a fetched batch (one INSERT). The rest is read and written by
the sign handler: the concurrent signs of one moment (a batch of orders) read their requests
in one statement and count their signatures in one (``TickBatcher``), each request's count
still checked and raised atomically with its own row.
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
from marketbot.runtime.batching import TickBatcher
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


async def store_requests(events: Sequence[Event], conn: Conn) -> Sequence[Event]:
    """``store_request`` for a batch's new events, in one statement."""
    requests = [e for e in events if isinstance(e, OrderRequested)]
    if not requests:
        return ()
    await conn.execute(
        "INSERT INTO order_requests (request_id, client_order_id, user_id, exchange, symbol, "
        "side, risk_level, reference_price, allocation, allocation_currency, requested_at) "
        "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], "
        "$6::text[], $7::text[], $8::numeric[], $9::numeric[], $10::text[], "
        "$11::timestamptz[]) ON CONFLICT DO NOTHING",
        [e.request_id for e in requests],
        [e.client_order_id for e in requests],
        [e.user_id for e in requests],
        [e.exchange.value for e in requests],
        [e.symbol for e in requests],
        [e.side.value for e in requests],
        [e.risk_level.value for e in requests],
        [e.reference_price for e in requests],
        [e.allocation for e in requests],
        [e.allocation_currency for e in requests],
        [e.requested_at for e in requests],
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


Found = tuple[RequestRecord | None, tuple[Decimal, datetime] | None]
"""A request (``None``: not stored) and its user's stored balance (free, read at)."""


class OrderStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._reads: TickBatcher[tuple[uuid.UUID, str], Found] = TickBatcher(self._read)
        self._signs: TickBatcher[tuple[uuid.UUID, Decimal, datetime, int], bool] = TickBatcher(
            self._count_signs
        )

    async def request(self, request_id: uuid.UUID, asset: str) -> Found:
        """The request and, in the same round trip, the stored balance of its user (the
        requests asked for in one tick: one statement)."""
        return await self._reads.call((request_id, asset))

    async def _read(self, items: Sequence[tuple[uuid.UUID, str]]) -> list[Found]:
        found: dict[tuple[uuid.UUID, str], Found] = {}
        async with self.pool.acquire() as conn:
            for asset in dict.fromkeys(a for _, a in items):
                rows = await conn.fetch(
                    f"SELECT {_prefixed('r')}, b.free, b.read_at FROM order_requests r "
                    "LEFT JOIN balances b ON b.user_id = r.user_id AND b.exchange = r.exchange "
                    "AND b.asset = $2 WHERE r.request_id = ANY($1::uuid[])",
                    list({i for i, a in items if a == asset}),
                    asset,
                )
                for row in rows:
                    balance = (row["free"], row["read_at"]) if row["free"] is not None else None
                    found[(row["request_id"], asset)] = (_record(row), balance)
        return [found.get(item, (None, None)) for item in items]

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
        ``False`` if it has had its ``max_signs`` already (a concurrent sign got there).
        The signs of one tick are counted in one statement; each row's count is checked
        and raised atomically, as in a statement of its own."""
        return await self._signs.call((request_id, quantity, now, max_signs))

    async def _count_signs(
        self, items: Sequence[tuple[uuid.UUID, Decimal, datetime, int]]
    ) -> list[bool]:
        counted = [False] * len(items)
        rest = list(range(len(items)))
        async with self.pool.acquire() as conn:
            while rest:
                # A row joined twice in one UPDATE is updated once: two signs of one
                # request in a tick are counted by statements one after the other.
                first: dict[uuid.UUID, int] = {}
                later = []
                for index in rest:
                    if items[index][0] in first:
                        later.append(index)
                    else:
                        first[items[index][0]] = index
                chosen = list(first.values())
                done = await conn.fetch(
                    "UPDATE order_requests r SET signs = r.signs + 1, signed_at = u.at, "
                    "signed_quantity = GREATEST(COALESCE(r.signed_quantity, 0), u.quantity) "
                    "FROM unnest($1::uuid[], $2::numeric[], $3::timestamptz[], $4::int[]) "
                    "AS u(id, quantity, at, max_signs) "
                    "WHERE r.request_id = u.id AND r.signs < u.max_signs RETURNING r.request_id",
                    [items[i][0] for i in chosen],
                    [items[i][1] for i in chosen],
                    [items[i][2] for i in chosen],
                    [items[i][3] for i in chosen],
                )
                for row in done:
                    counted[first[row["request_id"]]] = True
                rest = later
        return counted

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
