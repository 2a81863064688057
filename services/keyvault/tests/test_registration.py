"""Registration and verification against the simulator, revoke and status, over NATS."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from marketbot.contracts import Exchange
from marketbot.contracts.vault import RegisterKeyReply, RegisterKeyRequest
from marketbot.keyvault import handlers
from marketbot.keyvault.app import RunningVault
from marketbot.keyvault.client import VaultClient
from marketbot.runtime.bus import Bus
from marketbot.runtime.sealing import seal, seal_context
from marketbot.runtime.testing import eventually
from marketbot.sim.testing import RunningSim

from .conftest import VaultFactory
from .helpers import event_types, key_events

EXCHANGES = [Exchange.BYBIT, Exchange.BINANCE]


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_a_sealed_key_is_stored_verified_and_reported(
    vault: RunningVault,
    client: VaultClient,
    bus: Bus,
    make_key: Callable[..., Any],
    exchange: Exchange,
) -> None:
    key = await make_key(exchange, ips=["127.0.0.1"])
    reply = await client.register("user-1", exchange, key.api_key, key.secret)
    assert reply.ok, reply.error
    assert reply.key is not None
    assert reply.key.verified
    assert reply.key.enabled
    assert reply.key.active
    assert reply.key.masked_key == f"{key.api_key[:3]}***{key.api_key[-3:]}"
    assert reply.key.permissions is not None
    assert reply.key.permissions.can_trade
    assert not reply.key.permissions.can_withdraw
    assert reply.key.permissions.ip_bound

    assert await eventually(lambda: _has(bus, ["ApiKeyStored", "ApiKeyVerified"]), message="events")
    events = await key_events(bus)
    stored, verified = events
    assert stored["masked_key"] == reply.key.masked_key
    assert verified["credential_id"] == stored["credential_id"] == str(reply.key.credential_id)
    assert verified["warnings"] == []

    status = await client.status("user-1")
    assert [s.credential_id for s in status.keys] == [reply.key.credential_id]
    assert status.keys[0].verified_at is not None


async def _has(bus: Bus, types: list[str]) -> bool:
    return await event_types(bus) == types


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_a_key_that_can_withdraw_is_rejected(
    vault: RunningVault,
    client: VaultClient,
    bus: Bus,
    make_key: Callable[..., Any],
    exchange: Exchange,
) -> None:
    key = await make_key(exchange, withdraw=True, ips=["127.0.0.1"])
    reply = await client.register("user-w", exchange, key.api_key, key.secret)
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "withdraw_enabled"
    assert "withdraw" in reply.error.message
    assert reply.key is not None
    assert not reply.key.verified
    assert reply.key.permissions is not None
    assert reply.key.permissions.can_withdraw
    await eventually(lambda: _has(bus, ["ApiKeyStored", "ApiKeyRejected"]))
    rejected = (await key_events(bus))[1]
    assert rejected["reason_code"] == "withdraw_enabled"
    assert rejected["permissions"]["can_withdraw"] is True


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_a_key_that_cannot_trade_is_rejected(
    vault: RunningVault, client: VaultClient, make_key: Callable[..., Any], exchange: Exchange
) -> None:
    key = await make_key(exchange, trade=False)
    reply = await client.register("user-r", exchange, key.api_key, key.secret)
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "trade_disabled"


async def test_an_unbound_key_is_accepted_with_a_warning_by_default(
    vault: RunningVault, client: VaultClient, bus: Bus, make_key: Callable[..., Any]
) -> None:
    key = await make_key(Exchange.BYBIT)
    reply = await client.register("user-u", Exchange.BYBIT, key.api_key, key.secret)
    assert reply.ok
    assert reply.key is not None
    assert reply.key.permissions is not None
    assert not reply.key.permissions.ip_bound
    assert reply.key.status_message
    assert "IP" in reply.key.status_message
    await eventually(lambda: _has(bus, ["ApiKeyStored", "ApiKeyVerified"]))
    assert any("IP" in w for w in (await key_events(bus))[1]["warnings"])


async def test_an_unbound_key_is_rejected_when_the_policy_requires_binding(
    vaults: VaultFactory, client: VaultClient, make_key: Callable[..., Any]
) -> None:
    await vaults.start(require_ip_binding=True, egress_ips=("203.0.113.7",))
    key = await make_key(Exchange.BINANCE)
    reply = await client.register("user-s", Exchange.BINANCE, key.api_key, key.secret)
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "ip_unbound"
    assert "203.0.113.7" in reply.error.message


async def test_a_key_bound_to_another_ip_is_refused_by_the_exchange(
    vault: RunningVault, client: VaultClient, make_key: Callable[..., Any]
) -> None:
    key = await make_key(Exchange.BYBIT, ips=["198.51.100.1"])
    reply = await client.register("user-ip", Exchange.BYBIT, key.api_key, key.secret)
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "key_not_permitted"


async def test_a_wrong_secret_is_rejected_as_invalid(
    vault: RunningVault, client: VaultClient, make_key: Callable[..., Any]
) -> None:
    key = await make_key(Exchange.BYBIT, ips=["127.0.0.1"])
    wrong = key.secret[::-1]
    reply = await client.register("user-x", Exchange.BYBIT, key.api_key, wrong)
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "key_invalid"


async def test_formats_are_checked_per_field(vault: RunningVault, client: VaultClient) -> None:
    reply = await client.register("u", Exchange.BYBIT, "short", "x" * 36)
    assert reply.error is not None
    assert (reply.error.field, reply.error.code) == (
        "api_key",
        "bad_format",
    )
    reply = await client.register("u", Exchange.BYBIT, "A" * 18, "x" * 35)
    assert reply.error is not None
    assert (reply.error.field, reply.error.code) == (
        "secret",
        "bad_format",
    )
    assert "x" * 20 not in reply.error.message


async def test_a_sealed_secret_moved_to_another_registration_does_not_open(
    vault: RunningVault, client: VaultClient, bus: Bus
) -> None:
    key_id, public = await client.public_key()
    sealed = seal(public, key_id, "S" * 36, seal_context("victim", "bybit", "A" * 18))
    request = RegisterKeyRequest(
        occurred_at=vault.vault.clock.now(),
        correlation_id="c-1",
        user_id="attacker",
        exchange=Exchange.BYBIT,
        api_key="A" * 18,
        sealed_secret=sealed,
    )
    reply = await bus.request(request, RegisterKeyReply)
    assert reply.error is not None
    assert reply.error.field == "sealed_secret"
    assert reply.error.code == "unsealable"


async def test_revoke_disables_signing_and_emits_revoked(
    vault: RunningVault,
    client: VaultClient,
    bus: Bus,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    key = await make_key(Exchange.BYBIT, ips=["127.0.0.1"])
    assert (await client.register("user-v", Exchange.BYBIT, key.api_key, key.secret)).ok
    revoked = await client.revoke("user-v", Exchange.BYBIT, "user asked")
    assert revoked.ok
    assert revoked.key is not None
    assert not revoked.key.active
    await eventually(lambda: _has(bus, ["ApiKeyStored", "ApiKeyVerified", "ApiKeyRevoked"]))
    assert (await key_events(bus))[2]["reason"] == "user asked"
    assert (await client.status("user-v")).keys == ()
    again = await client.revoke("user-v", Exchange.BYBIT)
    assert again.error is not None
    assert again.error.code == "no_key"
    actions = [
        r["action"] for r in await migrated.fetch("SELECT action FROM audit_log ORDER BY id")
    ]
    assert actions == ["store", "verify", "revoke"]


async def test_registering_again_replaces_the_key(
    vault: RunningVault, client: VaultClient, bus: Bus, make_key: Callable[..., Any]
) -> None:
    first = await make_key(Exchange.BINANCE, ips=["127.0.0.1"])
    second = await make_key(Exchange.BINANCE, ips=["127.0.0.1"])
    a = await client.register("user-2", Exchange.BINANCE, first.api_key, first.secret)
    b = await client.register("user-2", Exchange.BINANCE, second.api_key, second.secret)
    assert a.ok
    assert b.ok
    assert a.key
    assert b.key
    status = await client.status("user-2", Exchange.BINANCE)
    assert [k.credential_id for k in status.keys] == [b.key.credential_id]
    await eventually(
        lambda: _has(
            bus,
            ["ApiKeyStored", "ApiKeyVerified", "ApiKeyRevoked", "ApiKeyStored", "ApiKeyVerified"],
        )
    )


async def test_verify_on_demand(
    vault: RunningVault, client: VaultClient, make_key: Callable[..., Any]
) -> None:
    missing = await client.verify("nobody", Exchange.BYBIT)
    assert missing.error is not None
    assert missing.error.code == "no_key"
    key = await make_key(Exchange.BYBIT, ips=["127.0.0.1"])
    first = await client.register("user-d", Exchange.BYBIT, key.api_key, key.secret)
    again = await client.verify("user-d", Exchange.BYBIT)
    assert again.ok
    assert again.key
    assert first.key
    assert again.key.verified_at
    assert first.key.verified_at
    assert again.key.verified_at >= first.key.verified_at


async def test_status_of_a_user_without_keys(vault: RunningVault, client: VaultClient) -> None:
    reply = await client.status("nobody")
    assert reply.ok
    assert reply.keys == ()


# --- least privilege: read and spot trading, nothing else (issue 14) ----------------------

EXCESS = {
    # user_apikey-info.mdx "permissions" groups
    Exchange.BYBIT: ["ContractTrade.Order", "Wallet.AccountTransfer", "Options.OptionsTrade"],
    # openapi.yaml GET /sapi/v1/account/apiRestrictions flags
    Exchange.BINANCE: ["enableMargin", "enableFutures", "permitsUniversalTransfer"],
}


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_a_key_that_can_do_more_than_spot_is_rejected_naming_each_permission(
    vault: RunningVault,
    client: VaultClient,
    bus: Bus,
    make_key: Callable[..., Any],
    exchange: Exchange,
) -> None:
    key = await make_key(exchange, ips=["127.0.0.1"], extra_permissions=EXCESS[exchange])
    reply = await client.register("user-x", exchange, key.api_key, key.secret)
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "excess_permissions"
    for permission in EXCESS[exchange]:
        assert permission in reply.error.message
    assert "remove each of these permissions" in reply.error.message
    assert reply.key is not None
    assert reply.key.permissions is not None
    assert set(reply.key.permissions.excess) == set(EXCESS[exchange])
    await eventually(lambda: _has(bus, ["ApiKeyStored", "ApiKeyRejected"]))
    rejected = (await key_events(bus))[1]
    assert rejected["reason_code"] == "excess_permissions"
    assert set(rejected["permissions"]["excess"]) == set(EXCESS[exchange])


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_a_key_that_gains_a_permission_is_disabled_at_reverification(
    vault: RunningVault,
    client: VaultClient,
    bus: Bus,
    sim: RunningSim,
    make_key: Callable[..., Any],
    exchange: Exchange,
) -> None:
    key = await make_key(exchange, ips=["127.0.0.1"])
    assert (await client.register("user-g", exchange, key.api_key, key.secret)).ok
    admin = sim.bybit_admin if exchange is Exchange.BYBIT else sim.binance_admin
    await admin.set_key_permissions(key.api_key, EXCESS[exchange][:1])
    assert await handlers.reverify_due(vault.vault, interval=timedelta(0)) == 1
    await eventually(lambda: _has(bus, ["ApiKeyStored", "ApiKeyVerified", "ApiKeyRejected"]))
    events = await key_events(bus)
    assert events[2]["reason_code"] == "excess_permissions"
    status = (await client.status("user-g")).keys[0]
    assert (status.enabled, status.verified) == (False, False)
