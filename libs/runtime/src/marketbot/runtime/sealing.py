"""Sealing a secret to the key vault's public key (an ECIES-style sealed box).

The gateway calls ``seal`` with the vault's X25519 public key; only the vault, holding the
private key, can ``unseal``. Construction: a fresh ephemeral X25519 key pair per message;
the shared secret goes through HKDF-SHA256 (salt = ephemeral public || recipient public,
info = "marketbot-seal-v1" || context) to a 256-bit AES-GCM key; 96-bit random nonce;
``context`` (e.g. user id and exchange) is bound as associated data, so a sealed secret
moved to another user's registration fails to open.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from marketbot.contracts.vault import SealedSecret

INFO = b"marketbot-seal-v1"


class SealError(ValueError):
    """The sealed secret could not be opened (wrong key, wrong context, or tampered)."""


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=INFO + context
    ).derive(shared)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise SealError(f"{name}: not valid base64") from exc


def seal(recipient_public_key: bytes, key_id: str, plaintext: str, context: str) -> SealedSecret:
    recipient = X25519PublicKey.from_public_bytes(recipient_public_key)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    key = _derive(
        ephemeral.exchange(recipient), ephemeral_raw, recipient_public_key, context.encode()
    )
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
    return SealedSecret(
        key_id=key_id,
        ephemeral_public_key=_b64(ephemeral_raw),
        nonce=_b64(nonce),
        ciphertext=_b64(ciphertext),
    )


def unseal(private_key: X25519PrivateKey, sealed: SealedSecret, context: str) -> str:
    recipient_raw = _raw(private_key.public_key())
    ephemeral_raw = _unb64(sealed.ephemeral_public_key, "ephemeral_public_key")
    nonce = _unb64(sealed.nonce, "nonce")
    if len(ephemeral_raw) != 32 or len(nonce) != 12:
        raise SealError("sealed secret: malformed key or nonce length")
    ephemeral = X25519PublicKey.from_public_bytes(ephemeral_raw)
    key = _derive(private_key.exchange(ephemeral), ephemeral_raw, recipient_raw, context.encode())
    try:
        plaintext = AESGCM(key).decrypt(
            nonce, _unb64(sealed.ciphertext, "ciphertext"), context.encode()
        )
    except InvalidTag as exc:
        raise SealError("sealed secret does not open with this vault key and context") from exc
    return plaintext.decode()


def key_id_for(public_key: bytes) -> str:
    """The id of a vault sealing key: ``x25519:`` + 16 hex chars of its SHA-256."""
    return "x25519:" + hashlib.sha256(public_key).hexdigest()[:16]


def seal_context(user_id: str, exchange: str, api_key: str) -> str:
    """The associated data binding a sealed secret to one registration."""
    return f"{user_id}|{exchange}|{api_key}"
