"""The executor's own tables (asyncpg): orders by client order id, and open positions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from marketbot.contracts import OrderRequested, Side
from marketbot.runtime.db import Conn

MIGRATIONS = Path(__file__).parent / "migrations"


class OrderState:
    SENDING = "SENDING"
    PLACED = "PLACED"
    FILLED = "FILLED"
    REJECTED = "REJECTED"

    FINAL = frozenset({FILLED, REJECTED})


@dataclass(frozen=True, slots=True)
class OrderRow:
    client_order_id: str
    request: OrderRequested
    state: str
    attempts: int
    settle_until: datetime | None
    quantity: Decimal | None
    quote_amount: Decimal | None
    reference_price: Decimal | None
    stop_loss_price: Decimal | None
    take_profit_price: Decimal | None
    closes_position: str | None
    exchange_order_id: str | None
    unknown_since: datetime | None

    @classmethod
    def from_record(cls, r: Any, *, request: OrderRequested | None = None) -> OrderRow:
        return cls(
            client_order_id=r["client_order_id"],
            request=request or OrderRequested.model_validate_json(r["request"]),
            state=r["state"],
            attempts=r["attempts"],
            settle_until=r["settle_until"],
            quantity=r["quantity"],
            quote_amount=r["quote_amount"],
            reference_price=r["reference_price"],
            stop_loss_price=r["stop_loss_price"],
            take_profit_price=r["take_profit_price"],
            closes_position=r["closes_position"],
            exchange_order_id=r["exchange_order_id"],
            unknown_since=r["unknown_since"],
        )

    @property
    def maybe_sent(self) -> bool:
        return self.attempts > 0


@dataclass(frozen=True, slots=True)
class ExitRef:
    kind: str | None
    trigger_price: Decimal | None
    exchange_order_id: str | None
    client_order_id: str | None

    def as_json(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "trigger_price": None if self.trigger_price is None else str(self.trigger_price),
            "exchange_order_id": self.exchange_order_id,
            "client_order_id": self.client_order_id,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExitRef:
        trigger = d.get("trigger_price")
        return cls(
            kind=d.get("kind"),
            trigger_price=Decimal(trigger) if trigger is not None else None,
            exchange_order_id=d.get("exchange_order_id"),
            client_order_id=d.get("client_order_id"),
        )


@dataclass(frozen=True, slots=True)
class PositionRow:
    entry_client_order_id: str
    request: OrderRequested
    user_id: str
    symbol: str
    side: Side
    base_asset: str
    quote_asset: str
    quantity: Decimal
    filled_quantity: Decimal
    entry_price: Decimal
    entry_fees_quote: Decimal
    entry_order_id: str
    stop_loss_price: Decimal | None
    take_profit_price: Decimal | None
    exits: tuple[ExitRef, ...]
    opened_at: datetime
    status: str
    check_interval_s: float

    @classmethod
    def from_record(cls, r: Any) -> PositionRow:
        return cls(
            entry_client_order_id=r["entry_client_order_id"],
            request=OrderRequested.model_validate_json(r["request"]),
            user_id=r["user_id"],
            symbol=r["symbol"],
            side=Side(r["side"]),
            base_asset=r["base_asset"],
            quote_asset=r["quote_asset"],
            quantity=r["quantity"],
            filled_quantity=r["filled_quantity"],
            entry_price=r["entry_price"],
            entry_fees_quote=r["entry_fees_quote"],
            entry_order_id=r["entry_order_id"],
            stop_loss_price=r["stop_loss_price"],
            take_profit_price=r["take_profit_price"],
            exits=tuple(ExitRef.from_json(d) for d in json.loads(r["exits"])),
            opened_at=r["opened_at"],
            status=r["status"],
            check_interval_s=r["check_interval_s"],
        )


@dataclass(frozen=True, slots=True)
class NewPosition:
    entry_client_order_id: str
    request: OrderRequested
    base_asset: str
    quote_asset: str
    quantity: Decimal
    filled_quantity: Decimal
    entry_price: Decimal
    entry_fees_quote: Decimal
    entry_order_id: str
    stop_loss_price: Decimal | None
    take_profit_price: Decimal | None
    exits: tuple[ExitRef, ...]
    exit_error: str | None


class Repository:
    """Plain functions over one connection; callers own the transactions."""

    # orders -----------------------------------------------------------------------------
    @staticmethod
    async def get_order(conn: Conn, client_order_id: str) -> OrderRow | None:
        record = await conn.fetchrow(
            "SELECT * FROM orders WHERE client_order_id = $1", client_order_id
        )
        return OrderRow.from_record(record) if record is not None else None

    @staticmethod
    async def insert_order(
        conn: Conn,
        request: OrderRequested,
        *,
        state: str,
        now: datetime,
        quantity: Decimal | None = None,
        quote_amount: Decimal | None = None,
        reference_price: Decimal | None = None,
        stop_loss_price: Decimal | None = None,
        take_profit_price: Decimal | None = None,
        closes_position: str | None = None,
    ) -> bool:
        """Record the order before anything is sent; ``False`` if the id already exists."""
        inserted = await conn.fetchval(
            "INSERT INTO orders (client_order_id, request_id, user_id, symbol, side, plan, "
            "request, state, quantity, quote_amount, reference_price, stop_loss_price, "
            "take_profit_price, closes_position, created_at, updated_at) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) "
            "ON CONFLICT (client_order_id) DO NOTHING RETURNING true",
            request.client_order_id,
            request.request_id,
            request.user_id,
            request.symbol,
            request.side.value,
            request.plan.value,
            request.model_dump_json(),
            state,
            quantity,
            quote_amount,
            reference_price,
            stop_loss_price,
            take_profit_price,
            closes_position,
            now,
        )
        return bool(inserted)

    @staticmethod
    async def insert_sending(
        conn: Conn,
        request: OrderRequested,
        *,
        now: datetime,
        owner: str,
        lease_s: float,
        quantity: Decimal,
        quote_amount: Decimal,
        reference_price: Decimal,
        stop_loss_price: Decimal | None = None,
        take_profit_price: Decimal | None = None,
        closes_position: str | None = None,
    ) -> OrderRow | None:
        """Record a SENDING order, leased to ``owner``, in one statement (one round trip).

        ``None`` if the id already exists (another delivery got there first)."""
        record = await conn.fetchrow(
            "INSERT INTO orders (client_order_id, request_id, user_id, symbol, side, plan, "
            "request, state, quantity, quote_amount, reference_price, stop_loss_price, "
            "take_profit_price, closes_position, created_at, updated_at, lease_owner, "
            "lease_until) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16, $17) "
            "ON CONFLICT (client_order_id) DO NOTHING RETURNING *",
            request.client_order_id,
            request.request_id,
            request.user_id,
            request.symbol,
            request.side.value,
            request.plan.value,
            request.model_dump_json(),
            OrderState.SENDING,
            quantity,
            quote_amount,
            reference_price,
            stop_loss_price,
            take_profit_price,
            closes_position,
            now,
            owner,
            now + timedelta(seconds=lease_s),
        )
        if record is None:
            return None
        return OrderRow.from_record(record, request=request)

    @staticmethod
    async def mark_attempt(
        conn: Conn, client_order_id: str, now: datetime, settle_s: float
    ) -> None:
        """Committed before each send: from now on the order may exist on the exchange."""
        await conn.execute(
            "UPDATE orders SET attempts = attempts + 1, last_attempt_at = $2, "
            "settle_until = $3, updated_at = $2 WHERE client_order_id = $1",
            client_order_id,
            now,
            now + timedelta(seconds=settle_s),
        )

    @staticmethod
    async def set_settle(conn: Conn, client_order_id: str, until: datetime) -> None:
        await conn.execute(
            "UPDATE orders SET settle_until = $2 WHERE client_order_id = $1",
            client_order_id,
            until,
        )

    @staticmethod
    async def mark_unknown(conn: Conn, client_order_id: str, now: datetime) -> bool:
        """``True`` the first time this order's outcome becomes unknown."""
        first = await conn.fetchval(
            "UPDATE orders SET unknown_since = $2, updated_at = $2 "
            "WHERE client_order_id = $1 AND unknown_since IS NULL RETURNING true",
            client_order_id,
            now,
        )
        return bool(first)

    @staticmethod
    async def set_state(
        conn: Conn,
        client_order_id: str,
        state: str,
        now: datetime,
        *,
        exchange_order_id: str | None = None,
        quantity: Decimal | None = None,
    ) -> None:
        await conn.execute(
            "UPDATE orders SET state = $2, updated_at = $3, unknown_since = NULL, "
            "exchange_order_id = COALESCE($4, exchange_order_id), "
            "quantity = COALESCE($5, quantity), lease_owner = NULL, lease_until = NULL "
            "WHERE client_order_id = $1",
            client_order_id,
            state,
            now,
            exchange_order_id,
            quantity,
        )

    @staticmethod
    async def claim(
        conn: Conn, client_order_id: str, owner: str, now: datetime, ttl_s: float
    ) -> bool:
        """Take (or renew) the lease on an order; ``False`` while another worker holds it."""
        claimed = await conn.fetchval(
            "UPDATE orders SET lease_owner = $2, lease_until = $3 WHERE client_order_id = $1 "
            "AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $4) RETURNING true",
            client_order_id,
            owner,
            now + timedelta(seconds=ttl_s),
            now,
        )
        return bool(claimed)

    @staticmethod
    async def release(conn: Conn, client_order_id: str, owner: str) -> None:
        await conn.execute(
            "UPDATE orders SET lease_owner = NULL, lease_until = NULL "
            "WHERE client_order_id = $1 AND lease_owner = $2",
            client_order_id,
            owner,
        )

    @staticmethod
    async def placed_orders(conn: Conn, limit: int) -> list[OrderRow]:
        records = await conn.fetch(
            "SELECT * FROM orders WHERE state = 'PLACED' ORDER BY updated_at LIMIT $1", limit
        )
        return [OrderRow.from_record(r) for r in records]

    @staticmethod
    async def unknown_count(conn: Conn) -> int:
        count = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE unknown_since IS NOT NULL AND state = 'SENDING'"
        )
        return int(count or 0)

    # positions --------------------------------------------------------------------------
    @staticmethod
    async def open_position(
        conn: Conn, position: NewPosition, now: datetime, interval_s: float
    ) -> None:
        request = position.request
        await conn.execute(
            "INSERT INTO positions (entry_client_order_id, user_id, symbol, side, request, "
            "base_asset, quote_asset, quantity, filled_quantity, entry_price, entry_fees_quote, "
            "entry_order_id, stop_loss_price, take_profit_price, exits, exit_error, opened_at, "
            "status, check_interval_s, next_check_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
            "$9, $10, $11, $12, $13, $14, $15, $16, $17, 'OPEN', $18, $19) "
            "ON CONFLICT (entry_client_order_id) DO NOTHING",
            position.entry_client_order_id,
            request.user_id,
            request.symbol,
            request.side.value,
            request.model_dump_json(),
            position.base_asset,
            position.quote_asset,
            position.quantity,
            position.filled_quantity,
            position.entry_price,
            position.entry_fees_quote,
            position.entry_order_id,
            position.stop_loss_price,
            position.take_profit_price,
            json.dumps([e.as_json() for e in position.exits]),
            position.exit_error,
            now,
            interval_s,
            now + timedelta(seconds=interval_s),
        )

    @staticmethod
    async def get_position(conn: Conn, entry_client_order_id: str) -> PositionRow | None:
        record = await conn.fetchrow(
            "SELECT * FROM positions WHERE entry_client_order_id = $1", entry_client_order_id
        )
        return PositionRow.from_record(record) if record is not None else None

    @staticmethod
    async def find_open_position(conn: Conn, user_id: str, symbol: str) -> PositionRow | None:
        record = await conn.fetchrow(
            "SELECT * FROM positions WHERE user_id = $1 AND symbol = $2 AND status = 'OPEN' "
            "ORDER BY opened_at LIMIT 1",
            user_id,
            symbol,
        )
        return PositionRow.from_record(record) if record is not None else None

    @staticmethod
    async def due_positions(conn: Conn, now: datetime, limit: int) -> list[PositionRow]:
        records = await conn.fetch(
            "SELECT * FROM positions WHERE status = 'OPEN' AND next_check_at <= $1 "
            "ORDER BY next_check_at LIMIT $2",
            now,
            limit,
        )
        return [PositionRow.from_record(r) for r in records]

    @staticmethod
    async def reschedule(
        conn: Conn, entry_client_order_id: str, interval_s: float, now: datetime
    ) -> None:
        await conn.execute(
            "UPDATE positions SET check_interval_s = $2, next_check_at = $3 "
            "WHERE entry_client_order_id = $1 AND status = 'OPEN'",
            entry_client_order_id,
            interval_s,
            now + timedelta(seconds=interval_s),
        )

    @staticmethod
    async def close_position(
        conn: Conn,
        entry_client_order_id: str,
        *,
        reason: str,
        exit_order_id: str | None,
        exit_price: Decimal,
        realized_pnl: Decimal,
        now: datetime,
    ) -> bool:
        """``True`` for the one caller that closes it (tracker and close signal may race)."""
        closed = await conn.fetchval(
            "UPDATE positions SET status = 'CLOSED', closed_at = $2, close_reason = $3, "
            "exit_order_id = $4, exit_price = $5, realized_pnl = $6 "
            "WHERE entry_client_order_id = $1 AND status = 'OPEN' RETURNING true",
            entry_client_order_id,
            now,
            reason,
            exit_order_id,
            exit_price,
            realized_pnl,
        )
        return bool(closed)

    @staticmethod
    async def open_position_count(conn: Conn) -> int:
        count = await conn.fetchval("SELECT count(*) FROM positions WHERE status = 'OPEN'")
        return int(count or 0)
