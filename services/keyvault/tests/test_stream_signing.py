"""The vault signs the two private-stream payloads, and refuses them out of bounds."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from marketbot.contracts import Exchange
from marketbot.contracts.vault import SignReply, SignRequest
from marketbot.exchanges.binance import constants as binance_constants
from marketbot.exchanges.binance import signing as binance_signing
from marketbot.exchanges.bybit import constants as bybit_constants
from marketbot.exchanges.bybit import signing as bybit_signing
from marketbot.exchanges.signer import SigningInput
from marketbot.keyvault.app import RunningVault
from marketbot.keyvault.client import VaultClient, VaultSigner
from marketbot.runtime.bus import Bus


def now_ms() -> int:
    return int(time.time() * 1000)


def hmac_hex(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


async def test_the_vault_signs_the_stream_payloads_and_nothing_near_them(
    vault: RunningVault,
    client: VaultClient,
    bus: Bus,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    bybit_key = await make_key(Exchange.BYBIT, ips=["127.0.0.1"])
    binance_key = await make_key(Exchange.BINANCE, ips=["127.0.0.1"])
    for exchange, key in ((Exchange.BYBIT, bybit_key), (Exchange.BINANCE, binance_key)):
        assert (await client.register("trader", exchange, key.api_key, key.secret)).ok

    # Bybit: GET/realtime{expires}, expires = now + 1 s (websocket_wss-authentication.mdx).
    auth = bybit_signing.ws_auth_request(now_ms(), 1000)
    signed = await VaultSigner(bus, "trader", Exchange.BYBIT).sign(auth)
    assert signed.api_key == bybit_key.api_key
    expires = auth.timestamp_ms + 1000
    assert signed.signature == hmac_hex(bybit_key.secret, f"GET/realtime{expires}")

    # Binance: userDataStream.subscribe.signature over apiKey, recvWindow, timestamp sorted.
    subscribe = binance_signing.user_data_subscribe_request(now_ms())
    signed = await VaultSigner(bus, "trader", Exchange.BINANCE).sign(subscribe)
    assert signed.api_key == binance_key.api_key
    payload = f"apiKey={binance_key.api_key}&{subscribe.query}"  # the vault adds its key
    assert signed.signature == hmac_hex(binance_key.secret, payload)

    # An expiry beyond the bound and an unsorted payload are refused by the policy; a
    # far-off timestamp (an auth collected now for later use) by the vault's clock check.
    too_long = bybit_signing.ws_auth_request(now_ms(), bybit_constants.WS_AUTH_MAX_EXPIRY_MS + 1)
    later = bybit_signing.ws_auth_request(now_ms() + 3_600_000, 1000)
    ts = now_ms()
    unsorted = SigningInput(
        Exchange.BINANCE,
        "GET",
        binance_constants.USER_DATA_SUBSCRIBE_SIGNATURE,
        f"timestamp={ts}&recvWindow=5000",
        "",
        ts,
        5000,
    )
    cases = [
        (too_long, "endpoint_refused"),
        (later, "timestamp_out_of_range"),
        (unsorted, "endpoint_refused"),
    ]
    for request, code in cases:
        reply = await bus.request(as_sign_request(request), SignReply)
        assert not reply.ok
        assert reply.error is not None
        assert reply.error.code == code, reply.error.message
        assert reply.signature == ""
    refused = await migrated.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'sign_refused'"
    )
    assert refused == 3


def as_sign_request(request: SigningInput) -> SignRequest:
    return SignRequest(
        occurred_at=datetime.now(UTC),
        correlation_id="c-stream-sign",
        user_id="trader",
        exchange=request.exchange,
        method=request.method,  # type: ignore[arg-type]
        path=request.path,
        query=request.query,
        body=request.body,
        timestamp_ms=request.timestamp_ms,
        recv_window_ms=request.recv_window_ms,
    )
