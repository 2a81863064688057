"""A canary secret is absent from logs, events, NATS traffic, metrics and every column
except the ciphertext."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from typing import Any

import asyncpg
import nats
from nats.aio.msg import Msg
from prometheus_client import REGISTRY, generate_latest

from marketbot.contracts import Exchange, Side
from marketbot.exchanges.factory import create_venue
from marketbot.exchanges.signer import order_scope
from marketbot.exchanges.venue import OrderRequest, OrderType, TimeInForce
from marketbot.keyvault.app import RunningVault
from marketbot.keyvault.client import VaultClient, VaultSigner
from marketbot.runtime.bus import Bus
from marketbot.runtime.testing import eventually
from marketbot.sim.testing import RunningSim

from .helpers import order_requested, raw_key_event_payloads


def forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, raw.hex().encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw)]


def assert_absent(secret: str, haystack: bytes, where: str) -> None:
    for form in forms(secret):
        assert form not in haystack, f"the canary secret appears in {where}"


async def test_the_canary_secret_never_leaves_the_ciphertext(
    log_output: io.StringIO,
    nats_url: str,
    bus: Bus,
    vault: RunningVault,
    client: VaultClient,
    sim: RunningSim,
    migrated: asyncpg.Pool,
    pg_schema: str,
    make_key: Callable[..., Any],
) -> None:
    captured: list[bytes] = []

    async def capture(msg: Msg) -> None:
        headers = b"".join(f"{k}:{v}".encode() for k, v in (msg.headers or {}).items())
        captured.append(msg.subject.encode() + b" " + headers + b" " + msg.data)

    spy = await nats.connect(nats_url)
    await spy.subscribe(f"{bus.namespace.prefix}.>", cb=capture)
    await spy.subscribe("_INBOX.>", cb=capture)
    await spy.subscribe("$JS.API.>", cb=capture)
    await spy.flush()
    try:
        canary = await make_key(Exchange.BYBIT, ips=["127.0.0.1"])
        await sim.bybit_admin.fund(canary.account_id, "USDT", Decimal("500"))
        registered = await client.register("canary", Exchange.BYBIT, canary.api_key, canary.secret)
        assert registered.ok
        venue = create_venue(Exchange.BYBIT, sim.bybit_url)
        try:
            signer = VaultSigner(bus, "canary", Exchange.BYBIT)
            price = await venue.price("BTCUSDT")
            request = await order_requested(
                bus, migrated, user_id="canary", exchange=Exchange.BYBIT, reference_price=price
            )
            with order_scope(request.request_id):
                await venue.place_order(
                    signer,
                    OrderRequest(
                        symbol="BTCUSDT",
                        side=Side.BUY,
                        order_type=OrderType.LIMIT,
                        time_in_force=TimeInForce.IOC,
                        client_order_id=request.client_order_id,
                        quantity=(Decimal(20) / price).quantize(Decimal("0.0001"), ROUND_DOWN),
                        price=price,
                    ),
                )
        finally:
            await venue.aclose()
        assert (await client.verify("canary", Exchange.BYBIT)).ok
        assert (await client.status("canary")).ok
        assert (await client.revoke("canary", Exchange.BYBIT)).ok
        # a refused registration and a refused sign, for their error paths
        rejected = await make_key(Exchange.BYBIT, withdraw=True)
        assert not (
            await client.register("canary", Exchange.BYBIT, rejected.api_key, rejected.secret)
        ).ok
        await vault.vault.audit.flush()
        await spy.flush()
        await eventually(lambda: len(captured) > 10)
    finally:
        await spy.close()

    secrets = [canary.secret, rejected.secret]
    traffic = b"\n".join(captured)
    assert canary.api_key.encode() in traffic  # the spy did see the vault's traffic
    events = b"\n".join(await raw_key_event_payloads(bus))
    assert b"ApiKeyRevoked" in events
    logs = log_output.getvalue().encode()
    assert b"api key stored" in logs
    metrics = generate_latest(REGISTRY)
    for secret in secrets:
        assert_absent(secret, traffic, "NATS traffic")
        assert_absent(secret, events, "JetStream events")
        assert_absent(secret, logs, "logs")
        assert_absent(secret, metrics, "metrics")

    columns = await migrated.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
        pg_schema,
    )
    checked = 0
    for column in columns:
        table, name = column["table_name"], column["column_name"]
        if (table, name) == ("credentials", "ciphertext"):
            continue
        values = await migrated.fetch(f'SELECT "{name}"::text AS v FROM "{table}"')
        dump = "\n".join(str(v["v"]) for v in values).encode()
        for secret in secrets:
            assert_absent(secret, dump, f"{table}.{name}")
        checked += 1
    assert checked > 30
    assert await migrated.fetchval("SELECT count(*) FROM credentials") == 2
