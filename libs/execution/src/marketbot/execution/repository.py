"""The executor's own tables (asyncpg): orders by client order id, and open positions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from marketbot.contracts import OrderRequested, Side
from marketbot.exchanges.venue import ExitKind, ExitLeg, ProtectionSpec
from marketbot.execution.domain.lifecycle import Phase
from marketbot.execution.domain.protection import Sold
from marketbot.runtime.db import Conn

MIGRATIONS = Path(__file__).parent / "migrations"


class Purpose:
    ENTRY = "ENTRY"
    """An OrderRequested BUY: a bounded IOC limit entry."""
    CLOSE = "CLOSE"
    """An OrderRequested SELL: closes every open position of the user in the symbol."""
    EXIT = "EXIT"
    """A watched leg fired by the tracker, under the leg's own client id (no request)."""


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
    purpose: str = "ENTRY"
    closes_positions: tuple[str, ...] = ()
    limit_price: Decimal | None = None
    max_slippage_percent: Decimal | None = None
    exit_kind: str | None = None

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
            purpose=r["purpose"],
            closes_positions=tuple(r["closes_positions"] or ()),
            limit_price=r["limit_price"],
            max_slippage_percent=r["max_slippage_percent"],
            exit_kind=r["exit_kind"],
        )

    @property
    def maybe_sent(self) -> bool:
        return self.attempts > 0


def legs_to_json(legs: tuple[ExitLeg, ...]) -> str:
    return json.dumps(
        [
            {
                "kind": leg.kind.value,
                "trigger_price": str(leg.trigger_price),
                "client_order_id": leg.client_order_id,
                "native": leg.native,
                "exchange_order_id": leg.exchange_order_id,
            }
            for leg in legs
        ]
    )


