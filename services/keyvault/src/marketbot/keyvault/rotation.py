"""Master key rotation: re-wrap every data key under the newest master key.

Each batch is one transaction over rows locked with ``FOR UPDATE SKIP LOCKED`` (replicas
and a second rotation run do not collide). Only data keys pass through memory; secrets are
never decrypted. Each re-wrapped row gets an audit entry. Rows whose master key is retired
or missing cannot be re-wrapped: they are reported and left as they are.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg

from marketbot.keyvault.adapters.repository import AuditEntry, Repository
from marketbot.keyvault.domain.envelope import MasterKeyRing, VaultCryptoError, rewrap
from marketbot.runtime.clock import Clock
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.keyvault.rotation")


@dataclass
class RotationReport:
    target_version: int
    rewrapped: int = 0
    failed: list[str] = field(default_factory=list)
    by_version_after: dict[int, int] = field(default_factory=dict)


async def rotate(
    pool: asyncpg.Pool, keyring: MasterKeyRing, clock: Clock, *, batch: int = 500
) -> RotationReport:
    target = keyring.current_version
    report = RotationReport(target_version=target)
    skip: list[uuid.UUID] = []
    while True:
        async with pool.acquire() as conn, conn.transaction():
            repo = Repository(conn)
            rows = await repo.wrapped_below(target, batch, skip)
            if not rows:
                break
            now = clock.now()
            for credential in rows:
                try:
                    rewrapped = rewrap(keyring, credential.binding, credential.encrypted)
                except VaultCryptoError as exc:
                    skip.append(credential.credential_id)
                    report.failed.append(f"{credential.credential_id}: {exc}")
                    log.error(
                        "data key cannot be re-wrapped",
                        credential_id=str(credential.credential_id),
                        error=str(exc),
                    )
                    continue
                await repo.set_wrapped(credential.credential_id, rewrapped, now)
                await repo.audit(
                    AuditEntry(
                        action="rotate",
                        outcome="ok",
                        occurred_at=now,
                        user_id=credential.user_id,
                        exchange=credential.exchange.value,
                        credential_id=credential.credential_id,
                        detail={
                            "from_version": credential.encrypted.master_version,
                            "to_version": target,
                        },
                    )
                )
                report.rewrapped += 1
    async with pool.acquire() as conn:
        report.by_version_after = await Repository(conn).count_by_master_version()
    log.info(
        "rotation finished",
        target_version=target,
        rewrapped=report.rewrapped,
        failed=len(report.failed),
    )
    return report
