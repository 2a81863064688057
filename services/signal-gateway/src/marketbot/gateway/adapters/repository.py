"""The gateway's own tables (schema ``signal_gateway``): users and webhook sources."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from marketbot.contracts import Exchange, Plan, RiskLevel, SubscriptionStatus, TradingMode
from marketbot.gateway.domain.accounts import User
from marketbot.runtime.db import Conn

_USER_COLUMNS = (
    "user_id, email, display_name, plan, subscription_status, expires_at, trading_mode, "
    "preferred_exchange, risk_level, allocation, allocation_currency, referrer_id, "
    "created_at, updated_at"
)


class DuplicateError(Exception):
    """A unique value (user id, email, source name) is already taken."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def _user(row: Any) -> User:
    return User(
        user_id=row["user_id"],
        email=row["email"],
        display_name=row["display_name"],
        plan=Plan(row["plan"]),
        subscription_status=SubscriptionStatus(row["subscription_status"]),
        expires_at=row["expires_at"],
        trading_mode=TradingMode(row["trading_mode"]),
        preferred_exchange=Exchange(row["preferred_exchange"]),
        risk_level=RiskLevel(row["risk_level"]),
        allocation=row["allocation"],
        allocation_currency=row["allocation_currency"],
        referrer_id=row["referrer_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@dataclass(frozen=True)
class SourceRow:
    name: str
    token_hash: str
    created_at: datetime


class Repository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- users ---------------------------------------------------------------------------

    @staticmethod
    async def insert_user(conn: Conn, user: User, token_hash: str) -> None:
        try:
            await conn.execute(
                f"INSERT INTO users ({_USER_COLUMNS}, token_hash) VALUES "
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                *_user_values(user),
                token_hash,
            )
        except asyncpg.UniqueViolationError as exc:
            field = "email" if "email" in (exc.constraint_name or "") else "user_id"
            raise DuplicateError(field) from exc

    @staticmethod
    async def update_user(conn: Conn, user: User) -> None:
        await conn.execute(
            "UPDATE users SET email = $2, display_name = $3, plan = $4, subscription_status = $5, "
            "expires_at = $6, trading_mode = $7, preferred_exchange = $8, risk_level = $9, "
            "allocation = $10, allocation_currency = $11, referrer_id = $12, updated_at = $13 "
            "WHERE user_id = $1",
            *_user_values(user)[:12],
            user.updated_at,
        )

    @staticmethod
    async def lock_user(conn: Conn, user_id: str) -> User | None:
        row = await conn.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = $1 FOR UPDATE", user_id
        )
        return _user(row) if row else None

    @staticmethod
    async def set_token_hash(conn: Conn, user_id: str, token_hash: str) -> bool:
        status = await conn.execute(
            "UPDATE users SET token_hash = $2 WHERE user_id = $1", user_id, token_hash
        )
        return bool(status.endswith(" 1"))

    async def get_user(self, user_id: str) -> User | None:
        row = await self.pool.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = $1", user_id
        )
        return _user(row) if row else None

    async def user_by_token_hash(self, token_hash: str) -> tuple[User, str] | None:
        row = await self.pool.fetchrow(
            f"SELECT {_USER_COLUMNS}, token_hash FROM users WHERE token_hash = $1", token_hash
        )
        return (_user(row), row["token_hash"]) if row else None

    async def list_users(self, limit: int, offset: int) -> tuple[list[User], int]:
        rows = await self.pool.fetch(
            f"SELECT {_USER_COLUMNS} FROM users "
            "ORDER BY created_at DESC, user_id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
        total = await self.pool.fetchval("SELECT count(*) FROM users")
        return [_user(r) for r in rows], int(total)

    # --- webhook sources -------------------------------------------------------------------

    async def create_source(self, name: str, token_hash: str, now: datetime) -> None:
        try:
            await self.pool.execute(
                "INSERT INTO webhook_sources (name, token_hash, created_at) VALUES ($1, $2, $3)",
                name,
                token_hash,
                now,
            )
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateError("name") from exc

    async def get_source(self, name: str) -> SourceRow | None:
        row = await self.pool.fetchrow(
            "SELECT name, token_hash, created_at FROM webhook_sources WHERE name = $1", name
        )
        return SourceRow(row["name"], row["token_hash"], row["created_at"]) if row else None

    async def list_sources(self) -> list[SourceRow]:
        rows = await self.pool.fetch(
            "SELECT name, token_hash, created_at FROM webhook_sources ORDER BY name"
        )
        return [SourceRow(r["name"], r["token_hash"], r["created_at"]) for r in rows]

    async def delete_source(self, name: str) -> bool:
        status = await self.pool.execute("DELETE FROM webhook_sources WHERE name = $1", name)
        return bool(status.endswith(" 1"))


def _user_values(user: User) -> tuple[Any, ...]:
    return (
        user.user_id,
        user.email,
        user.display_name,
        user.plan.value,
        user.subscription_status.value,
        user.expires_at,
        user.trading_mode.value,
        user.preferred_exchange.value,
        user.risk_level.value,
        user.allocation,
        user.allocation_currency,
        user.referrer_id,
        user.created_at,
        user.updated_at,
    )
