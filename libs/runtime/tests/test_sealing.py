from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from marketbot.runtime.sealing import SealError, seal, seal_context, unseal


def _pair() -> tuple[X25519PrivateKey, bytes]:
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return private, public


def test_only_the_vault_key_and_the_same_context_open_a_sealed_secret() -> None:
    private, public = _pair()
    context = seal_context("u-1", "bybit", "KEY123")
    sealed = seal(public, "v1", "the-secret", context)
    assert "the-secret" not in sealed.model_dump_json()
    assert unseal(private, sealed, context) == "the-secret"
    with pytest.raises(SealError):
        unseal(private, sealed, seal_context("u-2", "bybit", "KEY123"))
    other, _ = _pair()
    with pytest.raises(SealError):
        unseal(other, sealed, context)
    tampered = sealed.model_copy(update={"ciphertext": sealed.nonce * 3})
    with pytest.raises(SealError):
        unseal(private, tampered, context)