def legs_from_json(text: str) -> tuple[ExitLeg, ...]:
    return tuple(
        ExitLeg(
            kind=ExitKind(d["kind"]),
            trigger_price=Decimal(d["trigger_price"]),
            client_order_id=d["client_order_id"],
            native=bool(d.get("native", True)),
            exchange_order_id=d.get("exchange_order_id"),
        )
        for d in json.loads(text)
        if d.get("client_order_id")
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
    legs: tuple[ExitLeg, ...]
    opened_at: datetime
    status: str
    check_interval_s: float
    phase: Phase
    generation: int
    protect_attempts: int
    protect_settle_until: datetime | None
    fees_estimated: bool
    closing_order: str | None
    sold: Sold = field(default_factory=Sold)
    """The parts sold so far (``quantity`` is what is still open)."""

    @property
    def exit_side(self) -> Side:
        return Side.SELL if self.side is Side.BUY else Side.BUY

    def spec(self, generation: int | None = None) -> ProtectionSpec:
        """What protects this position on the exchange (its legs' ids derive from it)."""
        return ProtectionSpec(
            symbol=self.symbol,
            exit_side=self.exit_side,
            quantity=self.quantity,
            take_profit=self.take_profit_price,
            stop_loss=self.stop_loss_price,
            client_id=self.entry_client_order_id,
            generation=self.generation if generation is None else generation,
        )

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
            legs=legs_from_json(r["exits"]),
            opened_at=r["opened_at"],
            status=r["status"],
            check_interval_s=r["check_interval_s"],
            phase=Phase(r["phase"]),
            generation=r["generation"],
            protect_attempts=r["protect_attempts"],
            protect_settle_until=r["protect_settle_until"],
            fees_estimated=r["fees_estimated"],
            closing_order=r["closing_order"],
            sold=Sold(
                quantity=r["sold_quantity"],
                quote=r["sold_quote"],
                fees_quote=r["sold_fees_quote"],
                pnl=r["sold_pnl"],
            ),
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
    opened_at: datetime
    fees_estimated: bool


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry order about to be recorded before it is sent (``insert_entries_sent``)."""

    request: OrderRequested
    quantity: Decimal
    quote_amount: Decimal
    reference_price: Decimal
    stop_loss_price: Decimal | None
    take_profit_price: Decimal | None
    limit_price: Decimal
    max_slippage_percent: Decimal


@dataclass(frozen=True, slots=True)
class EntryFill:
    """An entry's fill to record (``Repository.fill_entries``): its row finished FILLED, its
    position stored."""

    position: NewPosition
    now: datetime
    interval_s: float
    phase: Phase
    exchange_order_id: str | None


def _entry_fill_columns(fills: Sequence[EntryFill]) -> list[list[Any]]:
    rows = []
    for f in fills:
        p, r = f.position, f.position.request
        rows.append(
            (
                p.entry_client_order_id,
                r.user_id,
                r.symbol,
                r.side.value,
                r.model_dump_json(),
                p.base_asset,
                p.quote_asset,
                p.quantity,
                p.filled_quantity,
                p.entry_price,
                p.entry_fees_quote,
                p.entry_order_id,
                p.stop_loss_price,
                p.take_profit_price,
                p.opened_at,
                f.interval_s,
                f.now,
                p.fees_estimated,
                f.phase.value,
                f.exchange_order_id,
            )
        )
    return [list(column) for column in zip(*rows, strict=True)]


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
    async def get_orders(conn: Conn, client_order_ids: Sequence[str]) -> dict[str, OrderRow]:
        """The rows of these client order ids that exist, in one statement."""
        records = await conn.fetch(
            "SELECT * FROM orders WHERE client_order_id = ANY($1::text[])",
            list(client_order_ids),
        )
        return {r["client_order_id"]: OrderRow.from_record(r) for r in records}

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
        purpose: str = "ENTRY",
        closes_positions: tuple[str, ...] = (),
        limit_price: Decimal | None = None,
        max_slippage_percent: Decimal | None = None,
        client_order_id: str | None = None,
        side: Side | None = None,
        exit_kind: str | None = None,
        closing: bool = False,
    ) -> OrderRow | None:
        """Record a SENDING order, leased to ``owner``, in one statement (one round trip).

        ``client_order_id`` / ``side`` override the request's for an EXIT order (a watched
        leg, recorded under the leg's own id). ``closing``: the same statement gives the
        open positions it closes to the new order (``set_closing``), only if it was
        inserted. ``None`` if the id already exists (another delivery got there first)."""
        sql = (
            "INSERT INTO orders (client_order_id, request_id, user_id, symbol, side, plan, "
            "request, state, quantity, quote_amount, reference_price, stop_loss_price, "
            "take_profit_price, closes_position, created_at, updated_at, lease_owner, "
            "lease_until, purpose, closes_positions, limit_price, max_slippage_percent, "
            "exit_kind) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16, $17, "
            "$18, $19, $20, $21, $22) "
            "ON CONFLICT (client_order_id) DO NOTHING RETURNING *"
        )
        if closing:
            sql = (
                f"WITH o AS ({sql}), c AS (UPDATE positions p SET closing_order = "
                "o.client_order_id FROM o WHERE p.entry_client_order_id = "
                "ANY(o.closes_positions) AND p.status = 'OPEN' AND (p.closing_order IS NULL "
                "OR p.closing_order = o.client_order_id)) SELECT * FROM o"
            )
        record = await conn.fetchrow(
            sql,
            client_order_id or request.client_order_id,
            request.request_id,
            request.user_id,
            request.symbol,
            (side or request.side).value,
            request.plan.value,
            request.model_dump_json(),
            OrderState.SENDING,
            quantity,
            quote_amount,
            reference_price,
            stop_loss_price,
            take_profit_price,
            closes_positions[0] if closes_positions else None,
            now,
            owner,
            now + timedelta(seconds=lease_s),
            purpose,
            list(closes_positions) or None,
            limit_price,
            max_slippage_percent,
            exit_kind,
        )
        if record is None:
            return None
        return OrderRow.from_record(record, request=request)

    @staticmethod
    async def insert_entries_sent(
        conn: Conn,
        entries: Sequence[NewEntry],
        *,
        now: datetime,
        owner: str,
        lease_s: float,
        settle_s: float,
    ) -> list[OrderRow | None]:
        """Record entries in state SENDING, each leased to ``owner`` *with its first
        attempt marked* (``mark_attempt``), all in one statement: one round trip for a
        whole tick of entries, each row committed (the statement is its own transaction)
        before its order is sent. Per entry, in order: its row, or ``None`` if the id
        already exists (another delivery got there first)."""
        if not entries:
            return []
        records = await conn.fetch(
            "INSERT INTO orders (client_order_id, request_id, user_id, symbol, side, plan, "
            "request, state, quantity, quote_amount, reference_price, stop_loss_price, "
            "take_profit_price, limit_price, max_slippage_percent, created_at, updated_at, "
            "lease_owner, lease_until, purpose, attempts, last_attempt_at, settle_until) "
            "SELECT c, r, u, s, d, p, q::jsonb, $15, qty, qa, rp, sl, tp, lp, ms, $16, $16, "
            "$17, $18, 'ENTRY', 1, $16, $19 FROM unnest($1::text[], $2::uuid[], $3::text[], "
            "$4::text[], $5::text[], $6::text[], $7::text[], $8::numeric[], $9::numeric[], "
            "$10::numeric[], $11::numeric[], $12::numeric[], $13::numeric[], $14::numeric[]) "
            "AS x(c, r, u, s, d, p, q, qty, qa, rp, sl, tp, lp, ms) "
            "ON CONFLICT (client_order_id) DO NOTHING RETURNING *",
            [e.request.client_order_id for e in entries],
            [e.request.request_id for e in entries],
            [e.request.user_id for e in entries],
            [e.request.symbol for e in entries],
            [e.request.side.value for e in entries],
            [e.request.plan.value for e in entries],
            [e.request.model_dump_json() for e in entries],
            [e.quantity for e in entries],
            [e.quote_amount for e in entries],
            [e.reference_price for e in entries],
            [e.stop_loss_price for e in entries],
            [e.take_profit_price for e in entries],
            [e.limit_price for e in entries],
            [e.max_slippage_percent for e in entries],
            OrderState.SENDING,
            now,
            owner,
            now + timedelta(seconds=lease_s),
            now + timedelta(seconds=settle_s),
        )
        by_id = {r["client_order_id"]: r for r in records}
        rows: list[OrderRow | None] = []
        for entry in entries:
            # an id twice in one statement is inserted once: only its first entry owns it
            record = by_id.pop(entry.request.client_order_id, None)
            rows.append(
                None if record is None else OrderRow.from_record(record, request=entry.request)
            )
        return rows

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
    async def undo_attempt(
        conn: Conn, client_order_id: str, attempts: int, settle_until: datetime | None
    ) -> None:
        """The attempt just marked provably never executed: back to the attempts and settle
        time from before it."""
        await conn.execute(
            "UPDATE orders SET attempts = $2, settle_until = $3 "
            "WHERE client_order_id = $1 AND attempts = $2 + 1",
            client_order_id,
            attempts,
            settle_until,
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
    async def hand_off(
        conn: Conn, client_order_id: str, now: datetime, settle_until: datetime
    ) -> bool | None:
        """Give a maybe-sent order to the reconciler: unknown since now (kept if earlier),
        'not found' conclusive from ``settle_until`` on, due for a lookup now, lease
        released. ``True`` the first time its outcome becomes unknown, ``False`` if it
        already was, ``None`` if no order may have been sent under this id."""
        first = await conn.fetchval(
            "WITH before AS (SELECT unknown_since FROM orders WHERE client_order_id = $1 "
            "AND state = 'SENDING' AND attempts > 0 FOR UPDATE) "
            "UPDATE orders o SET unknown_since = COALESCE(o.unknown_since, $2), "
            "settle_until = GREATEST(COALESCE(o.settle_until, $3), $3), reconcile_at = $2, "
            "lease_owner = NULL, lease_until = NULL, updated_at = $2 FROM before "
            "WHERE o.client_order_id = $1 RETURNING before.unknown_since IS NULL",
            client_order_id,
            now,
            settle_until,
        )
        return None if first is None else bool(first)

    @staticmethod
    async def unknown_due(conn: Conn, now: datetime, owner: str, limit: int) -> list[OrderRow]:
        """Requests' orders whose outcome is unknown and due for a lookup, oldest unknown
        first, that no other worker holds (exit orders are the tracker's)."""
        records = await conn.fetch(
            "SELECT * FROM orders WHERE state = 'SENDING' AND unknown_since IS NOT NULL "
            "AND purpose <> 'EXIT' AND COALESCE(reconcile_at, unknown_since) <= $1 "
            "AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $1) "
            "ORDER BY unknown_since LIMIT $3",
            now,
            owner,
            limit,
        )
        return [OrderRow.from_record(r) for r in records]

    @staticmethod
    async def reconcile_later(conn: Conn, client_order_id: str, at: datetime, owner: str) -> None:
        """Not resolved yet: look again at ``at``; the lease is given up meanwhile."""
        await conn.execute(
            "UPDATE orders SET reconcile_at = $2, lease_owner = NULL, lease_until = NULL "
            "WHERE client_order_id = $1 AND state = 'SENDING' AND lease_owner = $3",
            client_order_id,
            at,
            owner,
        )

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
    async def finish(
        conn: Conn,
        client_order_id: str,
        state: str,
        now: datetime,
        *,
        exchange_order_id: str | None,
    ) -> bool:
        """Move a row to a final state once: ``False`` if it already was final (another
        worker recorded the same outcome first; nothing must be emitted twice)."""
        changed = await conn.fetchval(
            "UPDATE orders SET state = $2, updated_at = $3, unknown_since = NULL, "
            "exchange_order_id = COALESCE($4, exchange_order_id), lease_owner = NULL, "
            "lease_until = NULL WHERE client_order_id = $1 AND state NOT IN ('FILLED', "
            "'REJECTED') RETURNING true",
            client_order_id,
            state,
            now,
            exchange_order_id,
        )
        return bool(changed)

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
    async def set_placed_many(
        conn: Conn, placed: Sequence[tuple[str, datetime, str | None]]
    ) -> list[bool]:
        """``set_state(PLACED)`` for many rows, ``(client_order_id, now, exchange_order_id)``
        each (each id once), in one statement; ``True`` for each (as ``set_state``, it is
        unconditional)."""
        await conn.execute(
            "UPDATE orders o SET state = 'PLACED', updated_at = u.at, unknown_since = NULL, "
            "exchange_order_id = COALESCE(u.eoid, o.exchange_order_id), lease_owner = NULL, "
            "lease_until = NULL FROM unnest($1::text[], $2::timestamptz[], $3::text[]) "
            "AS u(cid, at, eoid) WHERE o.client_order_id = u.cid",
            [p[0] for p in placed],
            [p[1] for p in placed],
            [p[2] for p in placed],
        )
        return [True] * len(placed)

    @staticmethod
    async def fill_entries(conn: Conn, fills: Sequence[EntryFill]) -> list[bool]:
        """``fill_entry`` for many entries (each id once), in one statement: each row
        finished FILLED and its position stored only if this finished it."""
        done = await conn.fetch(
            "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
            "$5::text[], $6::text[], $7::text[], $8::numeric[], $9::numeric[], $10::numeric[], "
            "$11::numeric[], $12::text[], $13::numeric[], $14::numeric[], $15::timestamptz[], "
            "$16::float8[], $17::timestamptz[], $18::bool[], $19::text[], $20::text[]) AS u("
            "cid, user_id, symbol, side, request, base_asset, quote_asset, quantity, "
            "filled_quantity, entry_price, entry_fees_quote, entry_order_id, stop_loss_price, "
            "take_profit_price, opened_at, interval_s, at, fees_estimated, phase, eoid)), "
            "done AS (UPDATE orders o SET state = 'FILLED', updated_at = u.at, "
            "unknown_since = NULL, exchange_order_id = COALESCE(u.eoid, o.exchange_order_id), "
            "lease_owner = NULL, lease_until = NULL FROM u WHERE o.client_order_id = u.cid "
            "AND o.state NOT IN ('FILLED', 'REJECTED') RETURNING o.client_order_id), "
            "opened AS (INSERT INTO positions (entry_client_order_id, user_id, symbol, side, "
            "request, base_asset, quote_asset, quantity, filled_quantity, entry_price, "
            "entry_fees_quote, entry_order_id, stop_loss_price, take_profit_price, exits, "
            "opened_at, status, check_interval_s, next_check_at, phase, fees_estimated) "
            "SELECT u.cid, u.user_id, u.symbol, u.side, u.request::jsonb, u.base_asset, "
            "u.quote_asset, u.quantity, u.filled_quantity, u.entry_price, u.entry_fees_quote, "
            "u.entry_order_id, u.stop_loss_price, u.take_profit_price, '[]', u.opened_at, "
            "'OPEN', u.interval_s, u.at, u.phase, u.fees_estimated FROM u "
            "JOIN done ON done.client_order_id = u.cid "
            "ON CONFLICT (entry_client_order_id) DO NOTHING) "
            "SELECT client_order_id FROM done",
            *_entry_fill_columns(fills),
        )
        finished = {r["client_order_id"] for r in done}
        return [f.position.entry_client_order_id in finished for f in fills]

    @staticmethod
    async def mark_protect_attempt(
        conn: Conn, entry_client_order_id: str, now: datetime, settle_s: float
    ) -> None:
        """Committed before each protect call: from now on legs may exist on the exchange."""
        await conn.execute(
            "UPDATE positions SET protect_attempts = protect_attempts + 1, "
            "protect_settle_until = $2 WHERE entry_client_order_id = $1",
            entry_client_order_id,
            now + timedelta(seconds=settle_s),
        )

    @staticmethod
    async def set_protection(
        conn: Conn,
        entry_client_order_id: str,
        *,
        phase: Phase,
        legs: tuple[ExitLeg, ...],
        generation: int,
        error: str | None,
    ) -> None:
        await conn.execute(
            "UPDATE positions SET phase = $2, exits = $3, generation = $4, protect_error = $5, "
            "protect_attempts = CASE WHEN generation = $4 THEN protect_attempts ELSE 0 END "
            "WHERE entry_client_order_id = $1 AND status = 'OPEN'",
            entry_client_order_id,
            phase.value,
            legs_to_json(legs),
            generation,
            error,
        )

    @staticmethod
    async def set_closing(conn: Conn, entry_client_order_ids: list[str], order_id: str) -> None:
        """Give the open positions to one close order; a position another order already
        owns stays that order's (one position is sold by one order)."""
        await conn.execute(
            "UPDATE positions SET closing_order = $2 "
            "WHERE entry_client_order_id = ANY($1::text[]) AND status = 'OPEN' "
            "AND (closing_order IS NULL OR closing_order = $2)",
            entry_client_order_ids,
            order_id,
        )

    @staticmethod
    async def clear_closing(conn: Conn, entry_client_order_ids: list[str], order_id: str) -> None:
        await conn.execute(
            "UPDATE positions SET closing_order = NULL "
            "WHERE entry_client_order_id = ANY($1::text[]) AND closing_order = $2",
            entry_client_order_ids,
            order_id,
        )

    @staticmethod
    async def unprotected_count(conn: Conn) -> int:
        count = await conn.fetchval(
            "SELECT count(*) FROM positions WHERE status = 'OPEN' AND phase = 'UNPROTECTED'"
        )
        return int(count or 0)

    @staticmethod
    async def get_position(conn: Conn, entry_client_order_id: str) -> PositionRow | None:
        record = await conn.fetchrow(
            "SELECT * FROM positions WHERE entry_client_order_id = $1", entry_client_order_id
        )
        return PositionRow.from_record(record) if record is not None else None

    @staticmethod
    async def open_positions_of(conn: Conn, user_id: str, symbol: str) -> list[PositionRow]:
        """The user's open positions in ``symbol``, oldest first (the allocation order)."""
        records = await conn.fetch(
            "SELECT * FROM positions WHERE user_id = $1 AND symbol = $2 AND status = 'OPEN' "
            "ORDER BY opened_at, entry_client_order_id",
            user_id,
            symbol,
        )
        return [PositionRow.from_record(r) for r in records]

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
    async def reschedule_many(
        conn: Conn, entry_client_order_ids: Sequence[str], interval_s: float, now: datetime
    ) -> None:
        """``reschedule`` for many positions, in one statement."""
        await conn.execute(
            "UPDATE positions SET check_interval_s = $2, next_check_at = $3 "
            "WHERE entry_client_order_id = ANY($1::text[]) AND status = 'OPEN'",
            list(entry_client_order_ids),
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
        exit_client_order_id: str | None,
        exit_price: Decimal,
        realized_pnl: Decimal,
        closed_at: datetime,
    ) -> bool:
        """``True`` for the one caller that closes it (tracker and close signal may race)."""
        closed = await conn.fetchval(
            "UPDATE positions SET status = 'CLOSED', phase = 'CLOSED', closed_at = $2, "
            "close_reason = $3, exit_order_id = $4, exit_price = $5, realized_pnl = $6, "
            "exit_client_order_id = $7 "
            "WHERE entry_client_order_id = $1 AND status = 'OPEN' RETURNING true",
            entry_client_order_id,
            closed_at,
            reason,
            exit_order_id,
            exit_price,
            realized_pnl,
            exit_client_order_id,
        )
        return bool(closed)

    @staticmethod
    async def reduce_position(
        conn: Conn,
        entry_client_order_id: str,
        *,
        generation: int,
        remaining: Decimal,
        remaining_entry_fees: Decimal,
        sold: Sold,
        now: datetime,
    ) -> bool:
        """Part of the position was sold: keep what is open, add the part to what was sold,
        and protect the rest anew (next generation: its legs are new orders for the new
        quantity; the old ones ended or were cancelled). ``True`` for the one caller that
        records this part (the generation read under the lock must still be current)."""
        reduced = await conn.fetchval(
            "UPDATE positions SET quantity = $3, entry_fees_quote = $4, sold_quantity = $5, "
            "sold_quote = $6, sold_fees_quote = $7, sold_pnl = $8, generation = generation + 1, "
            "phase = 'UNPROTECTED', exits = '[]', protect_attempts = 0, "
            "protect_settle_until = NULL, protect_error = NULL, closing_order = NULL, "
            "next_check_at = $9 "
            "WHERE entry_client_order_id = $1 AND status = 'OPEN' AND generation = $2 "
            "RETURNING true",
            entry_client_order_id,
            generation,
            remaining,
            remaining_entry_fees,
            sold.quantity,
            sold.quote,
            sold.fees_quote,
            sold.pnl,
            now,
        )
        return bool(reduced)

    @staticmethod
    async def open_position_count(conn: Conn) -> int:
        count = await conn.fetchval("SELECT count(*) FROM positions WHERE status = 'OPEN'")
        return int(count or 0)
