"""Clients of the vault for other services. Imports only contracts, runtime and exchanges.

* ``VaultSigner``: the exchange client's ``Signer`` backed by the vault (executors).
* ``SignBatcher``: coalesces the sign requests of concurrent orders into one NATS request.
* ``VaultClient``: register (sealing the secret), verify, revoke, status (the gateway).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from typing import Any

import structlog
from nats.errors import TimeoutError as NatsTimeoutError

from marketbot.contracts import ErrorDetail, Exchange, RejectReason
from marketbot.contracts.vault import (
    MAX_SIGN_BATCH,
    KeyStatusReply,
    KeyStatusRequest,
    RegisterKeyReply,
    RegisterKeyRequest,
    RevokeKeyRequest,
    SignBatchReply,
    SignBatchRequest,
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


class SignBatcher:
    """One NATS request for the sign requests an executor's concurrent orders make within
    one event-loop tick (a micro-batch, flushed on the next tick or at ``max_items``).

    Sign-only and send requests go in separate batches (each kind has its own timeout),
    and a batch of one goes as a plain ``SignRequest``. The vault answers each item of a
    ``SignBatchRequest`` as a request of its own (its own bounds, refusal and audit row,
    ``handlers.sign_batch``); each caller gets its own item's reply, or, when the batch's
    request failed on the bus, its own copy of that ``BusError`` (``VaultSigner`` maps it
    exactly as for a single request: a send whose answer was lost is an unknown outcome).
    A batch of sends is answered when its slowest send is: the requests reach the
    exchange as concurrently as before, their answers wait for each other.
    """

    def __init__(self, bus: Bus, *, max_items: int = MAX_SIGN_BATCH) -> None:
        if not 1 <= max_items <= MAX_SIGN_BATCH:
            raise ValueError(f"max_items must be within 1..{MAX_SIGN_BATCH}")
        self._bus = bus
        self._max = max_items
        self._pending: dict[tuple[Exchange, bool, float], list[_Waiting]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Requests sent to the vault (a batch of one included)."""

    async def ask(self, message: SignRequest, timeout: float) -> SignReply:
        loop = asyncio.get_running_loop()
        waiting = _Waiting(message, loop.create_future())
        key = (message.exchange, message.send, timeout)
        queue = self._pending.setdefault(key, [])
        queue.append(waiting)
        if len(queue) >= self._max:
            self._flush(key)
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush_all)
        return await waiting.future

    def _flush_all(self) -> None:
        self._scheduled = False
        for key in list(self._pending):
            self._flush(key)

    def _flush(self, key: tuple[Exchange, bool, float]) -> None:
        items = self._pending.pop(key)
        task = asyncio.create_task(self._request(key, items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request(self, key: tuple[Exchange, bool, float], items: list[_Waiting]) -> None:
        exchange, _, timeout = key
        self.batches += 1
        try:
            if len(items) == 1:
                replies: tuple[SignReply, ...] = (
                    await self._bus.request(items[0].message, SignReply, timeout=timeout),
                )
            else:
                batch = SignBatchRequest(
                    occurred_at=items[0].message.occurred_at,
                    correlation_id=f"signbatch-{uuid.uuid4()}",
                    exchange=exchange,
                    items=tuple(w.message for w in items),
                )
                reply = await self._bus.request(batch, SignBatchReply, timeout=timeout)
                replies = reply.results
                if not reply.ok or len(replies) != len(items):
                    error = reply.error or ErrorDetail(
                        code="internal", message="the vault answered the batch incompletely"
                    )
                    replies = tuple(SignReply(ok=False, error=error) for _ in items)
        except BusError as exc:
            for waiting in items:
                if not waiting.future.done():
                    copy = BusError(str(exc))
                    copy.__cause__ = exc.__cause__
                    waiting.future.set_exception(copy)
            return
        except Exception as exc:
            # as a single request raises it (e.g. an answer that does not decode)
            for waiting in items:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        except BaseException:
            # cancelled while waiting (shutting down): the sends may have gone, as when an
            # answer is lost (VaultSigner: unknown outcome)
            for waiting in items:
                if not waiting.future.done():
                    lost = BusError("the sign batch was abandoned before its answer")
                    lost.__cause__ = NatsTimeoutError()
                    waiting.future.set_exception(lost)
            raise
        for waiting, answer in zip(items, replies, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(answer)


class _Waiting:
    __slots__ = ("future", "message")

    def __init__(self, message: SignRequest, future: asyncio.Future[SignReply]) -> None:
        self.message = message
        self.future = future


class VaultSigner:
    """Signs through the vault: the secret never reaches this process.

    Raises ``SigningRefusedError`` (final) when the vault refuses the endpoint,
    ``Rejected`` with reason ``INVALID_KEY`` when the user has no usable key, and
    ``Retryable`` when the vault could not be reached (nothing was sent to the exchange).
    """

    __slots__ = (
        "_batcher",
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
        batcher: SignBatcher | None = None,
    ) -> None:
        """``send_timeout`` bounds a request the vault sends itself (its HTTP included);
        with ``batcher``, requests go to the vault in batches (shared by every signer of
        the process)."""
        self._bus = bus
        self._batcher = batcher
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
            if self._batcher is not None:
                reply = await self._batcher.ask(message, timeout)
            else:
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
