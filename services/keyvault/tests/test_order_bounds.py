"""An order is signed only within the order request that asked for it (docs/security.md).

Entries name their request (same user, symbol, side, client order id; limit price at most
reference + max_entry_price_percent; notional at most the blueprint's size for the balance
the vault read itself); sells name the entries they sell from and sell at most what was
signed for them. Every refusal is audited with the field and the rule.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from marketbot.contracts import Exchange
from marketbot.contracts.vault import SignReply, SignRequest
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.signing import signing_policy
from marketbot.exchanges.venue import Balance, Venue
from marketbot.keyvault.adapters.venues import VenuePool
from marketbot.keyvault.client import VaultClient
from marketbot.keyvault.settings import KeyvaultSettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import SystemClock
from marketbot.sim.testing import RunningSim

from .conftest import VaultFactory
from .helpers import order_requested

MAX_SIGNS = KeyvaultSettings.model_fields["max_signs_per_order"].default
USER = "bounded"


def now_ms() -> int:
    return int(time.time() * 1000)


def binance_order(
    cid: str,
    *,
    side: str = "BUY",
    type_: str = "LIMIT",
    quantity: str = "0.5",
    price: str | None = "100",
    symbol: str = "BTCUSDT",
) -> str:
    params = [f"symbol={symbol}", f"side={side}", f"type={type_}"]
    if type_ == "LIMIT":
        params.append("timeInForce=IOC")
    params.append(f"quantity={quantity}")
    if price is not None:
        params.append(f"price={price}")
    params += [f"newClientOrderId={cid}", "newOrderRespType=FULL"]
    return "&".join(params)


def sign(
    query: str,
    *,
    user_id: str = USER,
    request_id: uuid.UUID | None = None,
    entries: tuple[str, ...] = (),
    path: str = "/api/v3/order",
) -> SignRequest:
    stamp = now_ms()
    return SignRequest(
        occurred_at=datetime.now(UTC),
        correlation_id=f"bounds-{uuid.uuid4().hex[:8]}",
        user_id=user_id,
        exchange=Exchange.BINANCE,
        method="POST",
        path=path,
        query=f"{query}&recvWindow=5000&timestamp={stamp}",
        timestamp_ms=stamp,
        recv_window_ms=5000,
        request_id=request_id,
        entries=entries,
        # POST /api/v3/order is sent by the vault itself; the OCO list's signature is given
        send=signing_policy(Exchange.BINANCE).sent_by_vault("POST", path),
    )


async def refused(bus: Bus, request: SignRequest) -> tuple[str, str | None, str]:
    reply = await bus.request(request, SignReply)
    assert not reply.ok, request.query
    assert reply.signature == ""
    assert reply.error is not None
    return reply.error.code, reply.error.field, reply.error.message


async def signed(bus: Bus, request: SignRequest) -> None:
    """Signed: the signature, or (sent by the vault) the exchange's answer to it."""
    reply = await bus.request(request, SignReply)
    assert reply.ok, reply.error
    if request.send:
        assert reply.status > 0
        assert reply.signature == ""
    else:
        assert reply.signature


class CountingVenues:
    """The real venues; counts the balance reads the vault makes."""

    def __init__(self, sim: RunningSim) -> None:
        self.pool = VenuePool(
            {Exchange.BYBIT: sim.bybit_url, Exchange.BINANCE: sim.binance_url}, SystemClock()
        )
        self.balance_reads = 0

    def venue(self, exchange: Exchange) -> Venue:
        real = self.pool.venue(exchange)
        counter = self

        class Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            async def balance(self, signer: Signer, asset: str) -> Balance:
                counter.balance_reads += 1
                return await real.balance(signer, asset)

        return Counting()  # type: ignore[return-value]


async def registered(
    client: VaultClient, sim: RunningSim, make_key: Callable[..., Any], user_id: str = USER
) -> str:
    key = await make_key(Exchange.BINANCE, ips=["127.0.0.1"])
    await sim.binance_admin.fund(key.account_id, "USDT", Decimal(1000))
    assert (await client.register(user_id, Exchange.BINANCE, key.api_key, key.secret)).ok
    return str(key.account_id)


