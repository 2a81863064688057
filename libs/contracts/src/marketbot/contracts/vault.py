"""Request/reply with the key vault: registration, verification, status and signing."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import AwareDatetime, Field

from marketbot.contracts.enums import Exchange
from marketbot.contracts.envelope import Message, Reply, Request
from marketbot.contracts.keys import KeyPermissions
from marketbot.contracts.orders import ClientOrderId


class SealedSecret(Message):
    """A secret sealed to the vault's public key (X25519 + HKDF-SHA256 + AES-256-GCM).

    Only the vault's private key opens it, so it is unreadable on the bus and in the gateway.
    All byte fields are base64 (standard alphabet).
    """

    key_id: str = Field(description="which vault public key it was sealed to")
    ephemeral_public_key: str
    nonce: str
    ciphertext: str


class VaultPublicKeyRequest(Request):
    TYPE = "VaultPublicKeyRequest"
    SUBJECT = "keyvault.public_key"


class VaultPublicKeyReply(Reply):
    key_id: str = ""
    public_key: str = Field(default="", description="raw X25519 public key, base64")


class RegisterKeyRequest(Request):
    TYPE = "RegisterKeyRequest"
    SUBJECT = "keyvault.register"

    user_id: str = Field(min_length=1, max_length=64)
    exchange: Exchange
    api_key: str = Field(min_length=1, max_length=256)
    sealed_secret: SealedSecret


class KeyStatus(Message):
    credential_id: uuid.UUID
    user_id: str
    exchange: Exchange
    masked_key: str
    active: bool
    enabled: bool
    verified: bool
    verified_at: AwareDatetime | None = None
    last_used_at: AwareDatetime | None = None
    permissions: KeyPermissions | None = None
    status_message: str | None = None


class RegisterKeyReply(Reply):
    key: KeyStatus | None = None


class VerifyKeyRequest(Request):
    TYPE = "VerifyKeyRequest"
    SUBJECT = "keyvault.verify"

    user_id: str
    exchange: Exchange


class RevokeKeyRequest(Request):
    TYPE = "RevokeKeyRequest"
    SUBJECT = "keyvault.revoke"

    user_id: str
    exchange: Exchange
    reason: str = "revoked by user"


class KeyStatusRequest(Request):
    TYPE = "KeyStatusRequest"
    SUBJECT = "keyvault.status"

    user_id: str
    exchange: Exchange | None = None


class KeyStatusReply(Reply):
    keys: tuple[KeyStatus, ...] = ()


class SignRequest(Request):
    """Ask the vault to sign one exchange request for one user.

    ``query`` and ``body`` are exactly the bytes that will be sent (decoded as UTF-8); the
    vault builds the exchange's pre-sign string from them itself.

    v2 adds ``request_id`` and ``entries``: an order placement is signed only within the
    order request it carries out (an entry) or the entries it sells from (a sell); and
    ``send``: the vault sends the signed request to the exchange itself and answers with
    the exchange's response, so the signature never leaves it (the endpoints no parameter
    binds: ``EndpointRule.sent_by_vault``, docs/security.md).
    """

    TYPE = "SignRequest"
    VERSION = 2
    SUBJECT = "keyvault.sign"
    SUBJECT_FIELD = "exchange"

    user_id: str
    exchange: Exchange
    method: Literal["GET", "POST", "DELETE", "PUT"]
    path: str = Field(max_length=256)
    query: str = Field(default="", max_length=16384)
    body: str = Field(default="", max_length=65536)
    timestamp_ms: int = Field(ge=0)
    recv_window_ms: int = Field(default=5000, ge=1, le=60000)
    request_id: uuid.UUID | None = Field(
        default=None, description="the OrderRequested an order placement carries out"
    )
    entries: tuple[ClientOrderId, ...] = Field(
        default=(),
        max_length=100,
        description="client order ids of the entries a sell sells from (close, exit, protection)",
    )
    send: bool = Field(default=False, description="the vault signs and sends it itself")

    def request_subject(self) -> str:
        """``keyvault.sign.<exchange>``: the server lets each executor ask only for its own
        exchange (marketbot.contracts.access); the vault checks the body matches."""
        return f"{self.SUBJECT}.{self.exchange.value}"


class SignReply(Reply):
    """A signature, or (``send``) the exchange's response to the request the vault sent."""

    api_key: str = ""
    signature: str = ""
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    response: str = Field(default="", max_length=4_000_000)


MAX_SIGN_BATCH = 256
"""Sign requests one ``SignBatchRequest`` carries at most."""


class SignBatchRequest(Request):
    """Several sign requests in one NATS request: an executor's vault client coalesces the
    requests its concurrent orders make within one event-loop tick (or ``MAX_SIGN_BATCH``).

    Each item is a whole ``SignRequest`` (at its current version) and the vault handles it
    exactly as if it had come on its own: its endpoint rule, clock check, key, its own
    order request's bounds (an entry within its ``OrderRequested``, a sell within its
    entries) and its audit row. One item's refusal refuses that item only. Every item names
    the batch's exchange (the subject names it too, as for a single request).
    """

    TYPE = "SignBatchRequest"
    VERSION = 1
    SUBJECT = "keyvault.signbatch"
    SUBJECT_FIELD = "exchange"

    exchange: Exchange
    items: tuple[SignRequest, ...] = Field(min_length=1, max_length=MAX_SIGN_BATCH)

    def request_subject(self) -> str:
        """``keyvault.signbatch.<exchange>``: like ``keyvault.sign.<exchange>``, an executor
        may ask only on its own exchange's subject."""
        return f"{self.SUBJECT}.{self.exchange.value}"


class SignBatchReply(Reply):
    """One ``SignReply`` per item, in the items' order (each with its own ok/error)."""

    results: tuple[SignReply, ...] = ()
