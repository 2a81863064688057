"""PostgreSQL: one asyncpg pool per service, pinned to the service's own schema, and a
migrations runner for plain versioned SQL files.

Migrations live in a folder as ``0001_name.sql``, ``0002_name.sql``...; each is applied once,
inside a transaction, under an advisory lock (so replicas starting together do not race),
and recorded with its checksum in ``schema_migrations``. An applied file that was edited
afterwards is an error: write a new migration instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.db")

Conn = asyncpg.Connection | PoolConnectionProxy
"""A connection as handlers receive it: a plain one or one borrowed from a pool."""

RUNTIME_MIGRATIONS = Path(__file__).parent / "migrations"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


def check_identifier(name: str) -> str:
    """Schema names are interpolated into SQL, so they are held to a strict pattern."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"schema name must match {_IDENTIFIER.pattern}, got {name!r}")
    return name


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's ``reset``: nothing beyond what asyncpg always does on release.

    asyncpg's default reset runs ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL;`` on every release (asyncpg ``create_pool``, the *reset* parameter): one more
    round trip per borrowed connection, four statements, on every handler's path. Before
    calling a custom reset asyncpg still rolls back a transaction left open and drops the
    connection's listeners (``Connection._reset``), so what this skips is only session state,
    and the services keep none on pooled connections: the search path is a connection
    setting (``server_settings``), nothing LISTENs, advisory locks are transaction-scoped
    (``pg_advisory_xact_lock``) except the migration lock, which ``migrate`` releases
    itself, and cursors live inside transactions (closed at their end).
    """


async def create_pool(
    database_url: str, schema: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections resolve unqualified names in ``schema`` (created if missing)."""
    check_identifier(schema)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": schema, "application_name": f"marketbot-{schema}"},
        reset=keep_session,
    )
    if pool is None:  # only when the pool is used as an awaitable in a closed loop
        raise RuntimeError("could not create the database pool")
    return pool


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return migrations


async def migrate(
    pool: asyncpg.Pool, schema: str, component: str, directory: Path
) -> list[Migration]:
    """Apply the not-yet-applied migrations of ``component`` into ``schema``; returns them."""
    check_identifier(schema)
    migrations = load_migrations(directory)
    applied_now: list[Migration] = []
    async with pool.acquire() as conn:
        lock_key = int.from_bytes(
            hashlib.sha256(f"{schema}".encode()).digest()[:8], "big", signed=True
        )
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations (
                    component text NOT NULL,
                    version integer NOT NULL,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (component, version))"""
            )
            rows = await conn.fetch(
                f'SELECT version, checksum FROM "{schema}".schema_migrations WHERE component = $1',
                component,
            )
            done = {r["version"]: r["checksum"] for r in rows}
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"{component} migration {migration.version:04d}_{migration.name} "
                            "was changed after it was applied; add a new migration instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                    await conn.execute(migration.sql)
                    await conn.execute(
                        f'INSERT INTO "{schema}".schema_migrations (component, version, name, '
                        "checksum) VALUES ($1, $2, $3, $4)",
                        component,
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                applied_now.append(migration)
                log.info(
                    "migration applied",
                    schema=schema,
                    component=component,
                    version=migration.version,
                    name=migration.name,
                )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return applied_now


async def migrate_service(pool: asyncpg.Pool, schema: str, component: str, directory: Path) -> None:
    """The runtime's own tables (processed events, outbox) and then the service's."""
    await migrate(pool, schema, "runtime", RUNTIME_MIGRATIONS)
    await migrate(pool, schema, component, directory)


# ---- whole databases (test and bench harnesses: a fresh database per stack) -------------
def database_url(server_url: str, database: str) -> str:
    """``server_url`` (any database on the server) pointed at ``database`` instead."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{check_identifier(database)}"))


async def create_database(server_url: str, database: str) -> str:
    """Create an empty database on the server of ``server_url``; returns its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{check_identifier(database)}"')
    finally:
        await conn.close()
    return database_url(server_url, database)


async def drop_database(server_url: str, database: str) -> None:
    """Drop a database made by ``create_database``, closing its connections first."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{check_identifier(database)}" WITH (FORCE)')
    finally:
        await conn.close()
