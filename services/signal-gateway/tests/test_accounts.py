"""Admin and user APIs: account events through the outbox, keys sealed for the vault,
the ledger asked over NATS, and no user reaching another's objects on any endpoint."""

from __future__ import annotations

import io
import json

import httpx
import pytest

from marketbot.contracts import SubscriptionChanged, TradingPreferencesChanged, UserRegistered
from marketbot.runtime.bus import Bus

from .helpers import (
    AppFactory,
    FakeLedger,
    FakeVault,
    admin_headers,
    bearer,
    client_for,
    create_user,
    operation,
    stream_messages,
)

SECRET = "s3cr3t-API-secret-value-9f8e7d6c5b4a"


async def test_admin_changes_are_account_events(make_app: AppFactory, bus: Bus) -> None:
    async with client_for(make_app()) as api:
        referrer, _ = await create_user(api, "ref@example.com")
        user, token = await create_user(api, "ana@example.com", referrer_id=referrer)
        assert token.startswith("mbu_")
        sub = await api.put(
            f"/admin/users/{user}/subscription",
            json={"plan": "PRO", "status": "ACTIVE"},
            headers=admin_headers(),
        )
        assert sub.status_code == 200, sub.text
        prefs = await api.put(
            f"/admin/users/{user}/preferences",
            json={
                "trading_mode": "PERSONAL",
                "preferred_exchange": "binance",
                "risk_level": "high",
            },
            headers=admin_headers(),
        )
        assert prefs.json()["preferred_exchange"] == "binance"
        unref = await api.put(
            f"/admin/users/{user}/referrer", json={"referrer_id": None}, headers=admin_headers()
        )
        assert unref.json()["referrer_id"] is None
        listed = await api.get("/admin/users", headers=admin_headers())
        assert listed.json()["total"] == 2
        assert token not in listed.text
    events = await stream_messages(bus, "ACCOUNTS")
    mine = [e for e in events if e["user_id"] == user]
    assert [e["type"] for e in mine] == [
        "UserRegistered",
        "SubscriptionChanged",
        "TradingPreferencesChanged",
        "SubscriptionChanged",
        "TradingPreferencesChanged",
        "ReferrerAssigned",
    ]
    assert UserRegistered.model_validate(mine[0]).referrer_id == referrer
    assert SubscriptionChanged.model_validate(mine[3]).plan.value == "PRO"
    assert TradingPreferencesChanged.model_validate(mine[4]).risk_level.value == "high"


async def test_admin_api_refusals(make_app: AppFactory, api: httpx.AsyncClient) -> None:
    user, token = await create_user(api, "bo@example.com")
    assert (await api.get("/admin/users")).status_code == 401
    refused = await api.get("/admin/users", headers=bearer(token))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_only"
    taken = await api.post(
        "/admin/users",
        json={"email": "bo@example.com", "display_name": "x"},
        headers=admin_headers(),
    )
    assert (taken.status_code, taken.json()["error"]["field"]) == (409, "email")
    invalid = await api.post(
        "/admin/users", json={"email": "nope", "display_name": "x"}, headers=admin_headers()
    )
    assert (invalid.status_code, invalid.json()["error"]["field"]) == (422, "email")
    bad_plan = await api.put(
        f"/admin/users/{user}/subscription",
        json={"plan": "GOLD", "status": "ACTIVE"},
        headers=admin_headers(),
    )
    assert (bad_plan.status_code, bad_plan.json()["error"]["field"]) == (422, "plan")
    missing = await api.put(
        "/admin/users/nobody/subscription",
        json={"plan": "PRO", "status": "ACTIVE"},
        headers=admin_headers(),
    )
    assert missing.status_code == 404
    float_money = await api.put(
        f"/admin/users/{user}/preferences", json={"allocation": 1.5}, headers=admin_headers()
    )
    assert (float_money.status_code, float_money.json()["error"]["field"]) == (422, "allocation")
    broken = await api.post(
        "/admin/users",
        content=b"{",
        headers={**admin_headers(), "Content-Type": "application/json"},
    )
    assert broken.status_code == 400


