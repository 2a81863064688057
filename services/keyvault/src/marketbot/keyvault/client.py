"""Clients of the vault for other services. Imports only contracts, runtime and exchanges.

* ``VaultSigner``: the exchange client's ``Signer`` backed by the vault (executors).
* ``VaultClient``: register (sealing the secret), verify, revoke, status (the gateway).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

import structlog
from nats.errors import TimeoutError as NatsTimeoutError

from marketbot.contracts import Exchange, RejectReason
from marketbot.contracts.vault import (
    KeyStatusReply,
    KeyStatusRequest,
    RegisterKeyReply,
    RegisterKeyRequest,
    RevokeKeyRequest,
    SignReply,
    SignRequest,
    VaultPublicKeyReply,
    VaultPublicKeyRequest,
    VerifyKeyRequest,
)
from marketbot.exchanges.errors import OutcomeUnknown, Rejected, Retryable, SigningRefusedError
from marketbot.exchanges.signer import SentResponse, Signature, SigningInput, current_order_scope
from marketbot.runtime.bus import Bus, BusError
from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.sealing import seal, seal_context

# Refusals that are about the key, not the endpoint: the order cannot be signed for this user.
_KEY_REFUSALS = frozenset({"no_key", "key_disabled", "key_not_verified", "key_unreadable"})


def _correlation_id(explicit: str | None) -> str:
    if explicit:
        return explicit
    bound = structlog.contextvars.get_contextvars().get("correlation_id")
    return str(bound) if bound else f"keyvault-{uuid.uuid4()}"


class VaultSigner:
    """Signs through the vault: the secret never reaches this process.

    Raises ``SigningRefusedError`` (final) when the vault refuses the endpoint,
    ``Rejected`` with reason ``INVALID_KEY`` when the user has no usable key, and
    ``Retryable`` when the vault could not be reached (nothing was sent to the exchange).
    """

    __slots__ = (
        "_bus",
        "_clock",
        "_correlation",
        "_send_timeout",
        "_timeout",
        "exchange",
        "user_id",
    )

    def __init__(
        self,
        bus: Bus,
        user_id: str,
        exchange: Exchange,
        *,
        clock: Clock | None = None,
        timeout: float = 2.0,
        send_timeout: float = 15.0,
        correlation_id: str | None = None,
    ) -> None:
        """``send_timeout`` bounds a request the vault sends itself (its HTTP included)."""
        self._bus = bus
        self._send_timeout = send_timeout
        self.user_id = user_id
        self.exchange = exchange
        self._clock = clock or SystemClock()
        self._timeout = timeout
        self._correlation = correlation_id

    def __repr__(self) -> str:
        return f"VaultSigner(user_id={self.user_id!r}, exchange={self.exchange.value})"

    async def sign(self, request: SigningInput) -> Signature:
        reply = await self._ask(request, send=False)
        return Signature(api_key=reply.api_key, signature=reply.signature)

    async def send(self, request: SigningInput) -> SentResponse:
        """Have the vault sign and send ``request`` (the signature never leaves it).

        Raises as ``sign`` does for a refusal; ``Retryable`` when the request certainly did
        not reach the exchange; ``OutcomeUnknown`` when it may have (the vault's answer
        was lost, or its connection to the exchange failed after sending)."""
        reply = await self._ask(request, send=True)
        return SentResponse(status=reply.status, headers=reply.headers, body=reply.response)

    async def _ask(self, request: SigningInput, *, send: bool) -> SignReply:
        if request.exchange is not self.exchange:
            raise SigningRefusedError(
                f"this signer is for {self.exchange.value}, not {request.exchange.value}",
                exchange=request.exchange,
            )
        # The order request / entries the caller is working on (``order_scope``): the
        # vault bounds an order placement by them.
        scope = current_order_scope()
        message = SignRequest(
            occurred_at=self._clock.now(),
            correlation_id=_correlation_id(self._correlation),
            user_id=self.user_id,
            exchange=self.exchange,
            method=request.method,
            path=request.path,
            query=request.query,
            body=request.body,
            timestamp_ms=request.timestamp_ms,
            recv_window_ms=request.recv_window_ms,
            request_id=scope.request_id if scope else None,
            entries=scope.entries if scope else (),
            send=send,
        )
        timeout = self._send_timeout if send else self._timeout
        try:
            reply = await self._bus.request(message, SignReply, timeout=timeout)
        except BusError as exc:
            if send and isinstance(exc.__cause__, NatsTimeoutError):
                # the vault may have sent it before its answer was lost
                raise OutcomeUnknown(
                    f"key vault did not answer a request it sends: {exc}", exchange=self.exchange
                ) from exc
            raise Retryable(f"key vault unavailable: {exc}", exchange=self.exchange) from exc
        if reply.ok:
            return reply
        error = reply.error
        code = error.code if error else "internal"
        text = error.message if error else "the vault refused"
        if code in _KEY_REFUSALS:
            raise Rejected(text, reason=RejectReason.INVALID_KEY, exchange=self.exchange)
        if code in ("endpoint_refused", "invalid_request", "order_refused"):
            raise SigningRefusedError(text, exchange=self.exchange)
        if code == "outcome_unknown":
            raise OutcomeUnknown(f"key vault: {text}", exchange=self.exchange)
        if code == "order_request_unknown":
            # The vault has not stored the request from the stream yet: nothing was sent.
            raise Retryable(f"key vault: {text}", exchange=self.exchange)
        raise Retryable(f"key vault: {code}: {text}", exchange=self.exchange)


class VaultClient:
    """The gateway's side of registration: the secret is sealed before it leaves."""

    def __init__(self, bus: Bus, *, clock: Clock | None = None, timeout: float = 15.0) -> None:
        self._bus = bus
        self._clock = clock or SystemClock()
        self._timeout = timeout

    def _envelope(self, correlation_id: str | None) -> dict[str, Any]:
        return {"occurred_at": self._clock.now(), "correlation_id": _correlation_id(correlation_id)}

    async def public_key(self, correlation_id: str | None = None) -> tuple[str, bytes]:
        reply = await self._bus.request(
            VaultPublicKeyRequest(**self._envelope(correlation_id)),
            VaultPublicKeyReply,
            timeout=self._timeout,
        )
        try:
            raw = base64.b64decode(reply.public_key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BusError("the vault's public key is not base64") from exc
        if not reply.ok or len(raw) != 32:
            raise BusError("the vault did not give an X25519 public key")
        return reply.key_id, raw

    async def register(
        self,
        user_id: str,
        exchange: Exchange,
        api_key: str,
        api_secret: str,
        *,
        correlation_id: str | None = None,
    ) -> RegisterKeyReply:
        """Seal ``api_secret`` to the vault's public key and register it; then it is verified."""
        key_id, public = await self.public_key(correlation_id)
        sealed = seal(public, key_id, api_secret, seal_context(user_id, exchange.value, api_key))
        request = RegisterKeyRequest(
            **self._envelope(correlation_id),
            user_id=user_id,
            exchange=exchange,
            api_key=api_key,
            sealed_secret=sealed,
        )
        return await self._bus.request(request, RegisterKeyReply, timeout=self._timeout)

    async def verify(
        self, user_id: str, exchange: Exchange, *, correlation_id: str | None = None
    ) -> RegisterKeyReply:
        request = VerifyKeyRequest(
            **self._envelope(correlation_id), user_id=user_id, exchange=exchange
        )
        return await self._bus.request(request, RegisterKeyReply, timeout=self._timeout)

    async def revoke(
        self,
        user_id: str,
        exchange: Exchange,
        reason: str = "revoked by user",
        *,
        correlation_id: str | None = None,
    ) -> RegisterKeyReply:
        request = RevokeKeyRequest(
            **self._envelope(correlation_id), user_id=user_id, exchange=exchange, reason=reason
        )
        return await self._bus.request(request, RegisterKeyReply, timeout=self._timeout)

    async def status(
        self,
        user_id: str,
        exchange: Exchange | None = None,
        *,
        correlation_id: str | None = None,
    ) -> KeyStatusReply:
        request = KeyStatusRequest(
            **self._envelope(correlation_id), user_id=user_id, exchange=exchange
        )
        return await self._bus.request(request, KeyStatusReply, timeout=self._timeout)
