"""Envelope encryption: associated data binds a ciphertext to its row; rotation; retirement."""

from __future__ import annotations

import base64
import dataclasses
import os
import uuid

import pytest

from marketbot.keyvault.domain.envelope import (
    Binding,
    DecryptionError,
    MasterKeyRing,
    RetiredMasterKeyError,
    UnknownMasterKeyError,
    VaultCryptoError,
    decrypt_secret,
    encrypt_secret,
    rewrap,
)
from marketbot.keyvault.domain.masterkeys import (
    MasterKeyFormatError,
    derive_from_passphrase,
    format_master_key,
    generate_master_key,
    parse_master_keys,
)

SECRET = "CANARYsecretCANARYsecretCANARYsecret"
K1, K2 = os.urandom(32), os.urandom(32)


def binding(**changes: object) -> Binding:
    base = Binding("user-1", "bybit", uuid.UUID(int=1))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_round_trip_uses_a_fresh_data_key_and_nonce_each_time() -> None:
    ring = MasterKeyRing({1: K1})
    a = encrypt_secret(ring, binding(), SECRET)
    b = encrypt_secret(ring, binding(), SECRET)
    assert a.ciphertext != b.ciphertext
    assert a.wrapped_key != b.wrapped_key
    assert SECRET.encode() not in a.ciphertext + a.wrapped_key
    assert decrypt_secret(ring, binding(), a) == SECRET
    assert a.master_version == 1
    assert SECRET not in repr(a)


@pytest.mark.parametrize(
    "other",
    [
        binding(user_id="user-2"),
        binding(exchange="binance"),
        binding(credential_id=uuid.UUID(int=2)),
    ],
    ids=["user", "exchange", "credential"],
)
def test_wrong_associated_data_fails(other: Binding) -> None:
    ring = MasterKeyRing({1: K1})
    stored = encrypt_secret(ring, binding(), SECRET)
    with pytest.raises(DecryptionError):
        decrypt_secret(ring, other, stored)


def test_a_ciphertext_moved_to_another_row_fails() -> None:
    ring = MasterKeyRing({1: K1})
    row_a, row_b = binding(), binding(credential_id=uuid.UUID(int=2))
    a = encrypt_secret(ring, row_a, SECRET)
    b = encrypt_secret(ring, row_b, "another-secret")
    # only the ciphertext moved (B's data key): wrong key and wrong AD
    with pytest.raises(DecryptionError):
        decrypt_secret(ring, row_b, dataclasses.replace(b, ciphertext=a.ciphertext))
    # ciphertext and wrapped key moved together: the wrapped key is bound to row A
    with pytest.raises(DecryptionError):
        decrypt_secret(ring, row_b, a)


def test_the_key_version_is_bound_too() -> None:
    ring = MasterKeyRing({1: K1, 2: K1})  # same bytes: only the AD differs
    stored = encrypt_secret(MasterKeyRing({1: K1}), binding(), SECRET)
    with pytest.raises(DecryptionError):
        decrypt_secret(ring, binding(), dataclasses.replace(stored, master_version=2))


def test_tampering_fails() -> None:
    ring = MasterKeyRing({1: K1})
    stored = encrypt_secret(ring, binding(), SECRET)
    flipped = bytearray(stored.ciphertext)
    flipped[-1] ^= 1
    with pytest.raises(DecryptionError):
        decrypt_secret(ring, binding(), dataclasses.replace(stored, ciphertext=bytes(flipped)))
    with pytest.raises(DecryptionError):
        decrypt_secret(ring, binding(), dataclasses.replace(stored, wrapped_key=b"short"))


def test_rotation_rewraps_the_data_key_and_keeps_the_ciphertext() -> None:
    old = encrypt_secret(MasterKeyRing({1: K1}), binding(), SECRET)
    ring = MasterKeyRing({1: K1, 2: K2})
    new = rewrap(ring, binding(), old)
    assert new.master_version == 2
    assert new.ciphertext == old.ciphertext
    assert new.wrapped_key != old.wrapped_key
    retired = MasterKeyRing({1: K1, 2: K2}, min_decrypt_version=2)
    assert decrypt_secret(retired, binding(), new) == SECRET
    with pytest.raises(RetiredMasterKeyError):
        decrypt_secret(retired, binding(), old)
    with pytest.raises(UnknownMasterKeyError):
        decrypt_secret(MasterKeyRing({2: K2}), binding(), old)
    # a KEK of the wrong bytes under the right version number fails too
    with pytest.raises(DecryptionError):
        decrypt_secret(MasterKeyRing({2: K1}), binding(), new)


def test_ring_validation() -> None:
    with pytest.raises(VaultCryptoError):
        MasterKeyRing({})
    with pytest.raises(VaultCryptoError):
        MasterKeyRing({1: b"short"})
    with pytest.raises(VaultCryptoError):
        MasterKeyRing({1: K1}, min_decrypt_version=2)
    ring = MasterKeyRing({3: K1, 1: K2})
    assert ring.current_version == 3
    assert "versions=[1, 3]" in repr(ring)
    assert base64.b64encode(K1).decode() not in repr(ring)


def test_parse_master_keys() -> None:
    k1, k2 = generate_master_key(), generate_master_key()
    text = f"# keys\n{format_master_key(1, k1)}\n{format_master_key(2, k2)}"
    assert parse_master_keys(text) == {1: k1, 2: k2}
    assert parse_master_keys(f"{format_master_key(1, k1)},{format_master_key(2, k2)}") == {
        1: k1,
        2: k2,
    }


@pytest.mark.parametrize(
    "text",
    ["1:not base64!", f"1:{base64.b64encode(b'x' * 16).decode()}", "nonsense", "0:" + "A" * 44],
)
def test_bad_master_keys_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(MasterKeyFormatError) as caught:
        parse_master_keys(text)
    assert text.split(":")[-1] not in str(caught.value) or len(text.split(":")[-1]) < 8


def test_duplicate_versions_are_refused() -> None:
    entry = format_master_key(1, generate_master_key())
    with pytest.raises(MasterKeyFormatError):
        parse_master_keys(f"{entry},{entry}")


def test_passphrase_derivation() -> None:
    salt = b"0123456789abcdef"
    with pytest.raises(MasterKeyFormatError):
        derive_from_passphrase("a long passphrase here", salt, iterations=100_000)
    with pytest.raises(MasterKeyFormatError):
        derive_from_passphrase("a long passphrase here", b"short")
    with pytest.raises(MasterKeyFormatError):
        derive_from_passphrase("short", salt)
    key = derive_from_passphrase("a long passphrase here", salt)
    assert len(key) == 32
    assert key == derive_from_passphrase("a long passphrase here", salt)
