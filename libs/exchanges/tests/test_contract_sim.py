"""One contract suite, run against both venues on the exchange simulator."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio

from marketbot.contracts import Exchange, RejectReason, Side
from marketbot.exchanges.base import BaseVenue
from marketbot.exchanges.breaker import BreakerState
from marketbot.exchanges.errors import CircuitOpenError, IpBannedError, OutcomeUnknown, Rejected
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import Endpoint, HttpSettings
from marketbot.exchanges.retry import RetryPolicy
from marketbot.exchanges.signer import LocalSigner
from marketbot.exchanges.transport import HttpClient
from marketbot.exchanges.venue import (
    KlineInterval,
    OrderRequest,
    OrderStatus,
    OrderType,
    ProtectionSpec,
    TimeInForce,
)
from marketbot.runtime.testing import eventually
from marketbot.sim.admin import SimAdmin

pytestmark = pytest.mark.xdist_group("exchange-sim")

TIME_PATH = {Exchange.BYBIT: "/v5/market/time", Exchange.BINANCE: "/api/v3/time"}
ORDER_PATH = {Exchange.BYBIT: "/v5/order/create", Exchange.BINANCE: "/api/v3/order"}


class CountingTransport:
    """The production client (aiohttp, ``transport.py``) under the venue, counting response
    statuses (to prove zero 429s)."""

    def __init__(self, venue: BaseVenue) -> None:
        self.inner: HttpClient = venue.http.client
        self.statuses: Counter[int] = Counter()
        venue.http.client = self

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], content: str | None
    ) -> httpx.Response:
        response = await self.inner.request(method, url, headers=headers, content=content)
        self.statuses[response.status_code] += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Env:
    exchange: Exchange
    venue: BaseVenue
    signer: LocalSigner
    admin: SimAdmin
    account_id: str
    transport: CountingTransport
    vault_signer: LocalSigner

    async def ground_truth(self, client_order_id: str) -> list[dict[str, Any]]:
        orders = await self.admin.orders(self.account_id)
        return [o for o in orders if client_order_id in o.values()]

    async def ground_truth_all(self) -> list[dict[str, Any]]:
        return await self.admin.orders(self.account_id)


def settings(**http: Any) -> VenueSettings:
    base: dict[str, Any] = {
        "recv_window_ms": 3000,
        "retry": RetryPolicy(max_attempts=3, base_delay_s=0.05),
    }
    base.update(http)
    return VenueSettings(http=HttpSettings(**base), market_ttl_s=1.0)


@pytest_asyncio.fixture(params=list(Exchange), ids=lambda e: e.value)
async def env(request: pytest.FixtureRequest, sim: Any) -> AsyncIterator[Env]:
    exchange: Exchange = request.param
    admin: SimAdmin = sim.bybit_admin if exchange is Exchange.BYBIT else sim.binance_admin
    url = sim.bybit_url if exchange is Exchange.BYBIT else sim.binance_url
    account = await admin.create_account()
    await admin.fund(account, "USDT", Decimal("100000"))
    key, secret = await admin.create_api_key(account)
    venue = create_venue(exchange, url, settings=settings())
    transport = CountingTransport(venue)
    yield Env(
        exchange,
        venue,
        LocalSigner(key, secret),
        admin,
        account,
        transport,
        LocalSigner(key, secret, internal=True),
    )
    await venue.aclose()


def new_id() -> str:
    return f"t-{uuid.uuid4().hex[:24]}"


# ---- clock, connectivity, market data ---------------------------------------------


async def test_connectivity_and_server_time(env: Env) -> None:
    assert await env.venue.check_connectivity() < 5
    offset = await env.venue.sync_clock()
    assert abs(offset) < 1000
    assert (await env.venue.server_time()).year >= 2024


async def test_clock_offset_is_remeasured_after_a_timestamp_rejection(env: Env) -> None:
    await env.venue.balances(env.signer)
    await env.admin.set_clock_offset(15_000)
    try:
        balances = await env.venue.balances(env.signer)
        assert any(b.asset == "USDT" for b in balances)
        assert env.venue.clock_offset_ms > 10_000
    finally:
        await env.admin.set_clock_offset(0)


async def test_market_data(env: Env) -> None:
    ticker = await env.venue.ticker("BTCUSDT")
    assert ticker.last_price > 0
    assert await env.venue.price("BTCUSDT") == ticker.last_price
    assert {t.symbol for t in await env.venue.tickers(["BTCUSDT", "ETHUSDT"])} == {
        "BTCUSDT",
        "ETHUSDT",
    }
    candles = await env.venue.klines("BTCUSDT", KlineInterval.M1, limit=5)
    assert 0 < len(candles) <= 5
    assert candles == sorted(candles, key=lambda k: k.open_time)
    filters = await env.venue.instrument("BTCUSDT")
    assert (filters.base_asset, filters.quote_asset) == ("BTC", "USDT")
    assert filters.qty_step > 0
    assert filters.tick_size > 0
    assert filters.min_notional > 0


async def test_unknown_symbol_is_rejected(env: Env) -> None:
    with pytest.raises(Rejected):
        await env.venue.instrument("NOPEUSDT")


# ---- account ----------------------------------------------------------------------


async def test_account_balances_and_permissions(env: Env) -> None:
    usdt = await env.venue.balance(env.signer, "USDT")
    assert usdt.free == Decimal("100000")
    info = await env.venue.account_info(env.signer)
    assert info.can_trade
    permissions = await env.venue.key_permissions(env.vault_signer)
    assert permissions.can_read
    assert permissions.can_trade
    assert not permissions.can_withdraw

    read_key, read_secret = await env.admin.create_api_key(env.account_id, trade=False)
    read_only = await env.venue.key_permissions(LocalSigner(read_key, read_secret, internal=True))
    assert read_only.can_read
    assert not read_only.can_trade


async def test_a_wrong_secret_is_an_invalid_key(env: Env) -> None:
    wrong = LocalSigner(env.signer.api_key, "not-the-secret")
    with pytest.raises(Rejected) as caught:
        await env.venue.balances(wrong)
    assert caught.value.reason is RejectReason.INVALID_KEY


# ---- orders ---------------------------------------------------------------------------


async def test_market_buy_fills_and_is_found_by_both_ids(env: Env) -> None:
    client_id = new_id()
    order = OrderRequest(
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal("0.01"),
        client_order_id=client_id,
    )
    state = await env.venue.place_order(env.signer, order)
    assert state.client_order_id == client_id
    assert state.status is OrderStatus.FILLED
    assert state.filled_quantity == Decimal("0.01")
    assert state.average_price is not None
    assert state.average_price > 0
    by_client = await env.venue.get_order(env.signer, "BTCUSDT", client_order_id=client_id)
    assert by_client is not None
    assert by_client.exchange_order_id == state.exchange_order_id
    by_id = await env.venue.get_order(
        env.signer, "BTCUSDT", exchange_order_id=state.exchange_order_id
    )
    assert by_id is not None
    assert by_id.client_order_id == client_id
    assert await env.venue.get_order(env.signer, "BTCUSDT", client_order_id=new_id()) is None
    history = await env.venue.order_history(env.signer, "BTCUSDT")
    assert client_id in {o.client_order_id for o in history}
    btc = await env.venue.balance(env.signer, "BTC")
    assert btc.total > 0


async def test_trades_are_the_exchanges_fill_records(env: Env) -> None:
    """Venue.trades reads Binance myTrades / Bybit execution/list: the fee in the asset
    actually charged (a buy's in base, a sell's in quote), the exchange's time and ids."""
    buy = await env.venue.place_order(
        env.signer,
        OrderRequest(
            symbol="ETHUSDT",
            side=Side.BUY,
            order_type=OrderType.MARKET,
            quantity=Decimal("0.1"),
            client_order_id=new_id(),
        ),
    )
    sell = await env.venue.place_order(
        env.signer,
        OrderRequest(
            symbol="ETHUSDT",
            side=Side.SELL,
            order_type=OrderType.MARKET,
            quantity=Decimal("0.05"),
            client_order_id=new_id(),
        ),
    )
    bought = await env.venue.trades(env.signer, "ETHUSDT", exchange_order_id=buy.exchange_order_id)
    sold = await env.venue.trades(env.signer, "ETHUSDT", exchange_order_id=sell.exchange_order_id)
    assert sum(f.quantity for f in bought) == buy.filled_quantity == Decimal("0.1")
    assert {f.exchange_order_id for f in bought} == {buy.exchange_order_id}
    assert {f.fee_asset for f in bought} == {"ETH"}
    assert {f.fee_asset for f in sold} == {"USDT"}
    assert sum(f.fee for f in bought) == Decimal("0.0001")  # 0.1 % of 0.1 ETH
    assert all(f.is_maker is False for f in bought + sold)
    assert all(f.trade_id for f in bought + sold)
    first, last = bought[0].filled_at, sold[-1].filled_at
    assert first is not None
    assert last is not None
    assert first <= last
    ground = await env.ground_truth(buy.client_order_id)
    assert Decimal(ground[0]["fee"]) == sum(f.fee for f in bought)
    none = await env.venue.trades(env.signer, "ETHUSDT", exchange_order_id="999999")
    assert none == []


