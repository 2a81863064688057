"""Passwords of people who sign in to the web app: argon2id, and the rules a password follows.

argon2-cffi's ``PasswordHasher`` uses argon2id with RFC 9106's low-memory profile (t=3,
m=64 MiB, p=4) by default; a stored hash carries its own parameters, so raising them later
only needs ``needs_rehash``. A sign-in against an unknown email still spends one hash, so
"no such user" and "wrong password" take the same time.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from marketbot.gateway.domain.errors import InvalidFieldError

MIN_LENGTH = 10
MAX_LENGTH = 256

_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("a password nobody has")


def check_password_rules(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidFieldError(
            "too_short", f"password must be at least {MIN_LENGTH} characters", "password"
        )
    if len(password) > MAX_LENGTH:
        raise InvalidFieldError(
            "too_long", f"password must be at most {MAX_LENGTH} characters", "password"
        )
    if password.strip() != password or not password.isprintable():
        raise InvalidFieldError(
            "invalid",
            "password must not start or end with spaces or contain control characters",
            "password",
        )


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _HASHER.hash(password)


def password_matches(password: str, stored_hash: str | None) -> bool:
    """Constant work whether or not there is a stored hash."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