async def test_an_entry_is_signed_only_within_its_request(
    vaults: VaultFactory,
    client: VaultClient,
    bus: Bus,
    sim: RunningSim,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    await vaults.start(request_wait_s=0.1)
    await registered(client, sim, make_key)
    # reference 100, risk high, 1000 USDT: size max(10, min(5 %, 10 %) of 1000) = 50,
    # + 0.5 % slippage = 50.25 at most; limit at most 100 + 2 % = 102
    request = await order_requested(
        bus, migrated, user_id=USER, exchange=Exchange.BINANCE, reference_price=Decimal(100)
    )
    other = await order_requested(
        bus,
        migrated,
        user_id="someone-else",
        exchange=Exchange.BINANCE,
        reference_price=Decimal(100),
    )
    cid, rid = request.client_order_id, request.request_id
    cases = [
        (sign(binance_order(cid)), "request_id", "names_request"),
        (
            sign(binance_order(other.client_order_id), request_id=other.request_id),
            "user_id",
            "matches_request",
        ),
        (sign(binance_order(cid, symbol="ETHUSDT"), request_id=rid), "symbol", "matches_request"),
        (sign(binance_order("mb-forged"), request_id=rid), "client_order_id", "matches_request"),
        (
            sign(binance_order(cid, type_="MARKET", price=None), request_id=rid),
            "type",
            "limit_entry",
        ),
        (sign(binance_order(cid, price="102.5"), request_id=rid), "price", "max_entry_price"),
        (
            sign(binance_order(cid, quantity="0.51"), request_id=rid),
            "quantity",
            "max_position_size",
        ),
    ]
    for request_, field, rule in cases:
        code, got_field, message = await refused(bus, request_)
        assert (code, got_field) == ("order_refused", field), message
        assert f"rule {rule}" in message
    code, got_field, _ = await refused(bus, sign(binance_order(cid), request_id=uuid.uuid4()))
    assert (code, got_field) == ("order_request_unknown", "request_id")
    # within every bound: signed (0.5 at 100 = 50 <= 50.25; 101 <= 102)
    await signed(bus, sign(binance_order(cid, price="100.5", quantity="0.5"), request_id=rid))
    rows = await migrated.fetch(
        "SELECT detail FROM audit_log WHERE action = 'sign_refused' ORDER BY id"
    )
    details = [json.loads(r["detail"]) for r in rows]
    named = [(d["field"], d["rule"]) for d in details]
    assert named[: len(cases)] == [(f, r) for _, f, r in cases]


async def test_allocation_caps_the_size(
    vault: Any,
    client: VaultClient,
    bus: Bus,
    sim: RunningSim,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    await registered(client, sim, make_key)
    # allocation 100 of the 1000 USDT: size max(10, min(5, 10)) = 10 (+0.5 %)
    request = await order_requested(
        bus,
        migrated,
        user_id=USER,
        exchange=Exchange.BINANCE,
        reference_price=Decimal(100),
        allocation=Decimal(100),
    )
    code, field, _ = await refused(
        bus,
        sign(binance_order(request.client_order_id, quantity="0.2"), request_id=request.request_id),
    )
    assert (code, field) == ("order_refused", "quantity")
    await signed(
        bus,
        sign(binance_order(request.client_order_id, quantity="0.1"), request_id=request.request_id),
    )


async def test_the_balance_is_read_again_only_when_an_order_exceeds_it(
    vaults: VaultFactory,
    client: VaultClient,
    bus: Bus,
    sim: RunningSim,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    venues = CountingVenues(sim)
    try:
        await vaults.start(venues=venues)
        account = await registered(client, sim, make_key)
        assert venues.balance_reads == 1  # at verification, with the user's own key

        async def entry(quantity: str) -> SignRequest:
            request = await order_requested(
                bus, migrated, user_id=USER, exchange=Exchange.BINANCE, reference_price=Decimal(100)
            )
            query = binance_order(request.client_order_id, quantity=quantity)
            return sign(query, request_id=request.request_id)

        for _ in range(3):  # the common case: no request to the exchange
            await signed(bus, await entry("0.5"))
        assert venues.balance_reads == 1
        # a deposit: an order above the cached size makes the vault read the balance again
        await sim.binance_admin.fund(account, "USDT", Decimal(1000))
        await signed(bus, await entry("0.9"))  # 90 <= 5 % of 2000 = 100 (+0.5 %)
        assert venues.balance_reads == 2
        code, field, _ = await refused(bus, await entry("1.1"))  # 110 > 100.5
        assert (code, field) == ("order_refused", "quantity")
        assert venues.balance_reads == 3
    finally:
        await venues.pool.aclose()


async def test_a_request_is_signed_a_bounded_number_of_times(
    vault: Any,
    client: VaultClient,
    bus: Bus,
    sim: RunningSim,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    await registered(client, sim, make_key)
    request = await order_requested(
        bus, migrated, user_id=USER, exchange=Exchange.BINANCE, reference_price=Decimal(100)
    )
    query = binance_order(request.client_order_id)
    for _ in range(MAX_SIGNS):  # the first send and its resends
        await signed(bus, sign(query, request_id=request.request_id))
    code, field, message = await refused(bus, sign(query, request_id=request.request_id))
    assert (code, field) == ("order_refused", "request_id")
    assert "rule max_signs" in message


async def test_a_sell_is_bounded_by_the_entries_the_vault_signed(
    vault: Any,
    client: VaultClient,
    bus: Bus,
    sim: RunningSim,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    await registered(client, sim, make_key)
    await registered(client, sim, make_key, user_id="neighbour")
    entry = await order_requested(
        bus, migrated, user_id=USER, exchange=Exchange.BINANCE, reference_price=Decimal(100)
    )
    unsigned = await order_requested(
        bus, migrated, user_id=USER, exchange=Exchange.BINANCE, reference_price=Decimal(100)
    )
    await signed(
        bus, sign(binance_order(entry.client_order_id, quantity="0.4"), request_id=entry.request_id)
    )
    cid = entry.client_order_id
    sell = binance_order("mb-close-1", side="SELL", type_="MARKET", price=None, quantity="0.4")
    too_much = binance_order("mb-close-1", side="SELL", type_="MARKET", price=None, quantity="0.41")
    cases = [
        (sign(sell), "entries", "names_entries"),
        (sign(sell, entries=(unsigned.client_order_id,)), "entries", "signed_entry"),
        (sign(sell, entries=("mb-nowhere",)), "entries", "signed_entry"),
        (sign(sell, entries=(cid, cid)), "entries", "names_entries"),
        (sign(too_much, entries=(cid,)), "quantity", "max_sell_quantity"),
        (sign(sell, entries=(cid,), user_id="neighbour"), "user_id", "matches_entry"),
        (
            sign(
                binance_order("mb-close-1", side="SELL", quantity="0.4", symbol="ETHUSDT"),
                entries=(cid,),
            ),
            "symbol",
            "matches_entry",
        ),
    ]
    for request_, field, rule in cases:
        code, got_field, message = await refused(bus, request_)
        assert (code, got_field) == ("order_refused", field), message
        assert f"rule {rule}" in message
    await signed(bus, sign(sell, entries=(cid,)))
    # a protection list (OCO) sells from the entry too
    oco = (
        "symbol=BTCUSDT&listClientOrderId=ol-1&side=SELL&quantity=0.4"
        "&aboveType=TAKE_PROFIT&aboveStopPrice=110&aboveClientOrderId=tp-1"
        "&belowType=STOP_LOSS&belowStopPrice=95&belowClientOrderId=sl-1&newOrderRespType=RESULT"
    )
    await signed(bus, sign(oco, entries=(cid,), path="/api/v3/orderList/oco"))
    code, field, _ = await refused(
        bus,
        sign(
            oco.replace("quantity=0.4", "quantity=4"), entries=(cid,), path="/api/v3/orderList/oco"
        ),
    )
    assert (code, field) == ("order_refused", "quantity")


async def test_orders_are_bounded_on_bybit_too(
    vault: Any,
    client: VaultClient,
    bus: Bus,
    sim: RunningSim,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    """Bybit's spot market Buy is sized in quote by default (order_create-order.mdx qty row):
    the vault reads it as a quote amount, and refuses it as an entry (no price bound)."""
    key = await make_key(Exchange.BYBIT, ips=["127.0.0.1"])
    await sim.bybit_admin.fund(key.account_id, "USDT", Decimal(1000))
    assert (await client.register(USER, Exchange.BYBIT, key.api_key, key.secret)).ok
    request = await order_requested(
        bus, migrated, user_id=USER, exchange=Exchange.BYBIT, reference_price=Decimal(100)
    )

    def bybit(body: str) -> SignRequest:
        stamp = now_ms()
        return SignRequest(
            occurred_at=datetime.now(UTC),
            correlation_id="bounds-bybit",
            user_id=USER,
            exchange=Exchange.BYBIT,
            method="POST",
            path="/v5/order/create",
            body=body,
            timestamp_ms=stamp,
            recv_window_ms=5000,
            request_id=request.request_id,
            send=True,  # every Bybit REST request is sent by the vault itself
        )

    cid = request.client_order_id
    market = (
        '{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market",'
        f'"qty":"5000","orderLinkId":"{cid}"}}'
    )
    code, field, _ = await refused(bus, bybit(market))
    assert (code, field) == ("order_refused", "type")
    limit = (
        '{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit",'
        f'"qty":"0.5","price":"100","timeInForce":"IOC","orderLinkId":"{cid}"}}'
    )
    await signed(bus, bybit(limit))