async def test_market_buy_by_quote_amount(env: Env) -> None:
    order = OrderRequest(
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quote_quantity=Decimal("100"),
        client_order_id=new_id(),
    )
    state = await env.venue.place_order(env.signer, order)
    assert state.status is OrderStatus.FILLED
    assert state.filled_quote_quantity is not None
    assert Decimal("95") <= state.filled_quote_quantity <= Decimal("100")


async def test_limit_order_rests_then_cancels(env: Env) -> None:
    price = await env.venue.price("BTCUSDT")
    client_id = new_id()
    order = OrderRequest(
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        quantity=Decimal("0.001"),
        price=(price * Decimal("0.5")).quantize(Decimal("0.1")),
        client_order_id=client_id,
    )
    state = await env.venue.place_order(env.signer, order)
    assert state.status is OrderStatus.NEW
    assert client_id in {
        o.client_order_id for o in await env.venue.open_orders(env.signer, "BTCUSDT")
    }
    cancelled = await env.venue.cancel_order(env.signer, "BTCUSDT", client_order_id=client_id)
    assert cancelled.status is OrderStatus.CANCELED
    assert cancelled.client_order_id == client_id  # the order's own id, not the cancel's
    assert client_id not in {
        o.client_order_id for o in await env.venue.open_orders(env.signer, "BTCUSDT")
    }


