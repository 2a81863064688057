"""What every route needs (the ``Gateway``), and who is calling (admin or one user)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from marketbot.contracts import ErrorDetail, Reply, SignalReceived
from marketbot.gateway.adapters.deadletters import DeadLetters
from marketbot.gateway.adapters.feed import JetStreamFeed
from marketbot.gateway.adapters.marks import MarkPrices
from marketbot.gateway.adapters.repository import Repository
from marketbot.gateway.adapters.services import LedgerClient, VaultClient
from marketbot.gateway.adapters.sessions import SessionStore
from marketbot.gateway.api.errors import ApiError
from marketbot.gateway.domain.auth import hash_token, token_matches
from marketbot.gateway.domain.network import IpPolicy
from marketbot.gateway.domain.ratelimit import RateLimiter
from marketbot.gateway.push import Hub
from marketbot.gateway.settings import GatewaySettings
from marketbot.runtime.bus import Bus, BusError
from marketbot.runtime.clock import Clock
from marketbot.runtime.consumer import Outbox

SignalPublisher = Callable[[SignalReceived], Awaitable[bool]]
"""Publishes a signal durably; returns True when JetStream already had it."""

SOURCE_CACHE_SECONDS = 5.0
R = TypeVar("R", bound=Reply)


@dataclass
class Gateway:
    settings: GatewaySettings
    repo: Repository
    outbox: Outbox
    clock: Clock
    publish_signal: SignalPublisher
    vault: VaultClient
    ledger: LedgerClient
    hub: Hub
    feed: JetStreamFeed | None
    ip_policy: IpPolicy
    limiter: RateLimiter
    admin_token_hash: str | None
    static_sources: dict[str, str]
    dead_letters: DeadLetters
    login_limiter: RateLimiter | None = None
    """Sign-in attempts per email (``/auth/login``)."""
    bus: Bus | None = None
    marks: MarkPrices | None = None
    """Mark prices of open positions (``MARKET_DATA_URLS``); None: positions are unpriced."""
    _source_cache: dict[str, tuple[float, str | None]] = field(default_factory=dict)

    async def source_token_hash(self, name: str) -> str | None:
        """The stored hash of a source's token: settings first, then the table (cached)."""
        if name in self.static_sources:
            return self.static_sources[name]
        now = self.clock.monotonic()
        cached = self._source_cache.get(name)
        if cached is not None and now - cached[0] < SOURCE_CACHE_SECONDS:
            return cached[1]
        row = await self.repo.get_source(name)
        token_hash = row.token_hash if row else None
        if len(self._source_cache) > 10_000:
            self._source_cache.clear()
        self._source_cache[name] = (now, token_hash)
        return token_hash

    def forget_source(self, name: str) -> None:
        self._source_cache.pop(name, None)


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def request_id(request: Request) -> str:
    """The correlation id of what this request causes: the caller's X-Request-ID or a new one."""
    given = request.headers.get("x-request-id", "")
    if given and len(given) <= 64 and given.isascii() and given.isprintable():
        return given
    return f"req-{uuid.uuid4()}"


@dataclass(frozen=True)
class Caller:
    user_id: str | None
    is_admin: bool
    session: bool = False
    """Signed in with a session token from ``/auth/login`` (not the user's API token)."""

    def may_reach(self, user_id: str) -> bool:
        return self.is_admin or self.user_id == user_id


bearer_scheme = HTTPBearer(auto_error=False, description="an admin token or a user's token")


async def authenticate(gw: Gateway, token: str | None) -> Caller:
    if not token:
        raise ApiError(
            401,
            "missing_token",
            "send Authorization: Bearer <token>",
            "authorization",
            {"WWW-Authenticate": "Bearer"},
        )
    if gw.admin_token_hash is not None and token_matches(token, gw.admin_token_hash):
        return Caller(None, True)
    found = await gw.repo.user_by_token_hash(hash_token(token))
    if found is not None and token_matches(token, found[1]):
        return Caller(found[0].user_id, False)
    session = await SessionStore(gw.repo.pool).user_for(hash_token(token), gw.clock.now())
    if session is None or not token_matches(token, session[1]):
        raise ApiError(
            401,
            "invalid_token",
            "the token is not valid",
            "authorization",
            {"WWW-Authenticate": "Bearer"},
        )
    return Caller(session[0], False, session=True)


async def caller(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),  # noqa: B008
) -> Caller:
    token = credentials.credentials if credentials is not None else None
    return await authenticate(gateway(request), token)


async def admin(who: Caller = Depends(caller)) -> Caller:  # noqa: B008
    if not who.is_admin:
        raise ApiError(403, "admin_only", "this needs the admin token", "authorization")
    return who


def check_owner(who: Caller, user_id: str) -> None:
    """Every per-user object is reached only by its owner (or an admin)."""
    if not who.may_reach(user_id):
        raise ApiError(403, "not_owner", "this token may only reach its own account", "user_id")


TRANSIENT = frozenset({"verification_unavailable"})
"""Peer refusals caused by something outside the request (an exchange unreachable)."""


def refused(reply: Reply, service: str) -> ApiError | None:
    """A peer's ``ok=False`` as the HTTP error the caller should see."""
    if reply.ok:
        return None
    error = reply.error or ErrorDetail(code="refused", message=f"the {service} refused")
    if error.code in ("internal", "unavailable", "timeout"):
        return ApiError(503, "unavailable", f"the {service} failed: {error.message}", error.field)
    if error.code in TRANSIENT:
        # Nothing is wrong with the request: the exchange could not be asked. The key is
        # stored and checked again; the caller may retry now.
        return ApiError(503, error.code, error.message, error.field, {"Retry-After": "5"})
    status = 404 if error.code in ("not_found", "unknown_key", "no_key") else 422
    return ApiError(status, error.code, error.message, error.field)


async def ask(request: Awaitable[R], service: str = "ledger") -> R:
    """A request to a peer service; no answer is a 503 the caller may retry."""
    try:
        reply = await request
    except BusError as exc:
        raise ApiError(
            503, "unavailable", f"the {service} did not answer; retry", None, {"Retry-After": "1"}
        ) from exc
    if (error := refused(reply, service)) is not None:
        raise error
    return reply
