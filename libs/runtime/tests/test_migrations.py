from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from marketbot.runtime.db import MigrationError, create_pool, migrate, migrate_service

DEMO = Path(__file__).parent / "migrations_demo"


async def test_migrations_apply_once_and_are_recorded(
    pg_pool: asyncpg.Pool, pg_schema: str
) -> None:
    first = await migrate(pg_pool, pg_schema, "demo", DEMO)
    second = await migrate(pg_pool, pg_schema, "demo", DEMO)
    assert [m.version for m in first] == [1, 2]
    assert second == []
    rows = await pg_pool.fetch(
        "SELECT version, name FROM schema_migrations WHERE component = 'demo' ORDER BY version"
    )
    assert [(r["version"], r["name"]) for r in rows] == [(1, "notes"), (2, "note_author")]
    await pg_pool.execute(
        "INSERT INTO notes (id, body, author) VALUES (gen_random_uuid(), 'a', 'b')"
    )


async def test_runtime_tables_come_with_every_service_schema(
    pg_pool: asyncpg.Pool, pg_schema: str
) -> None:
    await migrate_service(pg_pool, pg_schema, "demo", DEMO)
    await migrate_service(pg_pool, pg_schema, "demo", DEMO)
    tables = {
        r["table_name"]
        for r in await pg_pool.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", pg_schema
        )
    }
    assert {"processed_events", "outbox", "notes", "schema_migrations"} <= tables
    assert "dead_letters" not in tables  # dead letters live in the DEAD_LETTERS stream


async def test_an_applied_migration_that_was_edited_is_refused(
    pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (a int);")
    await migrate(pg_pool, pg_schema, "edit", tmp_path)
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (a bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(pg_pool, pg_schema, "edit", tmp_path)


async def test_a_failing_migration_leaves_nothing_behind(
    pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_bad.sql").write_text("CREATE TABLE half (a int); SELECT no_such_function();")
    with pytest.raises(asyncpg.PostgresError):
        await migrate(pg_pool, pg_schema, "bad", tmp_path)
    exists = await pg_pool.fetchval("SELECT to_regclass($1)", f"{pg_schema}.half")
    assert exists is None


def test_misnamed_migration_files_are_refused(tmp_path: Path) -> None:
    from marketbot.runtime.db import load_migrations

    (tmp_path / "create.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        load_migrations(tmp_path)


async def test_a_released_connection_skips_the_reset_query_but_never_keeps_a_transaction(
    database_url: str, pg_schema: str
) -> None:
    """Pooled connections are released without asyncpg's reset query (no session state is
    kept on them), yet a transaction left open is still rolled back before reuse."""
    pool = await create_pool(database_url, pg_schema, max_size=1)
    seen: list[str] = []
    try:
        await pool.execute("CREATE TABLE kept (id int)")
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: seen.append(record.query))
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO kept VALUES (1)")
        async with pool.acquire() as conn:  # the same connection (max_size=1)
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM kept") == 0
            await conn.fetchval("SELECT 1")
        assert any("ROLLBACK" in q for q in seen)
        assert not any("RESET ALL" in q or "UNLISTEN" in q for q in seen)
    finally:
        await pool.execute(f'DROP SCHEMA IF EXISTS "{pg_schema}" CASCADE')
        await pool.close()
