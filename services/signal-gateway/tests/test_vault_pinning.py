"""With the vault's public key pinned, nothing on the bus can make the gateway seal to another."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from marketbot.contracts import Exchange
from marketbot.contracts.vault import (
    RegisterKeyReply,
    RegisterKeyRequest,
    VaultPublicKeyReply,
    VaultPublicKeyRequest,
)
from marketbot.gateway.adapters.services import VaultClient
from marketbot.gateway.settings import GatewaySettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.sealing import key_id_for, seal_context, unseal


def _raw(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


async def test_a_rogue_public_key_on_the_bus_is_never_used(bus: Bus) -> None:
    vault, rogue = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    captured: list[RegisterKeyRequest] = []

    async def rogue_public_key(_: VaultPublicKeyRequest) -> VaultPublicKeyReply:
        return VaultPublicKeyReply(
            key_id="rogue", public_key=base64.b64encode(_raw(rogue)).decode()
        )

    async def register(request: RegisterKeyRequest) -> RegisterKeyReply:
        captured.append(request)
        return RegisterKeyReply()

    await bus.serve(VaultPublicKeyRequest, VaultPublicKeyReply, rogue_public_key)
    await bus.serve(RegisterKeyRequest, RegisterKeyReply, register)
    settings = GatewaySettings.model_validate(
        {"vault_public_key": base64.b64encode(_raw(vault)).decode()}
    )
    client = VaultClient(bus, 5.0, settings.pinned_vault_key())
    now = datetime.now(UTC)
    await client.register("u-1", Exchange.BYBIT, "APIKEY12345678", "s3cret-value", now, "c-1")

    (request,) = captured
    assert request.sealed_secret.key_id == key_id_for(_raw(vault))
    context = seal_context("u-1", "bybit", "APIKEY12345678")
    assert unseal(vault, request.sealed_secret, context) == "s3cret-value"


def test_a_malformed_pinned_key_is_refused_at_start() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="32-byte X25519"):
        GatewaySettings.model_validate({"vault_public_key": base64.b64encode(b"short").decode()})


def test_a_transient_vault_refusal_is_a_503_not_a_client_error() -> None:
    from marketbot.contracts import ErrorDetail
    from marketbot.gateway.api.context import refused

    unreachable = RegisterKeyReply(
        ok=False,
        error=ErrorDetail(
            code="verification_unavailable",
            message="the exchange could not be reached to check this key; it will be checked again",
        ),
    )
    error = refused(unreachable, "key vault")
    assert error is not None
    assert error.status == 503
    assert error.code == "verification_unavailable"
    withdraw = RegisterKeyReply(
        ok=False, error=ErrorDetail(code="withdraw_enabled", message="this key can withdraw")
    )
    client_mistake = refused(withdraw, "key vault")
    assert client_mistake is not None
    assert client_mistake.status == 422
