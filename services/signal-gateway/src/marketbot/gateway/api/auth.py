"""Sign-in for people: email + password (argon2id) gives a session token that expires.

``POST /auth/login`` is limited per email (a token bucket: ``LOGIN_ATTEMPTS_BURST`` in a row,
then ``LOGIN_ATTEMPTS_PER_MINUTE``); a wrong email and a wrong password get the same answer
in the same time. The session token is a bearer token like the user's API token (every user
route and ``/ws`` take it, with the same ownership checks), stored only as its SHA-256, and
ends at ``expires_at`` or at ``POST /auth/logout``. The operator sets a user's password with
``PUT /admin/users/{user_id}/password``, which also ends every session of that user.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, SecretStr

from marketbot.gateway.adapters.sessions import SessionStore
from marketbot.gateway.api.context import Caller, Gateway, admin, caller, gateway
from marketbot.gateway.api.errors import ERROR_SCHEMA, ApiError
from marketbot.gateway.api.models import Body
from marketbot.gateway.domain.auth import bearer, hash_token, new_token
from marketbot.gateway.domain.passwords import hash_password, password_matches
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.gateway.auth")

router = APIRouter(tags=["sign-in"], responses={c: ERROR_SCHEMA for c in (401, 403, 422, 429)})
GatewayDep = Depends(gateway)
AdminDep = Depends(admin)
CallerDep = Depends(caller)


class Login(Body):
    email: str = Field(min_length=3, max_length=254)
    password: SecretStr = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    token: str = Field(description="the session's bearer token; shown only this once")
    user_id: str
    display_name: str
    expires_at: datetime


class PasswordSet(Body):
    password: SecretStr = Field(description="at least 10 characters")


@router.post("/auth/login", response_model=SessionOut)
async def login(body: Login, gw: Gateway = GatewayDep) -> SessionOut:
    email = body.email.strip().lower()
    if gw.login_limiter is not None:
        wait = gw.login_limiter.take(email, gw.clock.monotonic())
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                "too many sign-in attempts for this email; wait and try again",
                "email",
                {"Retry-After": str(math.ceil(wait))},
            )
    store = SessionStore(gw.repo.pool)
    found = await store.user_with_password(email)
    stored_hash = found[1] if found is not None else None
    # argon2 takes tens of milliseconds of CPU: off the event loop.
    matches = await asyncio.to_thread(
        password_matches, body.password.get_secret_value(), stored_hash
    )
    if not matches or found is None:
        log.info("sign-in refused", reason="credentials")
        raise ApiError(401, "invalid_credentials", "the email or the password is wrong", "password")
    user = found[0]
    token = new_token("mbw")
    now = gw.clock.now()
    expires_at = now + timedelta(seconds=gw.settings.session_ttl_seconds)
    await store.create(hash_token(token), user.user_id, now, expires_at)
    log.info("signed in", user_id=user.user_id)
    return SessionOut(
        token=token, user_id=user.user_id, display_name=user.display_name, expires_at=expires_at
    )


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, who: Caller = CallerDep, gw: Gateway = GatewayDep) -> Response:
    """Ends the session whose token is presented (an API token is not a session: 422)."""
    if not who.session:
        raise ApiError(422, "not_a_session", "only a sign-in session can sign out", "authorization")
    token = bearer(request.headers.get("authorization"))
    assert token is not None  # authenticated above
    await SessionStore(gw.repo.pool).delete(hash_token(token))
    return Response(status_code=204)


@router.put("/admin/users/{user_id}/password", status_code=204, tags=["admin"])
async def set_password(
    user_id: str, body: PasswordSet, _who: Caller = AdminDep, gw: Gateway = GatewayDep
) -> Response:
    """Set (or reset) a user's web sign-in password; every session of the user ends."""
    password_hash = await asyncio.to_thread(hash_password, body.password.get_secret_value())
    store = SessionStore(gw.repo.pool)
    if not await store.set_password_hash(user_id, password_hash):
        raise ApiError(404, "not_found", f"no user {user_id!r}", "user_id")
    await store.delete_all(user_id)
    return Response(status_code=204)
