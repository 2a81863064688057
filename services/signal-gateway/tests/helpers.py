"""Fixtures: the gateway app on a real bus (JetStream) and a fresh PostgreSQL schema, with the
key vault and the ledger replaced by tiny responders on the bus (the port boundary)."""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastapi import FastAPI

from marketbot.contracts import Exchange, OperationStatus, Plan, Side
from marketbot.contracts.ledger import (
    CommissionEntry,
    CommissionsQuery,
    CommissionsReply,
    Operation,
    OperationsPage,
    OperationsQuery,
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
from marketbot.gateway.app import MIGRATIONS, GatewayDeps, create_app
from marketbot.gateway.settings import GatewaySettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import ManualClock
from marketbot.runtime.db import migrate_service
from marketbot.runtime.sealing import seal_context, unseal

ADMIN_TOKEN = "admin-token-for-tests-0001"
SOURCE_TOKEN = "tv-source-token-for-tests-0001"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def make_settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "admin_token": ADMIN_TOKEN,
        "webhook_sources": {"tv": SOURCE_TOKEN},
        "rate_limit_per_second": 1000.0,
        "rate_limit_burst": 1000,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@pytest.fixture
async def gateway_pool(pg_pool: asyncpg.Pool, pg_schema: str) -> asyncpg.Pool:
    await migrate_service(pg_pool, pg_schema, "signal-gateway", MIGRATIONS)
    return pg_pool


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def client_for(app: FastAPI, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(bus: Bus, gateway_pool: asyncpg.Pool, clock: ManualClock) -> AppFactory:
    def factory(settings: GatewaySettings | None = None, **deps: Any) -> FastAPI:
        return create_app(
            settings or make_settings(), GatewayDeps(bus, gateway_pool, clock, **deps)
        )

    return factory


@pytest.fixture
async def api(make_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app()) as client:
        yield client


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_user(api: httpx.AsyncClient, email: str, **fields: Any) -> tuple[str, str]:
    response = await api.post(
        "/admin/users",
        json={"email": email, "display_name": email.split("@")[0], **fields},
        headers=admin_headers(),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return body["user"]["user_id"], body["token"]


# --- the key vault and the ledger, as fakes on the bus -------------------------------------


@dataclass
class FakeVault:
    private_key: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    secrets: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    asked_for: list[str] = field(default_factory=list)

    def status_of(self, user_id: str, exchange: str, api_key: str) -> KeyStatus:
        return KeyStatus(
            credential_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{user_id}/{exchange}"),
            user_id=user_id,
            exchange=Exchange(exchange),
            masked_key=api_key[:4] + "****" + api_key[-2:],
            active=True,
            enabled=True,
            verified=False,
        )

    async def serve(self, bus: Bus) -> None:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

        async def public_key(_req: VaultPublicKeyRequest) -> VaultPublicKeyReply:
            return VaultPublicKeyReply(key_id="vk1", public_key=base64.b64encode(public).decode())

        async def register(req: RegisterKeyRequest) -> RegisterKeyReply:
            self.asked_for.append(req.user_id)
            context = seal_context(req.user_id, req.exchange.value, req.api_key)
            secret = unseal(self.private_key, req.sealed_secret, context)
            self.secrets[(req.user_id, req.exchange.value)] = (req.api_key, secret)
            return RegisterKeyReply(
                key=self.status_of(req.user_id, req.exchange.value, req.api_key)
            )

        async def status(req: KeyStatusRequest) -> KeyStatusReply:
            self.asked_for.append(req.user_id)
            keys = tuple(
                self.status_of(user, exchange, api_key)
                for (user, exchange), (api_key, _) in self.secrets.items()
                if user == req.user_id and (req.exchange is None or req.exchange.value == exchange)
            )
            return KeyStatusReply(keys=keys)

        async def verify(req: VerifyKeyRequest) -> RegisterKeyReply:
            self.asked_for.append(req.user_id)
            found = self.secrets.get((req.user_id, req.exchange.value))
            if found is None:
                from marketbot.contracts import ErrorDetail

                return RegisterKeyReply(
                    ok=False,
                    error=ErrorDetail(code="not_found", message="no key", field="exchange"),
                )
            status = self.status_of(req.user_id, req.exchange.value, found[0])
            return RegisterKeyReply(key=status.model_copy(update={"verified": True}))

        async def revoke(req: RevokeKeyRequest) -> RegisterKeyReply:
            self.asked_for.append(req.user_id)
            found = self.secrets.pop((req.user_id, req.exchange.value), None)
            if found is None:
                return RegisterKeyReply()
            status = self.status_of(req.user_id, req.exchange.value, found[0])
            return RegisterKeyReply(key=status.model_copy(update={"active": False}))

        await bus.serve(VaultPublicKeyRequest, VaultPublicKeyReply, public_key)
        await bus.serve(RegisterKeyRequest, RegisterKeyReply, register)
        await bus.serve(KeyStatusRequest, KeyStatusReply, status)
        await bus.serve(VerifyKeyRequest, RegisterKeyReply, verify)
        await bus.serve(RevokeKeyRequest, RegisterKeyReply, revoke)


def operation(user_id: str, symbol: str = "BTCUSDT") -> Operation:
    return Operation(
        operation_id=uuid.uuid4(),
        signal_id=uuid.uuid4(),
        decision_id=uuid.uuid4(),
        user_id=user_id,
        exchange=Exchange.BYBIT,
        symbol=symbol,
        side=Side.BUY,
        plan=Plan.PRO,
        status=OperationStatus.CLOSED,
        client_order_id="mb-" + "0" * 32,
        realized_pnl=Decimal("12.5"),
        requested_at=NOW,
        updated_at=NOW,
    )


@dataclass
class FakeLedger:
    operations: dict[str, list[Operation]] = field(default_factory=dict)
    asked_for: list[str | None] = field(default_factory=list)

    async def serve(self, bus: Bus) -> None:
        async def ops(req: OperationsQuery) -> OperationsPage:
            self.asked_for.append(req.user_id)
            found = tuple(self.operations.get(req.user_id, []))
            return OperationsPage(operations=found, total=len(found))

        async def commissions(req: CommissionsQuery) -> CommissionsReply:
            self.asked_for.append(req.user_id or req.referrer_id)
            entries = tuple(
                CommissionEntry(
                    operation_id=op.operation_id,
                    user_id=op.user_id,
                    plan=Plan.PRO,
                    rate=Decimal("0.1"),
                    realized_pnl=Decimal("12.5"),
                    amount=Decimal("1.25"),
                    accrued_at=NOW,
                )
                for op in self.operations.get(req.user_id or "", [])
            )
            return CommissionsReply(
                entries=entries, total=sum((e.amount for e in entries), Decimal(0))
            )

        async def statement(req: StatementQuery) -> StatementReply:
            self.asked_for.append(req.user_id)
            return StatementReply()

        await bus.serve(OperationsQuery, OperationsPage, ops)
        await bus.serve(CommissionsQuery, CommissionsReply, commissions)
        await bus.serve(StatementQuery, StatementReply, statement)


@pytest.fixture
async def vault(bus: Bus) -> FakeVault:
    fake = FakeVault()
    await fake.serve(bus)
    return fake


@pytest.fixture
async def ledger(bus: Bus) -> FakeLedger:
    fake = FakeLedger()
    await fake.serve(bus)
    return fake


async def stream_messages(bus: Bus, stream: str) -> list[dict[str, Any]]:
    """Every message in a stream (this test's namespace), decoded as JSON."""
    import json

    info = await bus.js.stream_info(bus.stream(stream))
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(Exception):
            msg = await bus.js.get_msg(bus.stream(stream), seq)
            found.append(json.loads(msg.data))
    return found
