"""Where key material comes from: environment values or mounted files."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from marketbot.keyvault.domain.envelope import MasterKeyRing, VaultCryptoError
from marketbot.keyvault.domain.masterkeys import (
    MasterKeyFormatError,
    derive_from_passphrase,
    parse_master_keys,
)
from marketbot.keyvault.settings import KeyvaultSettings
from marketbot.runtime.sealing import key_id_for


class KeyMaterialError(RuntimeError):
    """Key configuration missing or unusable; the message names the setting, never a key."""


def load_keyring(settings: KeyvaultSettings) -> MasterKeyRing:
    keys: dict[int, bytes] = {}
    try:
        if settings.master_keys is not None:
            keys.update(parse_master_keys(settings.master_keys.get_secret_value()))
        if settings.master_keys_file is not None:
            for version, key in parse_master_keys(settings.master_keys_file.read_text()).items():
                if version in keys and keys[version] != key:
                    raise KeyMaterialError(f"master key {version} differs between env and file")
                keys[version] = key
        if settings.master_passphrase is not None:
            if not settings.master_passphrase_salt:
                raise KeyMaterialError("MARKETBOT_KEYVAULT_MASTER_PASSPHRASE_SALT is required")
            salt = base64.b64decode(settings.master_passphrase_salt, validate=True)
            version = settings.master_passphrase_version
            if version in keys:
                raise KeyMaterialError(f"master key {version} is configured twice")
            keys[version] = derive_from_passphrase(
                settings.master_passphrase.get_secret_value(),
                salt,
                settings.master_passphrase_iterations,
            )
    except (MasterKeyFormatError, binascii.Error, OSError) as exc:
        raise KeyMaterialError(f"master keys: {exc}") from exc
    if not keys:
        raise KeyMaterialError(
            "no master key: set MARKETBOT_KEYVAULT_MASTER_KEYS, _MASTER_KEYS_FILE or "
            "_MASTER_PASSPHRASE (marketbot-keyvault generate-master-key makes one)"
        )
    try:
        return MasterKeyRing(keys, min_decrypt_version=settings.min_decrypt_version)
    except VaultCryptoError as exc:
        raise KeyMaterialError(str(exc)) from exc


@dataclass(frozen=True)
class SealingKey:
    """The vault's X25519 key pair; ``key_id`` names the public half."""

    private: X25519PrivateKey
    public: bytes
    key_id: str

    def __repr__(self) -> str:
        return f"SealingKey(key_id={self.key_id})"

    @classmethod
    def from_private(cls, private: X25519PrivateKey) -> SealingKey:
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(private, public, key_id_for(public))

    @classmethod
    def generate(cls) -> SealingKey:
        return cls.from_private(X25519PrivateKey.generate())

    def private_b64(self) -> str:
        raw = self.private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(raw).decode()


def load_sealing_key(settings: KeyvaultSettings) -> SealingKey:
    text: str | None = None
    if settings.sealing_key is not None:
        text = settings.sealing_key.get_secret_value()
    elif settings.sealing_key_file is not None:
        try:
            text = settings.sealing_key_file.read_text()
        except OSError as exc:
            raise KeyMaterialError(f"sealing key file: {exc.strerror}") from exc
    if not text:
        raise KeyMaterialError(
            "no sealing key: set MARKETBOT_KEYVAULT_SEALING_KEY or _SEALING_KEY_FILE "
            "(marketbot-keyvault generate-sealing-key makes one)"
        )
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        if len(raw) != 32:
            raise ValueError("length")
        return SealingKey.from_private(X25519PrivateKey.from_private_bytes(raw))
    except ValueError as exc:
        raise KeyMaterialError("the sealing key must be 32 raw bytes, base64") from exc
