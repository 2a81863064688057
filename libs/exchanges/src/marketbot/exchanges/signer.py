"""How a client obtains signatures without holding secrets.

The client builds the exact bytes it will send (``SigningInput``) and asks a ``Signer`` for
the signature. In production the signer is a thin NATS client of the key vault; the
``LocalSigner`` here is what the vault itself (and the tests) use.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from marketbot.contracts import Exchange


@dataclass(frozen=True, slots=True)
class SigningInput:
    """One request exactly as it will be sent: ``query`` and ``body`` are the sent bytes."""

    exchange: Exchange
    method: str
    path: str
    query: str
    body: str
    timestamp_ms: int
    recv_window_ms: int


@dataclass(frozen=True, slots=True)
class Signature:
    api_key: str
    signature: str


@dataclass(frozen=True, slots=True)
class OrderScope:
    """Which order request a signature is for, so the vault can bound it (docs/security.md).

    ``request_id``: the ``OrderRequested`` an entry (or a close) carries out. ``entries``:
    the client order ids of the entries a sell sells from (a close, an exit leg, a
    protection list). The vault signs an order only within that request's terms.
    """

    request_id: uuid.UUID | None = None
    entries: tuple[str, ...] = ()


_SCOPE: ContextVar[OrderScope | None] = ContextVar("marketbot_order_scope", default=None)


@contextlib.contextmanager
def order_scope(
    request_id: uuid.UUID | None = None, entries: tuple[str, ...] = ()
) -> Iterator[OrderScope]:
    """Every signature asked for inside this block names this order request / these entries."""
    scope = OrderScope(request_id, tuple(entries))
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def current_order_scope() -> OrderScope | None:
    return _SCOPE.get()


class Signer(Protocol):
    async def sign(self, request: SigningInput) -> Signature: ...


@dataclass(frozen=True, slots=True)
class SentResponse:
    """The exchange's answer to a request the vault signed and sent itself."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: str


@runtime_checkable
class Sender(Protocol):
    """A signer that does not hold the secret and, for the endpoints whose signatures never
    leave the vault (``EndpointRule.sent_by_vault``), has the vault sign *and send* them.

    ``user_id`` names the account for per-key rate-limit buckets (there is no API key on
    this side for such a request)."""

    user_id: str

    async def sign(self, request: SigningInput) -> Signature: ...

    async def send(self, request: SigningInput) -> SentResponse: ...


class LocalSigner:
    """Signs in-process with the secret (the vault's own signer, and tests').

    With ``enforce_policy`` (the default) it refuses anything the venue's signing policy
    refuses, exactly as the vault does.
    """

    __slots__ = ("_api_key", "_enforce", "_internal", "_secret")

    def __init__(
        self, api_key: str, secret: str, *, enforce_policy: bool = True, internal: bool = False
    ) -> None:
        """``internal``: the vault's own requests (key verification), which may also use
        the vault-only entries of the policy; such a signature never leaves the vault."""
        self._api_key = api_key
        self._secret = secret
        self._enforce = enforce_policy
        self._internal = internal

    @property
    def api_key(self) -> str:
        return self._api_key

    def __repr__(self) -> str:
        return f"LocalSigner(api_key={self._api_key[:4]}…)"

    async def sign(self, request: SigningInput) -> Signature:
        from marketbot.exchanges.signing import sign_request, signing_policy

        if self._enforce:
            # The holder of the secret sends what it signs itself: the endpoints the vault
            # sends (``sent_by_vault``) are signed here too.
            signing_policy(request.exchange).validate(
                request, internal=self._internal, sending=True
            )
        return Signature(
            api_key=self._api_key,
            signature=sign_request(request.exchange, self._secret, self._api_key, request),
        )
