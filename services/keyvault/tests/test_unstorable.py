"""NUL and invalid Unicode at the vault's edge, and an audit that never stalls (issue 14)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from marketbot.contracts import Exchange
from marketbot.contracts.vault import SignReply
from marketbot.keyvault.adapters.audit import AuditBuffer
from marketbot.keyvault.adapters.repository import PgStore
from marketbot.keyvault.app import RunningVault
from marketbot.runtime.bus import Bus

from .test_signing import sign_request


def _raw(correlation: str) -> bytes:
    message = json.loads(
        sign_request(
            Exchange.BYBIT,
            "GET",
            "/v5/order/realtime",
            "category=spot",
            "",
        ).to_json()
    )
    message["correlation_id"] = correlation
    return json.dumps(message).encode()


async def test_a_nul_or_a_lone_surrogate_in_the_correlation_id_is_refused_naming_it(
    vault: RunningVault, bus: Bus, migrated: asyncpg.Pool
) -> None:
    for bad in ("abc\x00def", "abc\ud800"):
        response = await bus.nc.request(bus.subject("keyvault.sign.bybit"), _raw(bad), 5)
        reply = SignReply.model_validate_json(response.data)
        assert not reply.ok
        assert reply.error is not None
        assert (reply.error.code, reply.error.field) == ("invalid_request", "correlation_id")
        assert reply.signature == ""
    broken = await bus.nc.request(bus.subject("keyvault.sign.bybit"), b"\xff\xfe{}", 5)
    assert SignReply.model_validate_json(broken.data).error is not None
    # the audit still flushes: nothing poisoned it
    await vault.vault.audit.flush()
    assert vault.vault.audit.backlog == 0
    assert vault.vault.audit.accepting


def _row(correlation: str) -> tuple[Any, ...]:
    return (
        datetime.now(UTC),
        "sign",
        "ok",
        "u1",
        "bybit",
        None,
        json.dumps({"path": "/v5/order/create"}),
        correlation,
    )


async def test_one_unstorable_row_never_stalls_the_audit(migrated: asyncpg.Pool, bus: Bus) -> None:
    audit = AuditBuffer(PgStore(migrated, bus))
    audit.add_record(_row("good-1"), None, datetime.now(UTC))
    audit.add_record(_row("bad\x00row"), None, datetime.now(UTC))
    audit.add_record(_row("bad\udc80row"), None, datetime.now(UTC))
    audit.add_record(_row("good-2"), None, datetime.now(UTC))
    assert await audit.flush() == 4
    assert audit.backlog == 0
    assert audit.accepting
    rows = await migrated.fetch("SELECT correlation_id FROM audit_log ORDER BY id")
    assert [r["correlation_id"] for r in rows] == [
        "good-1",
        "bad\ufffdrow",
        "bad\ufffdrow",
        "good-2",
    ]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _DownPool:
    def acquire(self) -> Any:
        raise OSError("connection refused")


async def test_the_vault_fails_closed_when_it_cannot_audit(
    migrated: asyncpg.Pool, bus: Bus
) -> None:
    clock = _Clock()
    store = PgStore(migrated, bus)
    audit = AuditBuffer(store, fail_closed_after_s=5.0, monotonic=clock)
    store_pool = store.pool
    store.pool = _DownPool()  # type: ignore[assignment]
    audit.add_record(_row(str(uuid.uuid4())), None, datetime.now(UTC))
    assert await audit.flush() == 0
    assert audit.accepting  # a blip: still signing, the rows wait
    clock.now = 6.0
    assert await audit.flush() == 0
    assert not audit.accepting  # failing for longer than 5 s: refuse to sign
    store.pool = store_pool
    assert await audit.flush() == 1
    assert audit.accepting
