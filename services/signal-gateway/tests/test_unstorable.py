"""NUL characters and invalid Unicode at the gateway's edges (issue 14): a 4xx naming the
field, never a 202 that later loops a consumer."""

from __future__ import annotations

import json

import pytest

from marketbot.runtime.bus import Bus

from .helpers import AppFactory, admin_headers, client_for
from .test_webhooks import TEMPLATE, URL, signals


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (json.dumps({**TEMPLATE, "strategy": "demo\u0000x"}), "strategy"),
        (json.dumps({**TEMPLATE, "strategy": "demo\ud800"}), "strategy"),
        (json.dumps({**TEMPLATE, "symbol": "BTC\u0000USDT"}), "symbol"),
        (json.dumps({**TEMPLATE, "exchange": "\udfffbybit"}), "exchange"),
    ],
)
async def test_a_json_alert_with_unstorable_text_is_422_naming_the_field(
    make_app: AppFactory, bus: Bus, body: str, field: str
) -> None:
    async with client_for(make_app()) as api:
        response = await api.post(URL, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert await signals(bus) == []


async def test_a_text_alert_with_a_nul_is_422_naming_the_field(
    make_app: AppFactory, bus: Bus
) -> None:
    async with client_for(make_app()) as api:
        response = await api.post(
            URL,
            content=b"BUY BTCUSDT strategy=de\x00mo",
            headers={"Content-Type": "text/plain"},
        )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "strategy"
    assert await signals(bus) == []


async def test_invalid_utf8_is_a_400_naming_the_body(make_app: AppFactory, bus: Bus) -> None:
    async with client_for(make_app()) as api:
        response = await api.post(
            URL, content=b"BUY BTCUSDT \xff\xfe", headers={"Content-Type": "text/plain"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "body"
    assert await signals(bus) == []


async def test_every_api_refuses_unstorable_json_fields_and_query_parameters(
    make_app: AppFactory,
) -> None:
    async with client_for(make_app()) as api:
        user = await api.post(
            "/admin/users",
            content=json.dumps({"email": "a@example.com", "display_name": "A\u0000"}),
            headers={**admin_headers(), "Content-Type": "application/json"},
        )
        assert user.status_code == 422, user.text
        assert user.json()["error"]["field"] == "display_name"
        query = await api.get("/admin/users?email=a%00b", headers=admin_headers())
        assert query.status_code == 422, query.text
        assert query.json()["error"]["field"] == "email"
