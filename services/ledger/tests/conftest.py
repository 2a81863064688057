from __future__ import annotations

from collections.abc import Iterable

import asyncpg
import pytest

from marketbot.contracts import Event
from marketbot.ledger.app import MIGRATIONS
from marketbot.ledger.handlers import apply_event
from marketbot.ledger.settings import LedgerSettings
from marketbot.runtime.db import migrate_service

RULES = LedgerSettings().money_rules()


@pytest.fixture
async def ledger_pool(pg_pool: asyncpg.Pool, pg_schema: str) -> asyncpg.Pool:
    """A fresh schema with the ledger's tables."""
    await migrate_service(pg_pool, pg_schema, "ledger", MIGRATIONS)
    return pg_pool


async def apply_each(pool: asyncpg.Pool, events: Iterable[Event]) -> list[Event]:
    """Apply events one transaction each, straight through the handlers (no dedup table)."""
    emitted: list[Event] = []
    async with pool.acquire() as conn:
        for event in events:
            async with conn.transaction():
                emitted.extend(await apply_event(event, conn, RULES))
    return emitted
