"""The vault's PostgreSQL schema: credentials and the append-only audit log.

``PgStore.unit()`` is one transaction: the handler's reads and writes, its audit rows and
the events it emits (into the outbox) commit together; the events are published after.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from marketbot.contracts import Event, Exchange, KeyPermissions
from marketbot.contracts.vault import KeyStatus
from marketbot.keyvault.domain.envelope import Binding, EncryptedSecret
from marketbot.runtime.bus import Bus
from marketbot.runtime.consumer import Outbox
from marketbot.runtime.db import Conn
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.keyvault.repository")


@dataclass(frozen=True)
class Credential:
    """A stored credential; the secret only as ``encrypted``."""

    credential_id: uuid.UUID
    user_id: str
    exchange: Exchange
    api_key: str
    masked_key: str
    encrypted: EncryptedSecret
    active: bool
    enabled: bool
    verified: bool
    created_at: datetime
    updated_at: datetime
    verified_at: datetime | None = None
    last_checked_at: datetime | None = None
    last_used_at: datetime | None = None
    status_message: str | None = None
    permissions: KeyPermissions | None = None
    warnings: tuple[str, ...] = ()
    revoked_at: datetime | None = None

    @property
    def binding(self) -> Binding:
        return self.binding_for(self.user_id, self.exchange, self.credential_id)

    @staticmethod
    def binding_for(user_id: str, exchange: Exchange, credential_id: uuid.UUID) -> Binding:
        return Binding(user_id, exchange.value, credential_id)

    @property
    def usable(self) -> bool:
        return self.active and self.enabled and self.verified

    def status(self) -> KeyStatus:
        return KeyStatus(
            credential_id=self.credential_id,
            user_id=self.user_id,
            exchange=self.exchange,
            masked_key=self.masked_key,
            active=self.active,
            enabled=self.enabled,
            verified=self.verified,
            verified_at=self.verified_at,
            last_used_at=self.last_used_at,
            permissions=self.permissions,
            status_message=self.status_message,
        )


@dataclass(frozen=True)
class AuditEntry:
    action: str
    """store | verify | sign | sign_refused | revoke | disable | rotate"""
    outcome: str
    """ok | refused | rejected | unavailable"""
    occurred_at: datetime
    user_id: str | None = None
    exchange: str | None = None
    credential_id: uuid.UUID | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None

    def record(self) -> tuple[Any, ...]:
        return (
            self.occurred_at,
            self.action,
            self.outcome,
            self.user_id,
            self.exchange,
            self.credential_id,
            json.dumps(dict(self.detail)),
            self.correlation_id,
        )


AUDIT_COLUMNS = (
    "occurred_at",
    "action",
    "outcome",
    "user_id",
    "exchange",
    "credential_id",
    "detail",
    "correlation_id",
)

_COLUMNS = (
    "credential_id, user_id, exchange, api_key, masked_key, master_key_version, "
    "wrapped_data_key, ciphertext, active, enabled, verified, verified_at, last_checked_at, "
    "last_used_at, status_message, can_read, can_trade, can_withdraw, ip_bound, ips, excess, "
    "expires_at, warnings, created_at, updated_at, revoked_at"
)


def _credential(row: asyncpg.Record) -> Credential:
    permissions = None
    if row["can_trade"] is not None:
        permissions = KeyPermissions(
            can_read=row["can_read"],
            can_trade=row["can_trade"],
            can_withdraw=row["can_withdraw"],
            ip_bound=row["ip_bound"],
            ips=tuple(row["ips"]),
            expires_at=row["expires_at"],
            excess=tuple(row["excess"]),
        )
    return Credential(
        credential_id=row["credential_id"],
        user_id=row["user_id"],
        exchange=Exchange(row["exchange"]),
        api_key=row["api_key"],
        masked_key=row["masked_key"],
        encrypted=EncryptedSecret(
            master_version=row["master_key_version"],
            wrapped_key=bytes(row["wrapped_data_key"]),
            ciphertext=bytes(row["ciphertext"]),
        ),
        active=row["active"],
        enabled=row["enabled"],
        verified=row["verified"],
        verified_at=row["verified_at"],
        last_checked_at=row["last_checked_at"],
        last_used_at=row["last_used_at"],
        status_message=row["status_message"],
        permissions=permissions,
        warnings=tuple(row["warnings"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        revoked_at=row["revoked_at"],
    )


class Repository:
    """Queries on one connection (inside the caller's transaction, if any)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def active(
        self, user_id: str, exchange: Exchange, *, lock: bool = False
    ) -> Credential | None:
        row = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM credentials WHERE user_id = $1 AND exchange = $2 "
            f"AND active{' FOR UPDATE' if lock else ''}",
            user_id,
            exchange.value,
        )
        return _credential(row) if row else None

    async def by_id(self, credential_id: uuid.UUID, *, lock: bool = False) -> Credential | None:
        row = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM credentials WHERE credential_id = $1"
            f"{' FOR UPDATE' if lock else ''}",
            credential_id,
        )
        return _credential(row) if row else None

    async def for_user(self, user_id: str, exchange: Exchange | None) -> list[Credential]:
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM credentials WHERE user_id = $1 AND active "
            "AND ($2::text IS NULL OR exchange = $2) ORDER BY exchange",
            user_id,
            exchange.value if exchange else None,
        )
        return [_credential(r) for r in rows]

    async def insert(self, credential: Credential) -> None:
        enc = credential.encrypted
        await self.conn.execute(
            "INSERT INTO credentials (credential_id, user_id, exchange, api_key, masked_key, "
            "master_key_version, wrapped_data_key, ciphertext, active, enabled, verified, "
            "status_message, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
            credential.credential_id,
            credential.user_id,
            credential.exchange.value,
            credential.api_key,
            credential.masked_key,
            enc.master_version,
            enc.wrapped_key,
            enc.ciphertext,
            credential.active,
            credential.enabled,
            credential.verified,
            credential.status_message,
            credential.created_at,
        )

    async def deactivate(self, credential_id: uuid.UUID, reason: str, now: datetime) -> None:
        await self.conn.execute(
            "UPDATE credentials SET active = false, enabled = false, verified = false, "
            "status_message = $2, revoked_at = $3, updated_at = $3 WHERE credential_id = $1",
            credential_id,
            reason,
            now,
        )

    async def record_verification(
        self,
        credential_id: uuid.UUID,
        *,
        verified: bool,
        enabled: bool,
        permissions: KeyPermissions | None,
        warnings: Sequence[str],
        message: str | None,
        now: datetime,
    ) -> None:
        p = permissions
        await self.conn.execute(
            "UPDATE credentials SET verified = $2, enabled = $3, "
            "verified_at = CASE WHEN $2 THEN $4 ELSE verified_at END, last_checked_at = $4, "
            "status_message = $5, warnings = $6, updated_at = $4, "
            "can_read = COALESCE($7, can_read), can_trade = COALESCE($8, can_trade), "
            "can_withdraw = COALESCE($9, can_withdraw), ip_bound = COALESCE($10, ip_bound), "
            "ips = COALESCE($11, ips), excess = COALESCE($14, excess), "
            "expires_at = CASE WHEN $12 THEN $13 ELSE expires_at END "
            "WHERE credential_id = $1",
            credential_id,
            verified,
            enabled,
            now,
            message,
            list(warnings),
            p.can_read if p else None,
            p.can_trade if p else None,
            p.can_withdraw if p else None,
            p.ip_bound if p else None,
            list(p.ips) if p else None,
            p is not None,
            p.expires_at if p else None,
            list(p.excess) if p else None,
        )

    async def record_check_unavailable(
        self, credential_id: uuid.UUID, message: str, now: datetime
    ) -> None:
        await self.conn.execute(
            "UPDATE credentials SET last_checked_at = $2, status_message = $3, updated_at = $2 "
            "WHERE credential_id = $1",
            credential_id,
            now,
            message,
        )

    async def due_for_check(self, checked_before: datetime, limit: int) -> list[Credential]:
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM credentials WHERE active AND enabled "
            "AND (last_checked_at IS NULL OR last_checked_at < $1) "
            "ORDER BY last_checked_at NULLS FIRST LIMIT $2",
            checked_before,
            limit,
        )
        return [_credential(r) for r in rows]

    async def wrapped_below(
        self, version: int, limit: int, exclude: Sequence[uuid.UUID] = ()
    ) -> list[Credential]:
        """Rows whose data key is wrapped under an older master key, locked for re-wrapping."""
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM credentials WHERE master_key_version < $1 "
            "AND NOT (credential_id = ANY($3::uuid[])) "
            "ORDER BY credential_id LIMIT $2 FOR UPDATE SKIP LOCKED",
            version,
            limit,
            list(exclude),
        )
        return [_credential(r) for r in rows]

    async def count_by_master_version(self) -> dict[int, int]:
        rows = await self.conn.fetch(
            "SELECT master_key_version, count(*) AS n FROM credentials GROUP BY 1 ORDER BY 1"
        )
        return {r["master_key_version"]: r["n"] for r in rows}

    async def set_wrapped(
        self, credential_id: uuid.UUID, encrypted: EncryptedSecret, now: datetime
    ) -> None:
        await self.conn.execute(
            "UPDATE credentials SET master_key_version = $2, wrapped_data_key = $3, "
            "updated_at = $4 WHERE credential_id = $1",
            credential_id,
            encrypted.master_version,
            encrypted.wrapped_key,
            now,
        )

    async def audit(self, entry: AuditEntry) -> None:
        await self.conn.execute(
            f"INSERT INTO audit_log ({', '.join(AUDIT_COLUMNS)}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)",
            *entry.record(),
        )

    async def audit_many(self, entries: Sequence[AuditEntry]) -> None:
        await self.audit_records([e.record() for e in entries])

    async def audit_records(self, records: Sequence[tuple[Any, ...]]) -> None:
        if records:
            await self.conn.copy_records_to_table(
                "audit_log", records=records, columns=list(AUDIT_COLUMNS)
            )

    async def touch_last_used(self, used: Mapping[uuid.UUID, datetime]) -> None:
        if used:
            await self.conn.execute(
                "UPDATE credentials c SET last_used_at = GREATEST(c.last_used_at, u.at) "
                "FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at) "
                "WHERE c.credential_id = u.id",
                list(used),
                list(used.values()),
            )


class Unit:
    """One transaction: the repository plus the events to emit when it commits."""

    def __init__(self, conn: Conn) -> None:
        self.repo = Repository(conn)
        self.events: list[Event] = []

    def emit(self, *events: Event) -> None:
        self.events.extend(events)


class PgStore:
    def __init__(self, pool: asyncpg.Pool, bus: Bus) -> None:
        self.pool = pool
        self.outbox = Outbox(bus, pool)

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[Unit]:
        """A transaction; its events are in the outbox at commit and published right after."""
        async with self.pool.acquire() as conn, conn.transaction():
            unit = Unit(conn)
            yield unit
            rows = await Outbox.add(conn, unit.events)
        await self.outbox.publish_committed(rows)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Repository]:
        async with self.pool.acquire() as conn:
            yield Repository(conn)

    async def append_audit(self, entries: Iterable[AuditEntry]) -> None:
        batch = list(entries)
        async with self.pool.acquire() as conn:
            await Repository(conn).audit_many(batch)
