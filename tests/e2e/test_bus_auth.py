"""The running platform's bus refuses strangers and holds each service to its grant
(issue 14): the checks of libs/runtime/tests/test_nats_auth.py, against the live stack."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.errors import NoServersError

from marketbot.contracts.access import KEYVAULT_ORDER_REQUESTS, inbox_prefix
from marketbot.runtime.infra import Infra
from marketbot.runtime.testing import eventually

from .conftest import Platform

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]


async def test_no_credential_no_bus(platform: Platform, infra: Infra) -> None:
    if infra.nats_auth is None:
        pytest.skip("an external NATS without the generated authorization")
    with pytest.raises((nats.errors.Error, NoServersError, OSError)):
        await nats.connect(infra.nats_server_url, allow_reconnect=False, max_reconnect_attempts=0)


async def test_the_gateway_credential_cannot_place_sign_or_read_replies(
    platform: Platform, infra: Infra
) -> None:
    if infra.nats_auth is None:
        pytest.skip("an external NATS without the generated authorization")
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc))

    nc = await nats.connect(
        infra.nats_server_url,
        nkeys_seed_str=infra.nats_auth.seed("signal-gateway"),
        inbox_prefix=inbox_prefix("signal-gateway"),
        error_cb=on_error,
        allow_reconnect=False,
    )
    bus = platform.bus
    try:
        before = (await bus.js.stream_info(bus.stream("ORDER_REQUESTS"))).state.messages
        await nc.publish(bus.subject("orders.requested.bybit.pro"), b"{}")
        with pytest.raises(nats.errors.Error):
            await nc.request(bus.subject("keyvault.sign.bybit"), b"{}", timeout=1)
        await nc.subscribe(f"{inbox_prefix('executor-bybit')}.>")
        await nc.subscribe("_INBOX.>")
        await nc.flush()
        await eventually(lambda: len(refused) >= 4, message="four refusals")
        await asyncio.sleep(0)
        after = (await bus.js.stream_info(bus.stream("ORDER_REQUESTS"))).state.messages
        assert after == before
    finally:
        await nc.close()
    assert all("permissions violation" in text for text in refused), refused


async def test_the_gateway_credential_cannot_read_orders_keys_or_sign_requests(
    platform: Platform, infra: Infra
) -> None:
    """It reads only what it projects (ORDER_EVENTS, LEDGER): not the order requests, not the
    key events, not another service's durable, not the sign requests on their way."""
    if infra.nats_auth is None:
        pytest.skip("an external NATS without the generated authorization")
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc))

    nc = await nats.connect(
        infra.nats_server_url,
        nkeys_seed_str=infra.nats_auth.seed("signal-gateway"),
        inbox_prefix=inbox_prefix("signal-gateway"),
        error_cb=on_error,
        allow_reconnect=False,
    )
    bus = platform.bus
    requests, keys = bus.stream("ORDER_REQUESTS"), bus.stream("KEYS")
    durable = bus.namespace.durable(KEYVAULT_ORDER_REQUESTS)
    # (the shared test server renders stream tokens as ``*``, so creating a consumer or
    # reading by sequence is checked on the exact rendering in test_nats_auth.py)
    api = (
        f"$JS.API.DIRECT.GET.{requests}",
        f"$JS.API.DIRECT.GET.{keys}",
        f"$JS.API.CONSUMER.MSG.NEXT.{requests}.{durable}",
        f"$JS.API.CONSUMER.MSG.NEXT.{requests}.{bus.namespace.durable('executor-bybit-pro')}",
    )
    try:
        for subject in api:
            with pytest.raises(nats.errors.Error):  # refused: no answer ever comes
                await nc.request(subject, b"{}", timeout=0.5)
        await nc.subscribe(bus.subject("keyvault.sign.>"))
        await nc.subscribe(bus.subject("orders.requested.>"))
        await nc.flush()
        await eventually(
            lambda: len(refused) >= len(api) + 2, message="every read refused by the server"
        )
    finally:
        await nc.close()
    assert all("permissions violation" in text for text in refused), refused


async def test_no_credential_places_or_reads_nothing_over_http(platform: Platform) -> None:
    """The public edge: without a token nothing is placed, registered or read, and a user's
    token reaches only that user (the vault and ledger are never asked for another)."""
    gateway, http = platform.urls.gateway, platform.http
    user = "e2e-nobody"
    anonymous = [
        http.post(f"{platform.urls.webhook}/default", content="buy BTCUSDT @ 100"),
        http.get(f"{gateway}/users/{user}/operations"),
        http.get(f"{gateway}/users/{user}/keys"),
        http.put(f"{gateway}/users/{user}/keys/bybit", json={"api_key": "k", "api_secret": "s"}),
        http.get(f"{gateway}/users/{user}/positions"),
        http.get(f"{gateway}/admin/users"),
    ]
    for call in anonymous:
        response = await call
        assert response.status_code in (401, 403), (response.request.url, response.status_code)
