"""The running platform's bus refuses strangers and holds each service to its grant
(issue 14): the checks of libs/runtime/tests/test_nats_auth.py, against the live stack."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.errors import NoServersError

from marketbot.contracts.access import inbox_prefix
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