async def test_key_registration_seals_the_secret(
    api: httpx.AsyncClient, vault: FakeVault, log_output: io.StringIO
) -> None:
    user, token = await create_user(api, "cy@example.com")
    response = await api.put(
        f"/users/{user}/keys/bybit",
        json={"api_key": "BYBITKEY123456", "api_secret": SECRET},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    assert response.json()["key"]["masked_key"] == "BYBI****56"
    assert SECRET not in response.text
    # the vault opened what the gateway sealed, bound to this user, exchange and key
    assert vault.secrets[(user, "bybit")] == ("BYBITKEY123456", SECRET)
    status = await api.get(f"/users/{user}/keys/bybit", headers=bearer(token))
    assert status.json()["key"]["masked_key"] == "BYBI****56"
    verified = await api.post(f"/users/{user}/keys/bybit/verify", headers=bearer(token))
    assert verified.json()["key"]["verified"] is True
    revoked = await api.delete(f"/users/{user}/keys/bybit", headers=bearer(token))
    assert revoked.json()["key"]["active"] is False
    unknown = await api.post(f"/users/{user}/keys/bybit/verify", headers=bearer(token))
    assert unknown.status_code == 404
    assert SECRET not in log_output.getvalue()


async def test_operations_and_commissions_come_from_the_ledger(
    api: httpx.AsyncClient, ledger: FakeLedger
) -> None:
    user, token = await create_user(api, "di@example.com")
    ledger.operations[user] = [operation(user), operation(user, "ETHUSDT")]
    ops = await api.get(f"/users/{user}/operations", headers=bearer(token))
    assert ops.status_code == 200, ops.text
    assert [o["symbol"] for o in ops.json()["operations"]] == ["BTCUSDT", "ETHUSDT"]
    commissions = await api.get(f"/users/{user}/commissions", headers=bearer(token))
    assert commissions.json()["total"] == "2.50"
    settings = await api.get(f"/users/{user}/settings", headers=bearer(token))
    assert settings.json()["email"] == "di@example.com"
    me = await api.get("/me", headers=bearer(token))
    assert me.json()["user_id"] == user


async def test_ledger_down_is_503(api: httpx.AsyncClient) -> None:
    user, token = await create_user(api, "ed@example.com")
    response = await api.get(f"/users/{user}/operations", headers=bearer(token))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"


def _user_routes(victim: str) -> list[tuple[str, str, dict[str, object] | None]]:
    return [
        ("GET", f"/users/{victim}/settings", None),
        ("PATCH", f"/users/{victim}/settings", {"trading_mode": "PAUSED"}),
        ("GET", f"/users/{victim}/keys", None),
        ("GET", f"/users/{victim}/keys/bybit", None),
        ("PUT", f"/users/{victim}/keys/bybit", {"api_key": "STOLENKEY1", "api_secret": SECRET}),
        ("POST", f"/users/{victim}/keys/bybit/verify", None),
        ("DELETE", f"/users/{victim}/keys/bybit", None),
        ("GET", f"/users/{victim}/operations", None),
        ("GET", f"/users/{victim}/commissions", None),
        ("GET", f"/users/{victim}/referral-commissions", None),
        ("GET", f"/users/{victim}/statement", None),
    ]


async def test_no_user_reaches_another_users_objects(
    make_app: AppFactory, api: httpx.AsyncClient, vault: FakeVault, ledger: FakeLedger
) -> None:
    victim, victim_token = await create_user(api, "victim@example.com")
    attacker, attacker_token = await create_user(api, "mallory@example.com")
    registered = await api.put(
        f"/users/{victim}/keys/bybit",
        json={"api_key": "VICTIMKEY99", "api_secret": SECRET},
        headers=bearer(victim_token),
    )
    assert registered.status_code == 201
    ledger.operations[victim] = [operation(victim)]
    vault.asked_for.clear()
    ledger.asked_for.clear()
    routes = _user_routes(victim)
    for method, path, body in routes:
        response = await api.request(method, path, json=body, headers=bearer(attacker_token))
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_owner"
        assert "VICTIMKEY" not in response.text
    # nothing about the victim was even asked of the vault or the ledger
    assert victim not in vault.asked_for
    assert victim not in ledger.asked_for
    assert vault.secrets[(victim, "bybit")] == ("VICTIMKEY99", SECRET)
    # the victim (and an admin) still reach them; without a token nobody does
    for method, path, body in routes[:4]:
        response = await api.request(method, path, json=body, headers=bearer(victim_token))
        assert response.status_code < 400, (method, path, response.text)
        assert (await api.request(method, path, json=body)).status_code == 401
    admin_view = await api.get(f"/users/{victim}/operations", headers=admin_headers())
    assert admin_view.status_code == 200
    assert attacker != victim


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
async def test_openapi_document(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)
    assert response.status_code == 200
    if path == "/openapi.json":
        paths = json.loads(response.text)["paths"]
        assert "/webhooks/tradingview/{source}" in paths
        assert "/users/{user_id}/keys/{exchange}" in paths