async def test_a_bounded_entry_then_its_protection_every_leg_known_by_its_own_id(
    env: Env,
) -> None:
    price = await env.venue.price("BTCUSDT")
    entry_id = new_id()
    entry = await env.venue.place_order(
        env.signer,
        OrderRequest(
            symbol="BTCUSDT",
            side=Side.BUY,
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.IOC,
            price=price * Decimal("1.005"),
            quantity=Decimal("0.01"),
            client_order_id=entry_id,
        ),
    )
    assert entry.status is OrderStatus.FILLED
    fills = await env.venue.trades(env.signer, "BTCUSDT", exchange_order_id=entry.exchange_order_id)
    assert sum(f.quantity for f in fills) == entry.filled_quantity
    # a buy's commission is charged in the asset received (rest-api.md "Account trade list")
    assert {f.fee_asset for f in fills} == {"BTC"}
    held = entry.filled_quantity - sum(f.fee for f in fills)
    spec = ProtectionSpec(
        symbol="BTCUSDT",
        exit_side=Side.SELL,
        quantity=held,
        take_profit=price * Decimal("1.05"),
        stop_loss=price * Decimal("0.95"),
        client_id=entry_id,
    )
    # The first attempt places without looking (nothing can be there yet).
    protection = await env.venue.protect(env.signer, spec, first_attempt=True)
    assert protection.working
    ids = {leg.client_order_id for leg in protection.legs}
    assert len(ids) == len(protection.legs) == 2
    assert all(leg_id.startswith(("tp-", "sl-")) for leg_id in ids)
    native = [leg for leg in protection.legs if leg.native]
    assert native, "at least the stop loss rests on the exchange"
    before = await env.ground_truth_all()
    # Idempotent: protecting again finds the legs by their ids and places nothing.
    again = await env.venue.protect(env.signer, spec)
    assert {leg.client_order_id for leg in again.legs} == ids
    assert len(await env.ground_truth_all()) == len(before)
    # Sent as a first attempt again, the open legs' ids are refused as duplicates and read.
    duplicate = await env.venue.protect(env.signer, spec, first_attempt=True)
    assert {leg.client_order_id for leg in duplicate.legs} == ids
    assert len(await env.ground_truth_all()) == len(before)
    read = await env.venue.protection(env.signer, spec)
    assert read is not None
    assert read.working
    # What the first attempt recorded from the create's answer is what the exchange holds.
    placed = {leg.client_order_id: leg.exchange_order_id for leg in protection.legs}
    assert all(placed[leg.client_order_id] for leg in protection.legs if leg.native)
    for leg in read.legs:
        if leg.native and leg.exchange_order_id is not None:
            assert leg.exchange_order_id == placed[leg.client_order_id]
    ended = await env.venue.unprotect(env.signer, spec)
    assert ended is not None
    assert not any(leg.open for leg in ended.legs)
    assert ended.executed is None


