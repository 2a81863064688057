"""Sign-in state in the gateway's schema: users' password hashes and their session tokens."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from marketbot.gateway.adapters.repository import _USER_COLUMNS, _user
from marketbot.gateway.domain.accounts import User


class SessionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def set_password_hash(self, user_id: str, password_hash: str) -> bool:
        status = await self.pool.execute(
            "UPDATE users SET password_hash = $2 WHERE user_id = $1", user_id, password_hash
        )
        return bool(status.endswith(" 1"))

    async def user_with_password(self, email: str) -> tuple[User, str | None] | None:
        row = await self.pool.fetchrow(
            f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE email = $1", email.lower()
        )
        return (_user(row), row["password_hash"]) if row else None

    async def create(
        self, token_hash: str, user_id: str, now: datetime, expires_at: datetime
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            # Expired sessions of this user are dropped as a new one starts.
            await conn.execute(
                "DELETE FROM sessions WHERE user_id = $1 AND expires_at <= $2", user_id, now
            )
            await conn.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4)",
                token_hash,
                user_id,
                now,
                expires_at,
            )

    async def user_for(self, token_hash: str, now: datetime) -> tuple[str, str] | None:
        """(user id, stored hash) of a session token that has not expired."""
        row = await self.pool.fetchrow(
            "SELECT user_id, token_hash FROM sessions WHERE token_hash = $1 AND expires_at > $2",
            token_hash,
            now,
        )
        return (row["user_id"], row["token_hash"]) if row else None

    async def delete(self, token_hash: str) -> bool:
        status = await self.pool.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash)
        return bool(status.endswith(" 1"))

    async def delete_all(self, user_id: str) -> int:
        status = await self.pool.execute("DELETE FROM sessions WHERE user_id = $1", user_id)
        return int(status.split()[-1])
