"""Sessions in a sealed, HTTP-only cookie; CSRF tokens; the sign-in rate limit.

The cookie holds the gateway session token (a subscriber's, from ``/auth/login``) or the
admin token (an operator's), the user id, a CSRF token and an expiry, sealed with
AES-256-GCM under ``SESSION_KEY``: the browser can neither read nor alter it, and no token
is ever in a URL, in a page or in browser storage. Forms carry the session's CSRF token (a
hidden field, or the ``X-CSRF-Token`` header for htmx requests); the sign-in forms, before any
session exists, use a double-submit cookie.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import os
import secrets
from dataclasses import asdict, dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_COOKIE = "mb_session"
LOGIN_CSRF_COOKIE = "mb_login_csrf"
_AAD = b"marketbot-web-session-v1"
_NONCE = 12

Kind = Literal["user", "operator"]


@dataclass(frozen=True)
class Session:
    kind: Kind
    token: str
    """The gateway bearer token this session acts with; never leaves the server."""
    user_id: str | None
    name: str
    csrf: str
    expires_at: float
    """Unix time."""

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            (presented or "").encode(), self.csrf.encode()
        )


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


class SessionCodec:
    def __init__(self, key: bytes | None = None) -> None:
        self._aead = AESGCM(key if key is not None else AESGCM.generate_key(bit_length=256))

    def seal(self, session: Session) -> str:
        nonce = os.urandom(_NONCE)
        data = json.dumps(asdict(session), separators=(",", ":")).encode()
        box = nonce + self._aead.encrypt(nonce, data, _AAD)
        return base64.urlsafe_b64encode(box).decode().rstrip("=")

    def open(self, value: str | None, now: float) -> Session | None:
        """The session in a cookie value, or None when absent, altered or expired."""
        if not value or len(value) > 4096:
            return None
        try:
            box = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            data = json.loads(self._aead.decrypt(box[:_NONCE], box[_NONCE:], _AAD))
            session = Session(**data)
        except (ValueError, TypeError, InvalidTag):
            return None
        if session.kind not in ("user", "operator") or session.expires_at <= now:
            return None
        return session


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest((a or "").encode(), (b or "").encode())


@dataclass
class _Bucket:
    tokens: float
    updated: float


class LoginLimiter:
    """A token bucket per client IP (the gateway adds one per email)."""

    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second = per_second
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> float:
        """0 when allowed, else the seconds to wait."""
        if len(self._buckets) > 100_000:
            self._buckets.clear()
        bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
        bucket.tokens = min(
            float(self.burst), bucket.tokens + max(0.0, now - bucket.updated) * self.per_second
        )
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.per_second


def client_ip(peer: str | None, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    """The peer, or with a trusted proxy in front, the right-most untrusted X-Forwarded-For."""
    peer = peer or "unknown"
    networks = [ipaddress.ip_network(t.strip(), strict=False) for t in trusted]

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in n for n in networks)

    if not forwarded_for or not is_trusted(peer):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not is_trusted(hop):
            return hop
    return peer