async def test_insufficient_balance_is_rejected_with_the_reason(env: Env) -> None:
    order = OrderRequest(
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal("40"),
        client_order_id=new_id(),
    )
    with pytest.raises(Rejected) as caught:
        await env.venue.place_order(env.signer, order)
    assert caught.value.reason is RejectReason.INSUFFICIENT_BALANCE


async def test_below_minimum_notional_is_a_filter_rejection(env: Env) -> None:
    order = OrderRequest(
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal("0.00002"),
        client_order_id=new_id(),
    )
    with pytest.raises(Rejected) as caught:
        await env.venue.place_order(env.signer, order)
    assert caught.value.reason is RejectReason.FILTER


async def test_positions_are_empty_for_a_spot_account(env: Env) -> None:
    assert await env.venue.positions(env.signer) == []


# ---- faults -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "executed"),
    [("executed_drop", True), ("executed_5xx", True), ("drop", False), ("http_5xx", False)],
)
async def test_a_lost_order_response_is_raised_and_the_venue_never_resends(
    env: Env, fault: str, executed: bool
) -> None:
    """One resend policy: the venue submits once; a lost answer is OutcomeUnknown, and the
    lookup by client id tells whether it exists (the engine decides what follows)."""
    client_id = new_id()
    await env.admin.set_fault(fault, next_n=1, path=ORDER_PATH[env.exchange])
    try:
        order = OrderRequest(
            symbol="BTCUSDT",
            side=Side.BUY,
            order_type=OrderType.MARKET,
            quantity=Decimal("0.001"),
            client_order_id=client_id,
        )
        with pytest.raises(OutcomeUnknown):
            await env.venue.place_order(env.signer, order)
    finally:
        await env.admin.clear_faults()
    found = await env.venue.get_order(env.signer, "BTCUSDT", client_order_id=client_id)
    assert (found is not None) is executed
    assert len(await env.ground_truth(client_id)) == (1 if executed else 0)


