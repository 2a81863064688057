"""Batched audit of successful signs, so a sign is never a synchronous database write.

Signs are buffered and written with COPY every ``interval`` seconds (and at shutdown), with
the ``last_used_at`` of each key used. Refusals are not buffered: the handler writes them
before it answers. The vault fails closed: if the backlog grows past ``backlog_max``, or
flushes have failed for ``fail_closed_after_s`` (database down), ``accepting`` turns false
and the vault refuses to sign (``audit_unavailable``) rather than sign unaudited; the gauge
``marketbot_keyvault_audit_failing`` is 1 and the alert KeyvaultAuditFailing fires.

One bad row never stalls the rest: a batch PostgreSQL refuses for its data (a NUL, invalid
Unicode) is written again with such text replaced by U+FFFD, so the audit stays complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge

from marketbot.keyvault.adapters.repository import AuditEntry, PgStore, Repository
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.keyvault.audit")

AUDIT_WRITTEN = Counter("marketbot_keyvault_audit_rows_total", "Audit rows written", ["action"])
AUDIT_BACKLOG = Gauge("marketbot_keyvault_audit_backlog", "Sign audit rows not yet written")
AUDIT_FAILING = Gauge(
    "marketbot_keyvault_audit_failing",
    "1 while the vault cannot write its audit and so refuses to sign (fails closed)",
)
AUDIT_SANITIZED = Counter(
    "marketbot_keyvault_audit_rows_sanitized_total",
    "Audit rows written with text PostgreSQL refused (NUL, invalid Unicode) replaced",
)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    return value


def sanitized(record: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_clean(value) for value in record)


class AuditBuffer:
    def __init__(
        self,
        store: PgStore,
        *,
        interval: float = 0.1,
        backlog_max: int = 200_000,
        fail_closed_after_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._store = store
        self._interval = interval
        self._backlog_max = backlog_max
        self._fail_closed_after = fail_closed_after_s
        self._monotonic = monotonic
        self._failing_since: float | None = None
        self._pending: list[tuple[Any, ...]] = []
        self._used: dict[uuid.UUID, datetime] = {}
        self._lock = asyncio.Lock()

    @property
    def accepting(self) -> bool:
        if len(self._pending) >= self._backlog_max:
            return False
        since = self._failing_since
        return since is None or self._monotonic() - since < self._fail_closed_after

    async def _write(self, batch: list[tuple[Any, ...]], used: dict[uuid.UUID, datetime]) -> None:
        async with self._store.pool.acquire() as conn, conn.transaction():
            repo = Repository(conn)
            await repo.audit_records(batch)
            await repo.touch_last_used(used)

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
                try:
                    await self._write(batch, used)
                except (asyncpg.DataError, ValueError) as exc:
                    # Text PostgreSQL cannot hold: write the batch with it replaced.
                    clean = [sanitized(record) for record in batch]
                    changed = sum(1 for a, b in zip(batch, clean, strict=True) if a != b)
                    log.error(
                        "audit rows with unstorable text sanitized", error=str(exc), rows=changed
                    )
                    await self._write(clean, used)
                    AUDIT_SANITIZED.inc(changed)
            except (asyncpg.PostgresError, OSError, ValueError) as exc:
                # Put them back in front; the next flush tries again.
                self._pending = batch + self._pending
                for key, at in used.items():
                    self._used.setdefault(key, at)
                log.warning("audit flush failed; will retry", error=str(exc), rows=len(batch))
                AUDIT_BACKLOG.set(len(self._pending))
                if self._failing_since is None:
                    self._failing_since = self._monotonic()
                if not self.accepting:
                    log.error("the vault cannot audit: signing is refused until it can")
                    AUDIT_FAILING.set(1)
                return 0
            self._failing_since = None
            AUDIT_FAILING.set(0)
            AUDIT_WRITTEN.labels("sign").inc(len(batch))
            AUDIT_BACKLOG.set(len(self._pending))
            return len(batch)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
            try:
                await self.flush()
            except Exception:  # the loop must outlive any flush: it is what un-fails
                log.exception("audit flush crashed; will retry")
