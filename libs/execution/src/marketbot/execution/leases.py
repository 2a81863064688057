"""One follower per account across executor replicas: a lease row per (exchange, account).

A replica follows an account's private stream only while it holds the account's row
(``stream_followers``: owner, expiry). It renews its rows every few seconds; a replica that
stops or dies releases them, or they lapse after ``lease_s``, and another replica that
wants the account (it has open positions, or a request came for it) takes the row over and
opens the stream (its start-up reconciliation recovers the gap). Every time is the
database's (``now()``), so the replicas' clocks do not matter.

A replica that does not hold an account still places its orders: the balance is read by
REST (its own stream snapshot does not exist) and the order is read back after its create
(no stream of its own follows it); the owner's stream records whatever it reports, once by
the order's id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from marketbot.runtime.db import Conn


class FollowLeases:
    def __init__(self, pool: asyncpg.Pool, exchange: str, owner: str, lease_s: float) -> None:
        self.pool = pool
        self.exchange = exchange
        self.owner = owner
        self.lease_s = lease_s

    async def acquire(self, user_ids: Sequence[str]) -> set[str]:
        """Take the accounts that are free, lapsed or already ours; returns those held."""
        if not user_ids:
            return set()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "INSERT INTO stream_followers (exchange, user_id, owner, expires_at) "
                "SELECT $1, u, $3, now() + make_interval(secs => $4) "
                "FROM unnest($2::text[]) AS u "
                "ON CONFLICT (exchange, user_id) DO UPDATE SET owner = EXCLUDED.owner, "
                "expires_at = EXCLUDED.expires_at, "
                "covered = stream_followers.covered AND stream_followers.owner = EXCLUDED.owner "
                "WHERE stream_followers.owner = EXCLUDED.owner "
                "OR stream_followers.expires_at < now() "
                "RETURNING user_id",
                self.exchange,
                list(user_ids),
                self.owner,
                self.lease_s,
            )
        return {str(r["user_id"]) for r in rows}

    async def renew(self, covered: Mapping[str, bool]) -> set[str]:
        """Extend our leases of these accounts (saying whether our stream covers each);
        returns those still ours (one taken over after a lapse is not)."""
        if not covered:
            return set()
        users = list(covered)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "UPDATE stream_followers AS f SET expires_at = now() + make_interval(secs => $3), "
                "covered = u.covered "
                "FROM unnest($2::text[], $5::bool[]) AS u(user_id, covered) "
                "WHERE f.exchange = $1 AND f.user_id = u.user_id AND f.owner = $4 "
                "RETURNING f.user_id",
                self.exchange,
                users,
                self.lease_s,
                self.owner,
                [covered[u] for u in users],
            )
        return {str(r["user_id"]) for r in rows}

    async def release(self, user_ids: Sequence[str] | None = None) -> None:
        """Give up our leases (of ``user_ids``, or all): another replica may take them now."""
        async with self.pool.acquire() as conn:
            if user_ids is None:
                await conn.execute(
                    "DELETE FROM stream_followers WHERE exchange = $1 AND owner = $2",
                    self.exchange,
                    self.owner,
                )
            elif user_ids:
                await conn.execute(
                    "DELETE FROM stream_followers WHERE exchange = $1 AND owner = $2 "
                    "AND user_id = ANY($3::text[])",
                    self.exchange,
                    self.owner,
                    list(user_ids),
                )

    async def others(self) -> dict[str, bool]:
        """The accounts another replica holds now, and whether its stream covers each."""
        async with self.pool.acquire() as conn:
            return await others(conn, self.exchange, self.owner)


async def others(conn: Conn, exchange: str, owner: str) -> dict[str, bool]:
    rows = await conn.fetch(
        "SELECT user_id, covered FROM stream_followers "
        "WHERE exchange = $1 AND owner <> $2 AND expires_at > now()",
        exchange,
        owner,
    )
    return {str(r["user_id"]): bool(r["covered"]) for r in rows}