async def test_burst_of_1000_stays_under_the_limits_with_zero_429(env: Env) -> None:
    # Earlier tests' venues spent this IP's budget too; start from a clean window, as one
    # venue per process (the production shape) would see it.
    await env.admin.set_limits(True)
    endpoint = Endpoint("GET", TIME_PATH[env.exchange])
    results = await asyncio.gather(*(env.venue.http.call(endpoint) for _ in range(1000)))
    assert len(results) == 1000
    assert env.transport.statuses[429] == 0
    assert env.transport.statuses[403] == 0
    assert env.transport.statuses[418] == 0
    assert env.transport.statuses[200] >= 1000


async def test_breaker_opens_on_5xx_and_recovers(env: Env, sim: Any) -> None:
    url = sim.bybit_url if env.exchange is Exchange.BYBIT else sim.binance_url
    venue = create_venue(
        env.exchange,
        url,
        settings=settings(
            breaker_failure_threshold=3,
            breaker_reset_timeout_s=0.5,
            retry=RetryPolicy(max_attempts=1),
        ),
    )
    endpoint = Endpoint("GET", TIME_PATH[env.exchange])
    await env.admin.set_fault("http_5xx", next_n=3, path=TIME_PATH[env.exchange], status=503)
    try:
        for _ in range(3):
            with pytest.raises(Exception):  # noqa: B017, PT011 - OutcomeUnknown for a read
                await venue.http.send_once(endpoint, {})
        assert venue.http.breaker(endpoint).state is BreakerState.OPEN
        with pytest.raises(CircuitOpenError):
            await venue.http.send_once(endpoint, {})

        async def recovered() -> bool:
            try:
                await venue.http.send_once(endpoint, {})
            except CircuitOpenError:
                return False
            return True

        await eventually(recovered, timeout=5)
        assert venue.http.breaker(endpoint).state is BreakerState.CLOSED
    finally:
        await env.admin.clear_faults()
        await venue.aclose()


async def test_ip_ban_stops_all_traffic_until_it_ends(env: Env, sim: Any) -> None:
    """Binance 418 (Retry-After) / Bybit 403: the client stops sending until the ban ends."""
    url = sim.bybit_url if env.exchange is Exchange.BYBIT else sim.binance_url
    previous = await env.admin.set_limits(True)
    tight = {"ip_limit": 30} if env.exchange is Exchange.BYBIT else {"weight_limit": 30}
    await env.admin.set_limits(True, ban_seconds=2, **tight)
    venue = create_venue(env.exchange, url, settings=settings(ban_fallback_s=2.0))
    transport = CountingTransport(venue)
    try:
        async with httpx.AsyncClient(base_url=url) as raw:  # someone else behind our IP
            for _ in range(200):
                response = await raw.get(TIME_PATH[env.exchange])
                if response.status_code in (403, 418):
                    break
            assert response.status_code in (403, 418)
        with pytest.raises(IpBannedError) as caught:
            await venue.check_connectivity()
        assert 0 < caught.value.retry_after_s <= 5
        sent = sum(transport.statuses.values())
        for _ in range(5):
            with pytest.raises(IpBannedError):
                await venue.server_time()
        assert sum(transport.statuses.values()) == sent  # nothing went out during the ban
        # let the exchange's window room again, keeping its ban and counters as they are
        roomy = {"ip_limit": 600} if env.exchange is Exchange.BYBIT else {"weight_limit": 6000}
        await env.admin.set_limits(True, clear=False, **roomy)

        async def back() -> bool:
            try:
                await venue.check_connectivity()
            except IpBannedError:
                return False
            return True

        await eventually(back, timeout=10, interval=0.2)
    finally:
        restore = {
            k: previous[k] for k in ("ban_seconds", "ip_limit", "weight_limit") if k in previous
        }
        await env.admin.set_limits(True, **restore)
        await venue.aclose()
