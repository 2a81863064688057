"""Master key material: parsing ``version:base64`` lists, generating keys, passphrases."""

from __future__ import annotations

import base64
import binascii
import os
import re

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from marketbot.keyvault.domain.envelope import KEY_BYTES, VaultCryptoError

MIN_PBKDF2_ITERATIONS = 600_000
MIN_SALT_BYTES = 16
_ENTRY = re.compile(r"^\s*(\d{1,6})\s*:\s*([A-Za-z0-9+/=_-]+)\s*$")


class MasterKeyFormatError(VaultCryptoError):
    """Master key configuration that cannot be used (the message never shows the key)."""


def generate_master_key() -> bytes:
    return os.urandom(KEY_BYTES)


def format_master_key(version: int, key: bytes) -> str:
    return f"{version}:{base64.b64encode(key).decode()}"


def parse_master_keys(text: str) -> dict[int, bytes]:
    """``"1:<base64>,2:<base64>"`` (commas or newlines; ``#`` starts a comment line)."""
    keys: dict[int, bytes] = {}
    entries = [
        e for line in text.splitlines() if not line.strip().startswith("#") for e in line.split(",")
    ]
    for position, entry in enumerate(entries, start=1):
        if not entry.strip():
            continue
        match = _ENTRY.match(entry)
        if not match:
            raise MasterKeyFormatError(
                f"master key entry {position} is not '<version>:<base64 of 32 bytes>'"
            )
        version = int(match.group(1))
        try:
            key = base64.b64decode(
                match.group(2).replace("-", "+").replace("_", "/"), validate=True
            )
        except (binascii.Error, ValueError) as exc:
            raise MasterKeyFormatError(f"master key {version} is not valid base64") from exc
        if len(key) != KEY_BYTES:
            raise MasterKeyFormatError(
                f"master key {version} is {len(key)} bytes; it must be 32 (256 random bits)"
            )
        if version in keys:
            raise MasterKeyFormatError(f"master key version {version} appears twice")
        if version < 1:
            raise MasterKeyFormatError("master key versions start at 1")
        keys[version] = key
    return keys


def derive_from_passphrase(
    passphrase: str, salt: bytes, iterations: int = MIN_PBKDF2_ITERATIONS
) -> bytes:
    """A 256-bit master key from a passphrase: PBKDF2-HMAC-SHA256, >= 600,000 iterations."""
    if iterations < MIN_PBKDF2_ITERATIONS:
        raise MasterKeyFormatError(f"PBKDF2 needs at least {MIN_PBKDF2_ITERATIONS} iterations")
    if len(salt) < MIN_SALT_BYTES:
        raise MasterKeyFormatError(f"the passphrase salt must be at least {MIN_SALT_BYTES} bytes")
    if len(passphrase) < 12:
        raise MasterKeyFormatError("the master passphrase must be at least 12 characters")
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, iterations=iterations)
    return kdf.derive(passphrase.encode())
