"""The signing service: a real order placed with a vault signature; refusals, audit, disable."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import asyncpg
import pytest

from marketbot.contracts import Exchange, KeyPermissions, RejectReason, Side
from marketbot.contracts.vault import SignReply, SignRequest
from marketbot.exchanges.bybit.signing import ws_auth_request
from marketbot.exchanges.errors import Rejected, SigningRefusedError
from marketbot.exchanges.factory import create_venue
from marketbot.exchanges.signer import Signer, order_scope
from marketbot.exchanges.venue import OrderRequest, OrderType, TimeInForce, Venue
from marketbot.keyvault import handlers
from marketbot.keyvault.app import RunningVault
from marketbot.keyvault.client import VaultClient, VaultSigner
from marketbot.runtime.bus import Bus
from marketbot.runtime.testing import eventually
from marketbot.sim.testing import RunningSim

from .conftest import VaultFactory
from .helpers import event_types, order_requested
from .test_domain import PATH_TRICKS, WITHDRAWALS


@pytest.mark.parametrize("exchange", [Exchange.BYBIT, Exchange.BINANCE])
async def test_an_executor_places_an_order_with_a_vault_signature(
    vault: RunningVault,
    client: VaultClient,
    bus: Bus,
    sim: RunningSim,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
    exchange: Exchange,
) -> None:
    key = await make_key(exchange, ips=["127.0.0.1"])
    admin = sim.bybit_admin if exchange is Exchange.BYBIT else sim.binance_admin
    await admin.fund(key.account_id, "USDT", Decimal("1000"))
    assert (await client.register("trader", exchange, key.api_key, key.secret)).ok

    # The executor's side: a venue client and a signer that holds no secret.
    signer = VaultSigner(bus, "trader", exchange)
    url = sim.bybit_url if exchange is Exchange.BYBIT else sim.binance_url
    venue = create_venue(exchange, url)
    try:
        # The order carries out an order request (as decision publishes it): the vault
        # signs it only within that request's terms (test_order_bounds.py).
        price = await venue.price("BTCUSDT")
        request = await order_requested(
            bus, migrated, user_id="trader", exchange=exchange, reference_price=price
        )
        order_id = request.client_order_id
        with order_scope(request.request_id):
            placed = await venue.place_order(
                signer,
                OrderRequest(
                    symbol="BTCUSDT",
                    side=Side.BUY,
                    order_type=OrderType.LIMIT,
                    time_in_force=TimeInForce.IOC,
                    client_order_id=order_id,
                    quantity=(Decimal(40) / price).quantize(Decimal("0.0001"), ROUND_DOWN),
                    price=price,
                ),
            )
        assert placed.client_order_id == order_id
        balances = await venue.balances(signer)
        assert any(b.asset == "BTC" and b.total > 0 for b in balances)
    finally:
        await venue.aclose()
    # Ground truth: the exchange has the order on this account.
    orders = await admin.orders(key.account_id)
    assert [o for o in orders if order_id in str(o)]

    # Every sign is audited (asynchronously) and marks the key used.
    async def audited() -> bool:
        signs = await migrated.fetchval("SELECT count(*) FROM audit_log WHERE action = 'sign'")
        return int(signs) >= 2  # the order and the balance read

    await eventually(audited)
    used = await migrated.fetchval("SELECT last_used_at FROM credentials WHERE active")
    assert used is not None
    status = await client.status("trader", exchange)
    assert status.keys[0].last_used_at is not None


def sign_request(exchange: Exchange, method: str, path: str, query: str, body: str) -> SignRequest:
    from datetime import UTC, datetime

    return SignRequest(
        occurred_at=datetime.now(UTC),
        correlation_id="c-sign",
        user_id="trader",
        exchange=exchange,
        method=method,  # type: ignore[arg-type]
        path=path,
        query=query,
        body=body,
        timestamp_ms=1,
        recv_window_ms=5000,
    )


async def test_withdrawals_and_path_tricks_are_refused_and_audited(
    vault: RunningVault,
    client: VaultClient,
    bus: Bus,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    for exchange in (Exchange.BYBIT, Exchange.BINANCE):
        key = await make_key(exchange, ips=["127.0.0.1"])
        assert (await client.register("trader", exchange, key.api_key, key.secret)).ok
    cases = WITHDRAWALS + PATH_TRICKS
    for exchange, method, path, query, body in cases:
        reply = await bus.request(sign_request(exchange, method, path, query, body), SignReply)
        assert not reply.ok, path
        assert reply.error is not None
        assert reply.error.code == "endpoint_refused"
        assert reply.signature == ""
        assert reply.api_key == ""
    refused = await migrated.fetch(
        "SELECT detail FROM audit_log WHERE action = 'sign_refused' ORDER BY id"
    )
    assert len(refused) == len(cases)
    assert await migrated.fetchval("SELECT count(*) FROM audit_log WHERE action = 'sign'") == 0


async def test_a_timestamp_far_from_now_is_not_signed(
    vault: RunningVault,
    client: VaultClient,
    bus: Bus,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    import time

    key = await make_key(Exchange.BYBIT, ips=["127.0.0.1"])
    assert (await client.register("trader", Exchange.BYBIT, key.api_key, key.secret)).ok
    now_ms = int(time.time() * 1000)
    for timestamp in (now_ms - 3_600_000, now_ms + 3_600_000):
        request = sign_request(
            Exchange.BYBIT, "GET", "/v5/account/wallet-balance", "accountType=UNIFIED", ""
        ).model_copy(update={"timestamp_ms": timestamp, "send": True})
        reply = await bus.request(request, SignReply)
        assert not reply.ok
        assert reply.error is not None
        assert reply.error.code == "timestamp_out_of_range"
        assert reply.signature == ""
    fresh = sign_request(
        Exchange.BYBIT, "GET", "/v5/account/wallet-balance", "accountType=UNIFIED", ""
    ).model_copy(update={"timestamp_ms": now_ms, "send": True})
    assert (await bus.request(fresh, SignReply)).ok
    refused = await migrated.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'sign_refused'"
    )
    assert refused == 2


async def test_the_vault_signer_raises_typed_errors(
    vault: RunningVault, bus: Bus, client: VaultClient, make_key: Callable[..., Any]
) -> None:
    from marketbot.exchanges.signer import SigningInput

    withdraw = SigningInput(Exchange.BYBIT, "POST", "/v5/asset/withdraw/create", "", "{}", 1, 5000)
    with pytest.raises(SigningRefusedError):
        await VaultSigner(bus, "nobody", Exchange.BYBIT).sign(withdraw)
    time_query = ws_auth_request(now_ms())
    with pytest.raises(Rejected) as caught:
        await VaultSigner(bus, "nobody", Exchange.BYBIT).sign(time_query)
    assert caught.value.reason is RejectReason.INVALID_KEY
    # an unverified (rejected) key does not sign either
    key = await make_key(Exchange.BYBIT, withdraw=True)
    assert not (await client.register("w", Exchange.BYBIT, key.api_key, key.secret)).ok
    with pytest.raises(Rejected):
        await VaultSigner(bus, "w", Exchange.BYBIT).sign(time_query)


class FlakyVenue:
    """Wraps a real venue; ``broken`` makes key_permissions fail as a deleted key does."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.broken = False

    async def key_permissions(self, signer: Signer) -> KeyPermissions:
        if self.broken:
            raise Rejected("API key is invalid.", reason=RejectReason.INVALID_KEY, code=10003)
        return await self.venue.key_permissions(signer)


