"""Envelope encryption of API secrets.

Each credential gets a fresh 256-bit data key (DEK). The secret is encrypted under the DEK
with AES-256-GCM (96-bit random nonce); the DEK is wrapped under a versioned master key
(KEK), also with AES-256-GCM. Both carry associated data binding them to their row:

* the secret ciphertext to ``(user id, exchange, credential id)``;
* the wrapped DEK to ``(user id, exchange, credential id, master key version)``.

A ciphertext, a wrapped key, or both copied to another row fail to decrypt, and so does a
row whose master key version was edited. Rotation unwraps the DEK under the old master key
and wraps it under the newest one: the secret ciphertext is untouched and the secret is never
decrypted. Master key versions below ``min_decrypt_version`` are retired and refused.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
_TAG = "marketbot-keyvault-v1"


class VaultCryptoError(Exception):
    """Base of the envelope's errors. Messages never contain key material."""


class DecryptionError(VaultCryptoError):
    """A ciphertext did not open: wrong key, wrong row (associated data) or tampered."""


class UnknownMasterKeyError(VaultCryptoError):
    """The row was wrapped under a master key version this process does not hold."""


class RetiredMasterKeyError(VaultCryptoError):
    """The row was wrapped under a master key version below the minimum decryption version."""


class MasterKeyRing:
    """The versioned master keys; the highest version wraps new data keys."""

    __slots__ = ("_keys", "min_decrypt_version")

    def __init__(self, keys: Mapping[int, bytes], *, min_decrypt_version: int = 1) -> None:
        if not keys:
            raise VaultCryptoError("at least one master key is required")
        for version, key in keys.items():
            if version < 1:
                raise VaultCryptoError(f"master key version must be >= 1, got {version}")
            if len(key) != KEY_BYTES:
                raise VaultCryptoError(f"master key {version} must be 32 bytes (256 bits)")
        if min_decrypt_version > max(keys):
            raise VaultCryptoError(
                f"min_decrypt_version {min_decrypt_version} retires every master key "
                f"(newest is {max(keys)})"
            )
        self._keys = dict(keys)
        self.min_decrypt_version = min_decrypt_version

    def __repr__(self) -> str:
        return f"MasterKeyRing(versions={sorted(self._keys)}, min={self.min_decrypt_version})"

    @property
    def current_version(self) -> int:
        return max(self._keys)

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(sorted(self._keys))

    def for_wrapping(self) -> tuple[int, bytes]:
        version = self.current_version
        return version, self._keys[version]

    def for_unwrapping(self, version: int) -> bytes:
        if version < self.min_decrypt_version:
            raise RetiredMasterKeyError(
                f"master key version {version} is retired (minimum {self.min_decrypt_version})"
            )
        key = self._keys.get(version)
        if key is None:
            raise UnknownMasterKeyError(f"master key version {version} is not configured")
        return key


@dataclass(frozen=True, slots=True)
class Binding:
    """The row a credential's ciphertexts belong to."""

    user_id: str
    exchange: str
    credential_id: uuid.UUID

    def secret_ad(self) -> bytes:
        return _ad("secret", self.user_id, self.exchange, str(self.credential_id))

    def wrap_ad(self, master_version: int) -> bytes:
        return _ad("dek", self.user_id, self.exchange, str(self.credential_id), master_version)


def _ad(kind: str, *parts: str | int) -> bytes:
    # JSON of a list is unambiguous: no field can run into the next.
    return json.dumps([_TAG, kind, *parts], separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class EncryptedSecret:
    """What is stored: nothing here is plaintext. Byte fields are nonce || AES-GCM output."""

    master_version: int
    wrapped_key: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"EncryptedSecret(master_version={self.master_version}, …)"


def _seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def _open(key: bytes, blob: bytes, ad: bytes, what: str) -> bytes:
    if len(blob) < NONCE_BYTES + 16:
        raise DecryptionError(f"{what} is truncated")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], ad)
    except InvalidTag as exc:
        raise DecryptionError(f"{what} does not open for this row and key") from exc


def encrypt_secret(ring: MasterKeyRing, binding: Binding, secret: str) -> EncryptedSecret:
    """Encrypt ``secret`` under a fresh data key wrapped by the newest master key."""
    data_key = AESGCM.generate_key(bit_length=256)
    version, master = ring.for_wrapping()
    return EncryptedSecret(
        master_version=version,
        wrapped_key=_seal(master, data_key, binding.wrap_ad(version)),
        ciphertext=_seal(data_key, secret.encode(), binding.secret_ad()),
    )


def _unwrap(ring: MasterKeyRing, binding: Binding, stored: EncryptedSecret) -> bytes:
    master = ring.for_unwrapping(stored.master_version)
    data_key = _open(master, stored.wrapped_key, binding.wrap_ad(stored.master_version), "data key")
    if len(data_key) != KEY_BYTES:
        raise DecryptionError("data key has the wrong length")
    return data_key


def decrypt_secret(ring: MasterKeyRing, binding: Binding, stored: EncryptedSecret) -> str:
    data_key = _unwrap(ring, binding, stored)
    return _open(data_key, stored.ciphertext, binding.secret_ad(), "secret").decode()


def rewrap(ring: MasterKeyRing, binding: Binding, stored: EncryptedSecret) -> EncryptedSecret:
    """The same ciphertext with its data key wrapped under the newest master key.

    Only the data key passes through memory; the secret itself is never decrypted.
    """
    data_key = _unwrap(ring, binding, stored)
    version, master = ring.for_wrapping()
    return EncryptedSecret(
        master_version=version,
        wrapped_key=_seal(master, data_key, binding.wrap_ad(version)),
        ciphertext=stored.ciphertext,
    )
