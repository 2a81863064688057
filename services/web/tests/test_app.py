"""The web app over HTTP with the gateway replaced at its port (an httpx mock transport):
sign-in, cookies, CSRF, origin checks, role separation, and that every gateway call for a
subscriber names the subscriber's own id, whatever the browser sends."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from marketbot.web.app import WebDeps, create_app
from marketbot.web.settings import WebSettings

GATEWAY = "http://gateway.test"
WEB = "https://web.test"  # Secure cookies are sent over HTTPS only
ANA_TOKEN = "mbw_ana_session"
ADMIN = "admin-token-0123456789"


class FakeGateway:
    """Answers like the gateway for one user, ana, and the admin token; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ") or None
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.calls.append((request.method, path, token, body))
        if path == "/auth/login":
            if body == {"email": "ana@example.com", "password": "right password"}:
                return httpx.Response(
                    200,
                    json={
                        "token": ANA_TOKEN,
                        "user_id": "ana",
                        "display_name": "Ana",
                        "expires_at": "2099-01-01T00:00:00+00:00",
                    },
                )
            return httpx.Response(401, json={"error": {"code": "invalid_credentials"}})
        if token == ADMIN and path.startswith("/admin/"):
            return httpx.Response(200, json={"users": [], "total": 0, "limit": 1, "offset": 0})
        if token != ANA_TOKEN:
            return httpx.Response(401, json={"error": {"code": "invalid_token"}})
        if path.startswith("/users/") and not path.startswith("/users/ana/"):
            return httpx.Response(403, json={"error": {"code": "not_owner"}})
        if path == "/me" or path.endswith("/settings"):
            return httpx.Response(200, json=USER)
        if path == "/users/ana/keys/bybit" and request.method == "PUT":
            if body["api_key"] == "has spaces in it":
                return httpx.Response(
                    422,
                    json={
                        "error": {
                            "code": "string_pattern_mismatch",
                            "message": "api_key: String should match pattern '^[A-Za-z0-9_-]+$'",
                            "field": "api_key",
                        }
                    },
                )
            return httpx.Response(
                422,
                json={
                    "error": {
                        "code": "withdraw_enabled",
                        "message": "this key can withdraw funds; remove the permission",
                        "field": None,
                    }
                },
            )
        if path.endswith("/positions"):
            return httpx.Response(200, json={"positions": [], "priced": True})
        if path.endswith("/operations"):
            return httpx.Response(200, json={"operations": [], "total": 0, "page": 1})
        if path.endswith("/keys"):
            return httpx.Response(200, json={"keys": []})
        if path.endswith("/referral-commissions"):
            return httpx.Response(200, json={"entries": []})
        if path.endswith("/commissions"):
            return httpx.Response(200, json={"entries": [], "total": "0"})
        if path.endswith("/statement"):
            return httpx.Response(200, json=STATEMENT)
        if path == "/auth/logout":
            return httpx.Response(204)
        return httpx.Response(404, json={"error": {"code": "not_found"}})


USER = {
    "user_id": "ana",
    "email": "ana@example.com",
    "display_name": "Ana",
    "plan": "PRO",
    "subscription_status": "ACTIVE",
    "expires_at": None,
    "trading_mode": "PERSONAL",
    "preferred_exchange": "bybit",
    "risk_level": "low",
    "allocation": None,
    "allocation_currency": None,
}
STATEMENT = {
    "lines": [],
    "total_realized_pnl": "0",
    "total_commissions": "0",
    "total_volume": "0",
    "total_operations": 0,
    "total_affiliate_commissions": "0",
}


@pytest.fixture
def fake() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
async def web(fake: FakeGateway) -> AsyncIterator[httpx.AsyncClient]:
    settings = WebSettings(gateway_url=GATEWAY, login_attempts_burst=3)
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as upstream:
        app = create_app(settings, WebDeps(upstream))
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=WEB) as client:
            yield client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field"
    return match.group(1)


async def signed_in(web: httpx.AsyncClient) -> str:
    page = await web.get("/login")
    response = await web.post(
        "/login",
        data={
            "email": "ana@example.com",
            "password": "right password",
            "csrf_token": csrf_of(page.text),
        },
        headers={"Origin": WEB},
    )
    assert response.status_code == 303, response.text
    return csrf_of((await web.get("/settings")).text)


async def test_pages_need_a_session_and_send_headers(web: httpx.AsyncClient) -> None:
    response = await web.get("/dashboard")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    page = await web.get("/login")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert 'for="f-email"' in page.text


async def test_sign_in_sets_a_secure_http_only_cookie(
    web: httpx.AsyncClient, fake: FakeGateway
) -> None:
    page = await web.get("/login")
    response = await web.post(
        "/login",
        data={
            "email": "ana@example.com",
            "password": "right password",
            "csrf_token": csrf_of(page.text),
        },
        headers={"Origin": WEB},
    )
    assert response.status_code == 303
    cookie = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and "mb_session" in v
    )
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "SameSite=lax" in cookie
    assert ANA_TOKEN not in cookie  # sealed
    assert ANA_TOKEN not in (await web.get("/dashboard")).text