class FlakyVenues:
    def __init__(self, url: str) -> None:
        self.flaky = FlakyVenue(create_venue(Exchange.BYBIT, url))

    def venue(self, exchange: Exchange) -> Any:
        return self.flaky


async def test_periodic_reverification_disables_a_key_that_stopped_working(
    vaults: VaultFactory,
    client: VaultClient,
    bus: Bus,
    sim: RunningSim,
    make_key: Callable[..., Any],
) -> None:
    venues = FlakyVenues(sim.bybit_url)
    running = await vaults.start(venues=venues)
    key = await make_key(Exchange.BYBIT, ips=["127.0.0.1"])
    assert (await client.register("user-p", Exchange.BYBIT, key.api_key, key.secret)).ok
    signer = VaultSigner(bus, "user-p", Exchange.BYBIT)

    account = ws_auth_request(now_ms())
    assert (await signer.sign(account)).api_key == key.api_key

    venues.flaky.broken = True
    # not due yet: nothing happens
    assert await handlers.reverify_due(running.vault, interval=timedelta(hours=1)) == 0
    assert await handlers.reverify_due(running.vault, interval=timedelta(0)) == 1
    await eventually(lambda: _types(bus, ["ApiKeyStored", "ApiKeyVerified", "ApiKeyRevoked"]))
    status = (await client.status("user-p")).keys[0]
    assert (status.enabled, status.verified, status.active) == (False, False, True)
    with pytest.raises(Rejected):
        await signer.sign(account)
    # disabled keys are not re-checked periodically...
    assert await handlers.reverify_due(running.vault, interval=timedelta(0)) == 0
    # ...but on demand, once the key works again, it is enabled again
    venues.flaky.broken = False
    again = await client.verify("user-p", Exchange.BYBIT)
    assert again.ok
    assert again.key
    assert again.key.enabled
    assert again.key.verified
    assert (await signer.sign(account)).api_key == key.api_key
    await venues.flaky.venue.aclose()


async def _types(bus: Bus, wanted: list[str]) -> bool:
    return await event_types(bus) == wanted


async def test_the_audit_log_is_append_only(
    vault: RunningVault, client: VaultClient, migrated: asyncpg.Pool, make_key: Callable[..., Any]
) -> None:
    key = await make_key(Exchange.BYBIT, ips=["127.0.0.1"])
    assert (await client.register("user-a", Exchange.BYBIT, key.api_key, key.secret)).ok
    with pytest.raises(asyncpg.RaiseError):
        await migrated.execute("UPDATE audit_log SET outcome = 'forged'")
    with pytest.raises(asyncpg.RaiseError):
        await migrated.execute("DELETE FROM audit_log")
    with pytest.raises(asyncpg.RaiseError):
        await migrated.execute("TRUNCATE audit_log")


async def test_a_malformed_sign_request_gets_a_typed_refusal(vault: RunningVault, bus: Bus) -> None:
    response = await bus.nc.request(
        bus.subject("keyvault.sign.bybit"), b'{"type":"SignRequest"}', 5
    )
    reply = SignReply.model_validate_json(response.data)
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "invalid_request"
    assert reply.signature == ""


async def test_a_sign_request_for_another_exchange_than_its_subject_is_refused(
    vault: RunningVault, bus: Bus
) -> None:
    """NATS lets executor-bybit publish only on keyvault.sign.bybit; a body naming Binance
    there is refused, so the per-exchange permission cannot be sidestepped."""
    request = sign_request(Exchange.BINANCE, "GET", "/api/v3/account", "timestamp=1", "")
    response = await bus.nc.request(bus.subject("keyvault.sign.bybit"), request.to_json(), 5)
    reply = SignReply.model_validate_json(response.data)
    assert not reply.ok
    assert reply.error is not None
    assert (reply.error.code, reply.error.field) == ("invalid_request", "exchange")
    assert reply.signature == ""


def now_ms() -> int:
    return int(time.time() * 1000)
