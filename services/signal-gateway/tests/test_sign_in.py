"""Web sign-in: argon2id passwords set by the operator, expiring session tokens, the login
rate limit, and sessions held to the same ownership checks as API tokens."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher

from marketbot.runtime.clock import ManualClock

from .helpers import AppFactory, admin_headers, bearer, client_for, create_user, make_settings

PASSWORD = "correct horse battery"


async def with_password(api: httpx.AsyncClient, email: str) -> tuple[str, str]:
    user_id, token = await create_user(api, email)
    response = await api.put(
        f"/admin/users/{user_id}/password", json={"password": PASSWORD}, headers=admin_headers()
    )
    assert response.status_code == 204, response.text
    return user_id, token


async def login(api: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await api.post("/auth/login", json={"email": email, "password": password})


async def test_password_is_stored_as_argon2id(
    api: httpx.AsyncClient, gateway_pool: asyncpg.Pool
) -> None:
    user_id, _ = await with_password(api, "ana@example.com")
    stored = await gateway_pool.fetchval(
        "SELECT password_hash FROM users WHERE user_id = $1", user_id
    )
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)


async def test_sign_in_gives_a_session_that_reaches_only_its_own_user(
    api: httpx.AsyncClient,
) -> None:
    ana, _ = await with_password(api, "ana@example.com")
    bob, _ = await with_password(api, "bob@example.com")
    response = await login(api, "ANA@example.com")
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["user_id"] == ana
    assert session["token"].startswith("mbw_")
    me = await api.get("/me", headers=bearer(session["token"]))
    assert me.status_code == 200
    assert me.json()["user_id"] == ana
    own = await api.get(f"/users/{ana}/settings", headers=bearer(session["token"]))
    assert own.status_code == 200
    other = await api.get(f"/users/{bob}/settings", headers=bearer(session["token"]))
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "not_owner"
    admin_only = await api.get("/admin/users", headers=bearer(session["token"]))
    assert admin_only.status_code == 403


async def test_wrong_password_and_unknown_email_get_the_same_answer(
    api: httpx.AsyncClient,
) -> None:
    await with_password(api, "ana@example.com")
    wrong = await login(api, "ana@example.com", "not the password")
    unknown = await login(api, "nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"
    # a user without a password cannot sign in at all
    await create_user(api, "nopass@example.com")
    assert (await login(api, "nopass@example.com", "")).status_code == 422
    assert (await login(api, "nopass@example.com", "anything-at-all")).status_code == 401


async def test_login_is_rate_limited_per_email(make_app: AppFactory, clock: ManualClock) -> None:
    settings = make_settings(login_attempts_burst=3, login_attempts_per_minute=1.0)
    async with client_for(make_app(settings)) as api:
        await with_password(api, "ana@example.com")
        for _ in range(3):
            assert (await login(api, "ana@example.com", "wrong-password")).status_code == 401
        limited = await login(api, "ana@example.com")  # even the right password waits
        assert limited.status_code == 429
        assert limited.json()["error"]["field"] == "email"
        assert int(limited.headers["Retry-After"]) > 0
        # another email is not held up
        assert (await login(api, "bob@example.com")).status_code == 401
        clock.advance(61)
        assert (await login(api, "ana@example.com")).status_code == 200


async def test_session_expires_and_logout_ends_it(make_app: AppFactory, clock: ManualClock) -> None:
    async with client_for(make_app(make_settings(session_ttl_seconds=600))) as api:
        await with_password(api, "ana@example.com")
        first = (await login(api, "ana@example.com")).json()["token"]
        second = (await login(api, "ana@example.com")).json()["token"]
        assert (await api.post("/auth/logout", headers=bearer(first))).status_code == 204
        assert (await api.get("/me", headers=bearer(first))).status_code == 401
        assert (await api.get("/me", headers=bearer(second))).status_code == 200
        clock.advance(601)
        assert (await api.get("/me", headers=bearer(second))).status_code == 401


async def test_api_token_is_not_a_session(api: httpx.AsyncClient) -> None:
    _, token = await with_password(api, "ana@example.com")
    response = await api.post("/auth/logout", headers=bearer(token))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "not_a_session"


async def test_resetting_the_password_ends_every_session(api: httpx.AsyncClient) -> None:
    user_id, _ = await with_password(api, "ana@example.com")
    token = (await login(api, "ana@example.com")).json()["token"]
    response = await api.put(
        f"/admin/users/{user_id}/password",
        json={"password": "another good password"},
        headers=admin_headers(),
    )
    assert response.status_code == 204
    assert (await api.get("/me", headers=bearer(token))).status_code == 401
    assert (await login(api, "ana@example.com")).status_code == 401
    assert (await login(api, "ana@example.com", "another good password")).status_code == 200


@pytest.mark.parametrize(
    ("password", "code"), [("short", "too_short"), (" padded password ", "invalid")]
)
async def test_password_rules_name_the_field(
    api: httpx.AsyncClient, password: str, code: str
) -> None:
    user_id, token = await create_user(api, "ana@example.com")
    response = await api.put(
        f"/admin/users/{user_id}/password", json={"password": password}, headers=admin_headers()
    )
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": code,
        "message": response.json()["error"]["message"],
        "field": "password",
    }
    # only the operator sets passwords
    forbidden = await api.put(
        f"/admin/users/{user_id}/password", json={"password": PASSWORD}, headers=bearer(token)
    )
    assert forbidden.status_code == 403
    missing = await api.put(
        "/admin/users/nobody/password", json={"password": PASSWORD}, headers=admin_headers()
    )
    assert missing.status_code == 404
