"""Venue behaviour on documented payloads: parsing, order building, TP/SL, reconciliation."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from marketbot.contracts import Exchange, Side
from marketbot.exchanges.errors import OutcomeUnknown
from marketbot.exchanges.signer import LocalSigner
from marketbot.exchanges.venue import (
    ExitKind,
    KlineInterval,
    OrderRequest,
    OrderStatus,
    OrderType,
    ProtectionSpec,
    TimeInForce,
    Venue,
    leg_client_id,
)

from .fakes import FakeExchange, bybit_ok, make_venue, respond

SIGNER = LocalSigner("key", "secret")
VAULT_SIGNER = LocalSigner("key", "secret", internal=True)  # the vault's own key checks

# market_instrument.mdx (spot example)
BYBIT_INSTRUMENT = bybit_ok(
    {
        "category": "spot",
        "list": [
            {
                "symbolId": 9,
                "symbol": "BTCUSDT",
                "baseCoin": "BTC",
                "quoteCoin": "USDT",
                "innovation": "0",
                "status": "Trading",
                "marginTrading": "utaOnly",
                "stTag": "0",
                "lotSizeFilter": {
                    "basePrecision": "0.000001",
                    "quotePrecision": "0.0000001",
                    "minOrderQty": "0.000011",
                    "maxOrderQty": "83",
                    "minOrderAmt": "5",
                    "maxOrderAmt": "8000000",
                    "maxLimitOrderQty": "83",
                    "maxMarketOrderQty": "41.5",
                    "postOnlyMaxLimitOrderSize": "60000",
                },
                "priceFilter": {"tickSize": "0.1"},
                "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
                "symbolType": "",
            }
        ],
    }
)

# rest-api.md exchangeInfo + filters.md filter examples
BINANCE_EXCHANGE_INFO = {
    "timezone": "UTC",
    "serverTime": 1565246363776,
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
    ],
    "exchangeFilters": [],
    "symbols": [
        {
            "symbol": "BTCUSDT",
            "status": "TRADING",
            "baseAsset": "BTC",
            "baseAssetPrecision": 8,
            "quoteAsset": "USDT",
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "TAKE_PROFIT"],
            "ocoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.01000000",
                    "maxPrice": "1000000.00000000",
                    "tickSize": "0.01000000",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.00001000",
                    "maxQty": "9000.00000000",
                    "stepSize": "0.00001000",
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": "0.00000000",
                    "maxQty": "100.00000000",
                    "stepSize": "0.00000000",
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": "5.00000000",
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT", "MARGIN"]],
        }
    ],
}


def test_both_venues_implement_the_protocol() -> None:
    for exchange in Exchange:
        venue, _ = make_venue(exchange)
        assert isinstance(venue, Venue)


async def test_bybit_instrument_filters_from_the_documented_payload() -> None:
    venue, fake = make_venue(Exchange.BYBIT)
    fake.always("/v5/market/instruments-info", respond(200, BYBIT_INSTRUMENT))
    filters = await venue.instrument("BTCUSDT")
    assert filters.qty_step == Decimal("0.000001")
    assert filters.min_notional == Decimal("5")
    assert filters.tick_size == Decimal("0.1")
    assert filters.quote_step == Decimal("0.0000001")
    assert filters.market_max_qty == Decimal("41.5")


async def test_binance_instrument_filters_and_rate_limits() -> None:
    venue, fake = make_venue(Exchange.BINANCE)
    fake.always("/api/v3/exchangeInfo", respond(200, BINANCE_EXCHANGE_INFO))
    filters = await venue.instrument("BTCUSDT")
    assert filters.qty_step == Decimal("0.00001")
    assert filters.min_qty == Decimal("0.00001")
    assert filters.min_notional == Decimal("5")
    assert filters.tick_size == Decimal("0.01")
    assert filters.market_qty_step is None  # 0 disables the rule
    assert filters.quote_step == Decimal("1E-8")
    assert venue.http.order_limits == [(100, 10.0), (200000, 86400.0)]


async def test_bybit_ticker_and_klines_oldest_first() -> None:
    venue, fake = make_venue(Exchange.BYBIT)
    ticker = bybit_ok(
        {
            "category": "spot",
            "list": [
                {
                    "symbol": "BTCUSDT",
                    "bid1Price": "20517.96",
                    "bid1Size": "2",
                    "ask1Price": "20527.77",
                    "ask1Size": "1.862172",
                    "lastPrice": "20533.13",
                    "prevPrice24h": "20393.48",
                    "price24hPcnt": "0.0068",
                    "highPrice24h": "21128.12",
                    "lowPrice24h": "20318.89",
                    "turnover24h": "243765620.65899866",
                    "volume24h": "11801.27771",
                    "usdIndexPrice": "20784.12009279",
                }
            ],
        }
    )
    klines = bybit_ok(
        {
            "symbol": "BTCUSD",
            "category": "inverse",
            "list": [
                ["1670608800000", "17071", "17073", "17027", "17055.5", "268611", "15.74462667"],
                ["1670605200000", "17071.5", "17071.5", "17061", "17071", "4177", "0.24469757"],
                ["1670601600000", "17086.5", "17088", "16978", "17071.5", "6356", "0.37288112"],
            ],
        }
    )
    fake.always("/v5/market/tickers", respond(200, ticker))
    fake.always("/v5/market/kline", respond(200, klines))
    result = await venue.ticker("BTCUSDT")
    assert result.last_price == Decimal("20533.13")
    assert result.change_percent_24h == Decimal("0.6800")
    candles = await venue.klines("BTCUSDT", KlineInterval.H1, limit=3)
    assert [k.close for k in candles] == [Decimal("17071.5"), Decimal("17071"), Decimal("17055.5")]
    assert dict(parse_qsl(fake.calls("/v5/market/kline")[0].url.query.decode()))["interval"] == "60"


async def test_binance_klines_and_ticker() -> None:
    venue, fake = make_venue(Exchange.BINANCE)
    rows = [
        [
            1499040000000,
            "0.01634790",
            "0.80000000",
            "0.01575800",
            "0.01577100",
            "148976.11427815",
            1499644799999,
            "2434.19055334",
            308,
            "1756.87402397",
            "28.46694368",
            "0",
        ]
    ]
    fake.always("/api/v3/klines", respond(200, rows))
    candles = await venue.klines("BNBBTC", KlineInterval.D1)
    assert candles[0].close == Decimal("0.01577100")
    assert candles[0].quote_volume == Decimal("2434.19055334")


async def test_bybit_wallet_balance_and_key_permissions() -> None:
    venue, fake = make_venue(Exchange.BYBIT)
    wallet = bybit_ok(
        {
            "list": [
                {
                    "accountType": "UNIFIED",
                    "coin": [
                        {"coin": "USDT", "walletBalance": "1000.5", "locked": "200.25"},
                        {"coin": "BTC", "walletBalance": "0", "locked": "0"},
                    ],
                }
            ]
        }
    )
    fake.always("/v5/account/wallet-balance", respond(200, wallet))
    usdt = await venue.balance(SIGNER, "USDT")
    assert (usdt.free, usdt.locked) == (Decimal("800.25"), Decimal("200.25"))
    # user_apikey-info.mdx response example (readOnly 1, three bound IPs, Wallet transfer only)
    api = bybit_ok(
        {
            "id": "2208369",
            "note": "testnet",
            "apiKey": "XXXXXXXX",
            "readOnly": 1,
            "secret": "",
            "permissions": {
                "ContractTrade": ["Order", "Position"],
                "Spot": ["SpotTrade"],
                "Wallet": ["AccountTransfer", "SubMemberTransfer"],
            },
            "ips": ["18.181.170.164", "13.212.45.47", "13.212.45.48"],
            "type": 1,
            "deadlineDay": -2,
            "expiredAt": "1970-01-01T00:00:00Z",
            "createdAt": "2025-10-13T03:20:45Z",
            "uta": 1,
        }
    )
    fake.always("/v5/user/query-api", respond(200, api))
    permissions = await venue.key_permissions(VAULT_SIGNER)
    assert permissions.can_read
    assert not permissions.can_trade
    assert not permissions.can_withdraw
    assert permissions.ip_bound
    assert len(permissions.ips) == 3
    assert permissions.expires_at is None


async def test_binance_key_permissions_from_api_restrictions_and_account() -> None:
    venue, fake = make_venue(Exchange.BINANCE)
    fake.always(
        "/sapi/v1/account/apiRestrictions",
        respond(
            200,
            {
                "ipRestrict": False,
                "createTime": 1623840271000,
                "enableWithdrawals": True,
                "enableInternalTransfer": True,
                "permitsUniversalTransfer": True,
                "enableVanillaOptions": False,
                "enableReading": True,
                "enableFutures": False,
                "enableMargin": False,
                "enableSpotAndMarginTrading": True,
                "tradingAuthorityExpirationTime": 1628985600000,
            },
        ),
    )
    fake.always(
        "/api/v3/account",
        respond(
            200, {"canTrade": True, "canWithdraw": True, "accountType": "SPOT", "balances": []}
        ),
    )
    permissions = await venue.key_permissions(VAULT_SIGNER)
    assert permissions.can_trade
    assert permissions.can_withdraw
    assert not permissions.ip_bound
    assert permissions.expires_at is not None


def _bybit_order(status: str = "Filled", **extra: str) -> dict[str, object]:
    item: dict[str, object] = {
        "orderId": "1321003749386327552",
        "orderLinkId": "mb-1",
        "symbol": "BTCUSDT",
        "price": "0",
        "qty": "0.01",
        "side": "Buy",
        "orderStatus": status,
        "avgPrice": "20000",
        "cumExecQty": "0.01",
        "cumExecValue": "200",
        "orderType": "Market",
        "marketUnit": "baseCoin",
        "createdTime": "1684738540559",
        "updatedTime": "1684738540561",
        "cumFeeDetail": {"BTC": "0.00001"},
        "rejectReason": "EC_NoError",
    }
    item.update(extra)
    return item


async def test_bybit_entry_is_a_bounded_ioc_limit_and_carries_no_tp_sl() -> None:
    """A spot Market order carrying takeProfit/stopLoss is refused (retCode 170130,
    bybit-exchange/pybit#200): the entry carries none; the stop loss is its own order."""
    venue, fake = make_venue(Exchange.BYBIT)
    fake.always("/v5/market/instruments-info", respond(200, BYBIT_INSTRUMENT))
    fake.always(
        "/v5/order/create",
        respond(200, bybit_ok({"orderId": "1321003749386327552", "orderLinkId": "mb-1"})),
    )
    fake.always(
        "/v5/order/realtime", respond(200, bybit_ok({"list": [_bybit_order()], "category": "spot"}))
    )
    order = OrderRequest(
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.IOC,
        price=Decimal("20100.04"),
        quantity=Decimal("0.0100009"),
        client_order_id="mb-1",
    )
    state = await venue.place_order(SIGNER, order)
    body = json.loads(fake.calls("/v5/order/create")[0].content)
    assert body == {
        "category": "spot",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Limit",
        "qty": "0.010000",
        "price": "20100.0",
        "timeInForce": "IOC",
        "orderLinkId": "mb-1",
    }
    assert state.status is OrderStatus.FILLED
    assert state.fees == (("BTC", Decimal("0.00001")),)
    assert state.reject_reason is None

    quote = OrderRequest(
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quote_quantity=Decimal("200"),
        client_order_id="mb-2",
    )
    await venue.place_order(SIGNER, quote)
    body = json.loads(fake.calls("/v5/order/create")[1].content)
    assert (body["qty"], body["marketUnit"]) == ("200.0000000", "quoteCoin")


def _bybit_protection_setup(
    take_profit: Decimal | None,
) -> tuple[Any, FakeExchange, ProtectionSpec]:
    """A Bybit venue on the fake exchange, and a position of ~0.01 BTC to protect."""
    venue, fake = make_venue(Exchange.BYBIT)
    fake.always("/v5/market/instruments-info", respond(200, BYBIT_INSTRUMENT))
    spec = ProtectionSpec(
        symbol="BTCUSDT",
        exit_side=Side.SELL,
        quantity=Decimal("0.0099912"),
        take_profit=take_profit,
        stop_loss=Decimal("19000.04"),
        client_id="mb-1",
    )
    return venue, fake, spec


async def test_bybit_protection_is_a_stop_loss_order_of_ours_and_a_watched_take_profit() -> None:
    venue, fake, spec = _bybit_protection_setup(take_profit=Decimal("21000"))
    sl_id = leg_client_id("sl", "mb-1")
    stop = _bybit_order(
        "Untriggered",
        orderLinkId=sl_id,
        side="Sell",
        cumExecQty="0",
        cumExecValue="0",
        avgPrice="",
        triggerPrice="19000.0",
    )
    fake.queue("/v5/order/realtime", respond(200, bybit_ok({"list": [], "category": "spot"})))
    fake.queue("/v5/order/history", respond(200, bybit_ok({"list": [], "category": "spot"})))
    fake.always("/v5/order/create", respond(200, bybit_ok({"orderId": "9", "orderLinkId": sl_id})))
    fake.always("/v5/order/realtime", respond(200, bybit_ok({"list": [stop], "category": "spot"})))
    protection = await venue.protect(SIGNER, spec)
    body = json.loads(fake.calls("/v5/order/create")[0].content)
    assert body == {
        "category": "spot",
        "symbol": "BTCUSDT",
        "side": "Sell",
        "orderType": "Market",
        "qty": "0.009991",
        "marketUnit": "baseCoin",
        "triggerPrice": "19000.0",
        "orderFilter": "tpslOrder",
        "orderLinkId": sl_id,
    }
    kinds = {leg.kind: leg for leg in protection.legs}
    assert kinds[ExitKind.STOP_LOSS].native
    assert kinds[ExitKind.STOP_LOSS].client_order_id == sl_id
    assert not kinds[ExitKind.TAKE_PROFIT].native
    assert kinds[ExitKind.TAKE_PROFIT].client_order_id == leg_client_id("tp", "mb-1")
    assert protection.working
    # Again: found by its id, nothing placed twice.
    await venue.protect(SIGNER, spec)
    assert len(fake.calls("/v5/order/create")) == 1


async def test_bybit_first_protection_attempt_is_one_create_and_no_reads() -> None:
    """Nothing can be on the exchange before a position's first marked attempt: the stop
    loss is placed without a lookup, and named from the create's acknowledgement (a spot
    TP/SL order is "Untriggered" once created: enum.mdx, orderStatus)."""
    venue, fake, spec = _bybit_protection_setup(take_profit=Decimal("21000"))
    sl_id = leg_client_id("sl", "mb-1")
    fake.always("/v5/order/create", respond(200, bybit_ok({"orderId": "9", "orderLinkId": sl_id})))
    protection = await venue.protect(SIGNER, spec, first_attempt=True)
    trading = [r for r in fake.requests if r.url.path.startswith("/v5/order/")]
    assert [r.url.path for r in trading] == ["/v5/order/create"]
    stop = next(leg for leg in protection.legs if leg.kind is ExitKind.STOP_LOSS)
    assert (stop.client_order_id, stop.exchange_order_id) == (sl_id, "9")
    assert stop.status is OrderStatus.UNTRIGGERED
    assert protection.working


async def test_bybit_first_attempt_answered_duplicate_reads_the_stop_placed_before() -> None:
    venue, fake, spec = _bybit_protection_setup(take_profit=None)
    sl_id = leg_client_id("sl", "mb-1")
    stop = _bybit_order(
        "Untriggered",
        orderLinkId=sl_id,
        orderId="7",
        side="Sell",
        cumExecQty="0",
        cumExecValue="0",
        avgPrice="",
        triggerPrice="19000.0",
    )
    fake.always(
        "/v5/order/create",
        respond(200, {"retCode": 170141, "retMsg": "Duplicate clientOrderId.", "result": {}}),
    )
    fake.always("/v5/order/realtime", respond(200, bybit_ok({"list": [stop], "category": "spot"})))
    protection = await venue.protect(SIGNER, spec, first_attempt=True)
    assert protection.legs[0].exchange_order_id == "7"
    assert len(fake.calls("/v5/order/create")) == 1


async def test_binance_oco_sized_to_what_the_fill_left_legs_named_by_derived_ids() -> None:
    venue, fake = make_venue(Exchange.BINANCE)
    fake.always("/api/v3/exchangeInfo", respond(200, BINANCE_EXCHANGE_INFO))
    list_id, tp_id, sl_id = (leg_client_id(t, "mb-1") for t in ("ol", "tp", "sl"))
    oco = {
        "orderListId": 1,
        "contingencyType": "OCO",
        "listStatusType": "EXEC_STARTED",
        "listOrderStatus": "EXECUTING",
        "listClientOrderId": list_id,
        "transactionTime": 1710485608839,
        "symbol": "BTCUSDT",
        "orders": [],
        "orderReports": [
            {
                "symbol": "BTCUSDT",
                "orderId": 10,
                "orderListId": 1,
                "clientOrderId": tp_id,
                "price": "0",
                "origQty": "0.00999",
                "executedQty": "0",
                "status": "NEW",
                "type": "TAKE_PROFIT",
                "side": "SELL",
                "stopPrice": "44000.00",
            },
            {
                "symbol": "BTCUSDT",
                "orderId": 11,
                "orderListId": 1,
                "clientOrderId": sl_id,
                "price": "0",
                "origQty": "0.00999",
                "executedQty": "0",
                "status": "NEW",
                "type": "STOP_LOSS",
                "side": "SELL",
                "stopPrice": "38000.00",
            },
        ],
    }
    fake.queue(
        "/api/v3/orderList",
        respond(400, {"code": -2018, "msg": "Order list does not exist."}),
    )
    fake.always("/api/v3/orderList/oco", respond(200, oco))
    spec = ProtectionSpec(
        symbol="BTCUSDT",
        exit_side=Side.SELL,
        # 0.01 filled, 0.00001 BTC commission: 0.00999 received
        quantity=Decimal("0.00999"),
        take_profit=Decimal("44000"),
        stop_loss=Decimal("38000"),
        client_id="mb-1",
    )
    protection = await venue.protect(SIGNER, spec)
    assert len(fake.calls("/api/v3/orderList")) == 1  # a later attempt looks first
    first = await venue.protect(SIGNER, spec, first_attempt=True)
    assert len(fake.calls("/api/v3/orderList")) == 1  # a first attempt places at once
    assert first == protection
    exit_query = dict(parse_qsl(fake.calls("/api/v3/orderList/oco")[0].url.query.decode()))
    assert exit_query["side"] == "SELL"
    assert exit_query["quantity"] == "0.00999"
    assert (exit_query["aboveType"], exit_query["aboveStopPrice"]) == ("TAKE_PROFIT", "44000.00")
    assert (exit_query["belowType"], exit_query["belowStopPrice"]) == ("STOP_LOSS", "38000.00")
    assert exit_query["listClientOrderId"] == list_id
    assert (exit_query["aboveClientOrderId"], exit_query["belowClientOrderId"]) == (tp_id, sl_id)
    assert protection.list_id == "1"
    assert [(leg.kind, leg.client_order_id, leg.exchange_order_id) for leg in protection.legs] == [
        (ExitKind.TAKE_PROFIT, tp_id, "10"),
        (ExitKind.STOP_LOSS, sl_id, "11"),
    ]
    assert protection.working


async def test_a_lost_response_is_raised_the_venue_submits_once() -> None:
    """One resend policy: the engine decides after a committed attempt mark and a lookup."""
    venue, fake = make_venue(Exchange.BYBIT)
    fake.always("/v5/market/instruments-info", respond(200, BYBIT_INSTRUMENT))
    fake.queue(
        "/v5/order/create",
        lambda r: (_ for _ in ()).throw(httpx.RemoteProtocolError("dropped", request=r)),
    )
    fake.always("/v5/order/create", respond(200, bybit_ok({"orderId": "x", "orderLinkId": "mb-1"})))
    order = OrderRequest(
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal("0.01"),
        client_order_id="mb-1",
    )
    with pytest.raises(OutcomeUnknown):
        await venue.place_order(SIGNER, order)
    assert len(fake.calls("/v5/order/create")) == 1


async def test_market_data_burst_makes_one_request() -> None:
    import asyncio

    venue, fake = make_venue(Exchange.BINANCE)
    ticker = {"symbol": "BNBBTC", "lastPrice": "4.00000200"}
    fake.always("/api/v3/ticker/24hr", respond(200, ticker))
    prices = await asyncio.gather(*(venue.price("BNBBTC") for _ in range(200)))
    assert set(prices) == {Decimal("4.00000200")}
    assert len(fake.calls("/api/v3/ticker/24hr")) == 1


@pytest.mark.parametrize("exchange", list(Exchange))
async def test_check_connectivity(exchange: Exchange) -> None:
    venue, fake = make_venue(exchange)
    fake.always("/api/v3/ping", respond(200, {}))
    assert await venue.check_connectivity() >= 0


async def test_bybit_spot_has_no_positions_and_derivatives_are_never_asked() -> None:
    """/v5/position/list takes only linear, inverse and option (position_position.mdx);
    the vault signs category=spot only, so the venue never asks."""
    venue, fake = make_venue(Exchange.BYBIT)
    assert await venue.positions(SIGNER) == []
    assert fake.calls("/v5/position/list") == []


async def test_bybit_limit_headers_slow_the_key_down_before_the_limit() -> None:
    venue, fake = make_venue(Exchange.BYBIT)
    reset_ms = fake.server_ms() + 800
    headers = {
        "X-Bapi-Limit": "10",
        "X-Bapi-Limit-Status": "0",
        "X-Bapi-Limit-Reset-Timestamp": str(reset_ms),
    }
    fake.always(
        "/v5/user/query-api",
        respond(
            200,
            bybit_ok({"readOnly": 0, "permissions": {"Spot": ["SpotTrade"]}, "ips": ["*"]}),
            headers,
        ),
    )
    await venue.key_permissions(VAULT_SIGNER)
    started = venue.clock.monotonic()
    permissions = await venue.key_permissions(VAULT_SIGNER)
    assert venue.clock.monotonic() - started >= 0.5  # waited for the reset, no 10006
    assert permissions.can_trade
    assert not permissions.ip_bound


async def test_metrics_are_recorded() -> None:
    from prometheus_client import REGISTRY

    venue, fake = make_venue(Exchange.BINANCE)
    fake.always("/api/v3/ping", respond(200, {}))
    await venue.check_connectivity()
    labels = {"exchange": "binance", "method": "GET", "endpoint": "/api/v3/ping", "outcome": "ok"}
    assert REGISTRY.get_sample_value("marketbot_exchange_request_seconds_count", labels)
    assert (
        REGISTRY.get_sample_value(
            "marketbot_exchange_breaker_state",
            {"exchange": "binance", "endpoint": "GET /api/v3/ping"},
        )
        == 0
    )
    assert (
        REGISTRY.get_sample_value(
            "marketbot_exchange_rate_limit_headroom_ratio",
            {"exchange": "binance", "bucket": "ip/weight"},
        )
        is not None
    )


def _spec(client_id: str, *, tp: str | None = "21000", sl: str | None = "19000") -> ProtectionSpec:
    return ProtectionSpec(
        symbol="BTCUSDT",
        exit_side=Side.SELL,
        quantity=Decimal("0.01"),
        take_profit=Decimal(tp) if tp else None,
        stop_loss=Decimal(sl) if sl else None,
        client_id=client_id,
    )


async def test_bybit_working_protections_page_the_open_tpsl_orders_once_for_the_account() -> None:
    """order_open-order.mdx: ``openOnly=0`` open orders only, ``orderFilter=tpslOrder``,
    ``limit`` [1, 50], ``nextPageCursor`` to the next page: one read per page, whatever the
    number of positions; a stop loss not among them is left to a lookup by its id."""
    venue, fake = make_venue(Exchange.BYBIT)
    specs = [_spec(f"mb-{i}") for i in range(3)]
    stops = [
        _bybit_order(
            "Untriggered",
            orderLinkId=leg_client_id("sl", s.client_id),
            side="Sell",
            cumExecQty="0",
            cumExecValue="0",
            avgPrice="",
            orderId=f"9{i}",
        )
        for i, s in enumerate(specs)
    ]
    page1 = bybit_ok({"list": stops[:1], "category": "spot", "nextPageCursor": "p2"})
    page2 = bybit_ok({"list": stops[1:2], "category": "spot", "nextPageCursor": ""})
    fake.queue("/v5/order/realtime", respond(200, page1), respond(200, page2))
    only_tp = _spec("mb-tp", sl=None)
    found = await venue.working_protections(SIGNER, [*specs, only_tp])
    calls = fake.calls("/v5/order/realtime")
    assert len(calls) == 2
    first = dict(parse_qsl(calls[0].url.query.decode()))
    assert {k: first[k] for k in ("category", "openOnly", "orderFilter", "limit")} == {
        "category": "spot",
        "openOnly": "0",
        "orderFilter": "tpslOrder",
        "limit": "50",
    }
    assert dict(parse_qsl(calls[1].url.query.decode()))["cursor"] == "p2"
    assert set(found) == {"mb-0", "mb-1", "mb-tp"}  # mb-2's stop loss is not open
    assert found["mb-0"].working
    assert found["mb-1"].legs[0].exchange_order_id == "91"
    assert not found["mb-tp"].legs[0].native


async def test_binance_working_protections_read_the_open_order_lists_once() -> None:
    """rest-api.md "Query Open Order lists" (weight 6, no symbol): every executing list of
    the account in one read; a single STOP_LOSS order is not a list, left to its lookup."""
    venue, fake = make_venue(Exchange.BINANCE)
    specs = [_spec(f"mb-{i}") for i in range(3)]
    lists = [
        {
            "orderListId": 30 + i,
            "contingencyType": "OCO",
            "listStatusType": "EXEC_STARTED",
            "listOrderStatus": "EXECUTING",
            "listClientOrderId": leg_client_id("ol", s.client_id),
            "transactionTime": 1565246080644,
            "symbol": "BTCUSDT",
            "orders": [],
        }
        for i, s in enumerate(specs[:2])
    ]
    fake.always("/api/v3/openOrderList", respond(200, lists))
    found = await venue.working_protections(SIGNER, [*specs, _spec("mb-sl", tp=None)])
    assert len(fake.calls("/api/v3/openOrderList")) == 1
    query = dict(parse_qsl(fake.calls("/api/v3/openOrderList")[0].url.query.decode()))
    assert set(query) == {"timestamp", "recvWindow", "signature"}
    assert set(found) == {"mb-0", "mb-1"}
    assert found["mb-1"].list_id == "31"
    assert found["mb-0"].working
