"""Bearer and webhook tokens: issued once, stored only as a hash, compared in constant time.

Tokens are 256-bit random values, so a single SHA-256 is enough to store them (no password
stretching is needed for secrets nobody chose); comparison uses ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token(prefix: str) -> str:
    """A fresh token such as ``mbu_...``; the prefix tells what it opens."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(token: str | None, stored_hash: str | None) -> bool:
    """Constant-time check of a presented token against a stored hash."""
    if not token or not stored_hash:
        # Still spend the same work, so absence and mismatch take the same time.
        hmac.compare_digest(hash_token(token or ""), "0" * 64)
        return False
    return hmac.compare_digest(hash_token(token), stored_hash)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