async def test_sign_in_needs_the_form_token_and_is_rate_limited(web: httpx.AsyncClient) -> None:
    await web.get("/login")
    forged = await web.post(
        "/login", data={"email": "ana@example.com", "password": "right password", "csrf_token": "x"}
    )
    assert forged.status_code == 403
    statuses = []
    for _ in range(4):
        page = await web.get("/login")
        wrong = await web.post(
            "/login",
            data={
                "email": "ana@example.com",
                "password": "wrong",
                "csrf_token": csrf_of(page.text),
            },
        )
        statuses.append(wrong.status_code)
    assert statuses == [401, 401, 401, 429]  # burst of 3 per client IP
    assert "Too many sign-in attempts" in wrong.text
    assert int(wrong.headers["retry-after"]) > 0


async def test_forms_need_the_csrf_token_and_this_origin(
    web: httpx.AsyncClient, fake: FakeGateway
) -> None:
    csrf = await signed_in(web)
    fields = {"risk_level": "high", "preferred_exchange": "bybit", "trading_mode": "PERSONAL"}
    assert (await web.post("/settings", data=fields)).status_code == 403
    cross = await web.post(
        "/settings", data={**fields, "csrf_token": csrf}, headers={"Origin": "https://evil.test"}
    )
    assert cross.status_code == 403
    assert not [c for c in fake.calls if c[0] == "PATCH"]
    ok = await web.post("/settings", data={**fields, "csrf_token": csrf}, headers={"Origin": WEB})
    assert ok.status_code == 200
    [patch] = [c for c in fake.calls if c[0] == "PATCH"]
    assert patch[1] == "/users/ana/settings"
    assert patch[3]["risk_level"] == "high"


async def test_invalid_settings_name_the_field_and_send_nothing(
    web: httpx.AsyncClient, fake: FakeGateway
) -> None:
    csrf = await signed_in(web)
    response = await web.post(
        "/settings",
        data={
            "risk_level": "low",
            "preferred_exchange": "bybit",
            "trading_mode": "PERSONAL",
            "allocation": "-3",
            "allocation_currency": "BRL",
            "csrf_token": csrf,
        },
    )
    assert response.status_code == 422
    assert 'id="f-allocation-error">Allocation must be greater than 0<' in response.text
    assert 'aria-invalid="true"' in response.text
    assert not [c for c in fake.calls if c[0] == "PATCH"]


async def test_a_subscriber_only_ever_asks_for_their_own_data(
    web: httpx.AsyncClient, fake: FakeGateway
) -> None:
    await signed_in(web)
    for url in (
        "/dashboard",
        "/history?user_id=bob",
        "/history.csv?user_id=bob",
        "/positions",
        "/statement?user_id=bob",
        "/keys",
    ):
        response = await web.get(url)
        assert response.status_code == 200, url
    user_paths = [path for _, path, _, _ in fake.calls if path.startswith("/users/")]
    assert user_paths
    assert all(p.startswith("/users/ana/") for p in user_paths), user_paths
    assert all(token == ANA_TOKEN for _, path, token, _ in fake.calls if path != "/auth/login")
    # the operator's pages are not a subscriber's
    assert (await web.get("/operator")).status_code == 403
    assert (await web.get("/operator/users/bob")).status_code == 403
    assert (await web.get("/users/bob/operations")).status_code == 404


async def test_sign_out_ends_the_gateway_session(web: httpx.AsyncClient, fake: FakeGateway) -> None:
    csrf = await signed_in(web)
    response = await web.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert ("POST", "/auth/logout", ANA_TOKEN, None) in fake.calls
    assert (await web.get("/dashboard")).status_code == 303


async def test_operator_sign_in_checks_the_admin_token(web: httpx.AsyncClient) -> None:
    page = await web.get("/operator/login")
    wrong = await web.post(
        "/operator/login", data={"admin_token": "nope", "csrf_token": csrf_of(page.text)}
    )
    assert wrong.status_code == 401
    assert "This is not the admin token." in wrong.text
    page = await web.get("/operator/login")
    right = await web.post(
        "/operator/login", data={"admin_token": ADMIN, "csrf_token": csrf_of(page.text)}
    )
    assert right.status_code == 303
    assert right.headers["location"] == "/operator"
    assert (await web.get("/operator")).status_code == 200
    assert (await web.get("/dashboard")).status_code == 303  # an operator is sent to /operator


async def test_key_refusals_are_in_plain_words(web: httpx.AsyncClient, fake: FakeGateway) -> None:
    csrf = await signed_in(web)
    schema = await web.post(
        "/keys/bybit",
        data={"api_key": "has spaces in it", "api_secret": "secret-12345", "csrf_token": csrf},
    )
    assert schema.status_code == 422
    assert "API key must be 8 to 256 letters, digits, - or _" in schema.text
    assert "String should match" not in schema.text
    vault = await web.post(
        "/keys/bybit",
        data={"api_key": "AAAABBBBCCCC", "api_secret": "secret-12345", "csrf_token": csrf},
    )
    assert vault.status_code == 422
    assert "Refused: This key can withdraw funds: remove that permission" in vault.text
    assert "secret-12345" not in vault.text
    assert (await web.post("/keys/kraken", data={"csrf_token": csrf})).status_code == 404
