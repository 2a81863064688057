"""The vault and the ledger, reached only through their contracts over NATS request/reply."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import ConfigDict

from marketbot.contracts import Exchange, OperationStatus, Reply, SignalReceived
from marketbot.contracts.ledger import (
    CommissionsQuery,
    CommissionsReply,
    OperationsPage,
    OperationsQuery,
    SignalTrace,
    SignalTraceQuery,
    StatementQuery,
    StatementReply,
)
from marketbot.contracts.vault import (
    KeyStatus,
    KeyStatusReply,
    KeyStatusRequest,
    RegisterKeyReply,
    RegisterKeyRequest,
    RevokeKeyRequest,
    VaultPublicKeyReply,
    VaultPublicKeyRequest,
    VerifyKeyRequest,
)
from marketbot.runtime.bus import Bus, BusError
from marketbot.runtime.sealing import key_id_for, seal, seal_context


class KeyReply(Reply):
    """The vault's answer to verify/revoke: ``key`` or ``keys``, whichever it sends."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: KeyStatus | None = None
    keys: tuple[KeyStatus, ...] = ()


def _envelope(now: datetime, correlation_id: str) -> dict[str, object]:
    return {"occurred_at": now, "correlation_id": correlation_id}


@dataclass
class VaultClient:
    bus: Bus
    timeout: float = 5.0
    pinned_public_key: bytes | None = None
    """The vault's X25519 public key from configuration. When set, secrets are sealed to it
    and nothing on the bus can substitute another key (NATS is not trusted for that)."""

    async def _public_key(self, now: datetime, correlation_id: str) -> tuple[str, bytes]:
        if self.pinned_public_key is not None:
            return key_id_for(self.pinned_public_key), self.pinned_public_key
        # Unpinned: asked every time (the vault may rotate its key; registration is rare).
        reply = await self.bus.request(
            VaultPublicKeyRequest(**_envelope(now, correlation_id)),
            VaultPublicKeyReply,
            timeout=self.timeout,
        )
        if not reply.ok or not reply.public_key:
            raise BusError("the key vault did not give its public key")
        try:
            raw = base64.b64decode(reply.public_key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BusError("the key vault's public key is not base64") from exc
        if len(raw) != 32:
            raise BusError("the key vault's public key is not an X25519 key")
        return reply.key_id, raw

    async def register(
        self,
        user_id: str,
        exchange: Exchange,
        api_key: str,
        api_secret: str,
        now: datetime,
        correlation_id: str,
    ) -> RegisterKeyReply:
        """Seal the secret to the vault's key; only the sealed box leaves this function."""
        key_id, public_key = await self._public_key(now, correlation_id)
        sealed = seal(
            public_key, key_id, api_secret, seal_context(user_id, exchange.value, api_key)
        )
        request = RegisterKeyRequest(
            **_envelope(now, correlation_id),
            user_id=user_id,
            exchange=exchange,
            api_key=api_key,
            sealed_secret=sealed,
        )
        return await self.bus.request(request, RegisterKeyReply, timeout=self.timeout)

    async def verify(
        self, user_id: str, exchange: Exchange, now: datetime, correlation_id: str
    ) -> KeyReply:
        request = VerifyKeyRequest(
            **_envelope(now, correlation_id),
            user_id=user_id,
            exchange=exchange,
        )
        # Verification calls the exchange: give it longer than a lookup.
        return await self.bus.request(request, KeyReply, timeout=max(self.timeout, 15.0))

    async def revoke(
        self, user_id: str, exchange: Exchange, now: datetime, correlation_id: str
    ) -> KeyReply:
        request = RevokeKeyRequest(
            **_envelope(now, correlation_id),
            user_id=user_id,
            exchange=exchange,
        )
        return await self.bus.request(request, KeyReply, timeout=self.timeout)

    async def status(
        self, user_id: str, exchange: Exchange | None, now: datetime, correlation_id: str
    ) -> KeyStatusReply:
        request = KeyStatusRequest(
            **_envelope(now, correlation_id),
            user_id=user_id,
            exchange=exchange,
        )
        return await self.bus.request(request, KeyStatusReply, timeout=self.timeout)


@dataclass
class LedgerClient:
    bus: Bus
    timeout: float = 5.0

    async def operations(
        self,
        user_id: str,
        status: OperationStatus | None,
        symbol: str | None,
        page: int,
        page_size: int,
        now: datetime,
        correlation_id: str,
    ) -> OperationsPage:
        request = OperationsQuery(
            **_envelope(now, correlation_id),
            user_id=user_id,
            status=status,
            symbol=symbol,
            page=page,
            page_size=page_size,
        )
        return await self.bus.request(request, OperationsPage, timeout=self.timeout)

    async def commissions(
        self,
        user_id: str | None,
        referrer_id: str | None,
        now: datetime,
        correlation_id: str,
    ) -> CommissionsReply:
        request = CommissionsQuery(
            **_envelope(now, correlation_id),
            user_id=user_id,
            referrer_id=referrer_id,
        )
        return await self.bus.request(request, CommissionsReply, timeout=self.timeout)

    async def statement(
        self, user_id: str | None, now: datetime, correlation_id: str
    ) -> StatementReply:
        request = StatementQuery(
            **_envelope(now, correlation_id),
            user_id=user_id,
        )
        return await self.bus.request(request, StatementReply, timeout=self.timeout)

    async def trace(self, signal_id: uuid.UUID, now: datetime, correlation_id: str) -> SignalTrace:
        request = SignalTraceQuery(
            **_envelope(now, correlation_id),
            signal_id=signal_id,
        )
        return await self.bus.request(request, SignalTrace, timeout=self.timeout)


@dataclass
class BusSignalPublisher:
    """Publishes a signal and reports whether JetStream already had it (a duplicate)."""

    bus: Bus
    budget_seconds: float = 2.0
    """The whole publish, retries included, must fit TradingView's 3 s answer deadline."""

    async def __call__(self, signal: SignalReceived) -> bool:
        ack = await self.bus.publish(signal, budget=self.budget_seconds)
        return bool(ack.duplicate)
