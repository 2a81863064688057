"""Batched audit of successful signs, so a sign is never a synchronous database write.

Signs are buffered and written with COPY every ``interval`` seconds (and at shutdown), with
the ``last_used_at`` of each key used. Refusals are not buffered: the handler writes them
before it answers. If the backlog grows past ``backlog_max`` (database down), ``accepting``
turns false and the vault refuses to sign rather than sign unaudited.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge

from marketbot.keyvault.adapters.repository import AuditEntry, PgStore, Repository
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.keyvault.audit")

AUDIT_WRITTEN = Counter("marketbot_keyvault_audit_rows_total", "Audit rows written", ["action"])
AUDIT_BACKLOG = Gauge("marketbot_keyvault_audit_backlog", "Sign audit rows not yet written")


class AuditBuffer:
    def __init__(self, store: PgStore, *, interval: float = 0.1, backlog_max: int = 200_000):
        self._store = store
        self._interval = interval
        self._backlog_max = backlog_max
        self._pending: list[tuple[Any, ...]] = []
        self._used: dict[uuid.UUID, datetime] = {}
        self._lock = asyncio.Lock()

    @property
    def accepting(self) -> bool:
        return len(self._pending) < self._backlog_max

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def add(self, entry: AuditEntry) -> None:
        self.add_record(entry.record(), entry.credential_id, entry.occurred_at)

    def add_record(
        self, record: tuple[Any, ...], credential_id: uuid.UUID | None, at: datetime
    ) -> None:
        """A row in ``AUDIT_COLUMNS`` order, encoded now so a flush never stalls the loop."""
        self._pending.append(record)
        if credential_id is not None:
            self._used[credential_id] = at

    async def flush(self) -> int:
        async with self._lock:
            batch, self._pending = self._pending, []
            used, self._used = self._used, {}
            if not batch and not used:
                return 0
            try:
                async with self._store.pool.acquire() as conn, conn.transaction():
                    repo = Repository(conn)
                    await repo.audit_records(batch)
                    await repo.touch_last_used(used)
            except (asyncpg.PostgresError, OSError) as exc:
                # Put them back in front; the next flush tries again.
                self._pending = batch + self._pending
                for key, at in used.items():
                    self._used.setdefault(key, at)
                log.warning("audit flush failed; will retry", error=str(exc), rows=len(batch))
                AUDIT_BACKLOG.set(len(self._pending))
                return 0
            AUDIT_WRITTEN.labels("sign").inc(len(batch))
            AUDIT_BACKLOG.set(len(self._pending))
            return len(batch)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
            await self.flush()
