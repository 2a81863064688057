"""Binance Spot endpoints against rest-api.md example payloads, and its rejections."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

ORDER_QUERY_KEYS = {
    "symbol",
    "orderId",
    "orderListId",
    "clientOrderId",
    "price",
    "origQty",
    "executedQty",
    "cummulativeQuoteQty",
    "status",
    "timeInForce",
    "type",
    "side",
    "stopPrice",
    "icebergQty",
    "time",
    "updateTime",
    "isWorking",
    "workingTime",
    "origQuoteOrderQty",
    "selfTradePreventionMode",
}
FULL_KEYS = {
    "symbol",
    "orderId",
    "orderListId",
    "clientOrderId",
    "transactTime",
    "price",
    "origQty",
    "executedQty",
    "origQuoteOrderQty",
    "cummulativeQuoteQty",
    "status",
    "timeInForce",
    "type",
    "side",
    "workingTime",
    "selfTradePreventionMode",
    "fills",
}
ACCOUNT_KEYS = {
    "makerCommission",
    "takerCommission",
    "buyerCommission",
    "sellerCommission",
    "commissionRates",
    "canTrade",
    "canWithdraw",
    "canDeposit",
    "brokered",
    "requireSelfTradePrevention",
    "preventSor",
    "updateTime",
    "accountType",
    "balances",
    "permissions",
    "uid",
}
RESTRICTION_KEYS = {
    "ipRestrict",
    "createTime",
    "enableWithdrawals",
    "enableInternalTransfer",
    "permitsUniversalTransfer",
    "enableVanillaOptions",
    "enableReading",
    "enableFutures",
    "enableMargin",
    "enableSpotAndMarginTrading",
    "tradingAuthorityExpirationTime",
    "enablePortfolioMarginTrading",
}


def err(response) -> tuple[int, int, str]:
    body = response.json()
    return response.status_code, body["code"], body["msg"]


async def test_public_endpoints(local):
    base = local.urls["binance"]
    assert (await local.http.get(f"{base}/api/v3/ping")).json() == {}
    assert set((await local.http.get(f"{base}/api/v3/time")).json()) == {"serverTime"}
    info = (await local.http.get(f"{base}/api/v3/exchangeInfo")).json()
    assert {"timezone", "serverTime", "rateLimits", "exchangeFilters", "symbols"} <= set(info)
    limits = {
        (r["rateLimitType"], r["interval"], r["intervalNum"]): r["limit"]
        for r in info["rateLimits"]
    }
    assert limits[("REQUEST_WEIGHT", "MINUTE", 1)] == 6000
    assert ("ORDERS", "SECOND", 10) in limits
    assert ("ORDERS", "DAY", 1) in limits
    by_symbol = {s["symbol"]: s for s in info["symbols"]}
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"} <= set(by_symbol)
    filters = {f["filterType"] for f in by_symbol["BTCUSDT"]["filters"]}
    assert {"PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "NOTIONAL"} <= filters
    assert "MIN_NOTIONAL" in {f["filterType"] for f in by_symbol["XRPUSDT"]["filters"]}
    klines = (
        await local.http.get(f"{base}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3")
    ).json()
    assert len(klines) == 3
    assert len(klines[0]) == 12
    assert klines[0][0] < klines[-1][0]  # oldest first
    price = (await local.http.get(f"{base}/api/v3/ticker/price?symbol=BTCUSDT")).json()
    assert set(price) == {"symbol", "price"}
    day = (await local.http.get(f"{base}/api/v3/ticker/24hr?symbol=BTCUSDT")).json()
    assert {"priceChangePercent", "lastPrice", "volume", "quoteVolume", "count"} <= set(day)
    bad = await local.http.get(f"{base}/api/v3/ticker/price?symbol=NOPE")
    assert err(bad) == (400, -1121, "Invalid symbol.")


async def test_official_signature_vector(local):
    """rest-api.md's HMAC example, sent as documented (server clock set to the example's time)."""
    account = await local.binance_admin.create_account()
    key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    await local.binance_admin.create_api_key(account, api_key=key, api_secret=secret)
    body = (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
        "&timestamp=1499827319559"
        "&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )
    await local.binance_admin.set_clock_offset(1499827319559 + 100 - int(time.time() * 1000))
    try:
        response = await local.http.post(
            f"{local.urls['binance']}/api/v3/order",
            content=body,
            headers={"X-MBX-APIKEY": key, "Content-Type": "application/x-www-form-urlencoded"},
        )
    finally:
        await local.binance_admin.set_clock_offset(0)
    # Signature and clock accepted; LTCBTC is not listed here, so the symbol is what fails.
    assert err(response) == (400, -1121, "Invalid symbol.")


async def test_market_quote_order_full_response(local, h):
    _account, client = await h.new_binance(local)
    response = await client.request(
        "POST",
        "/api/v3/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "MARKET",
            "quoteOrderQty": "100",
            "newClientOrderId": "bn-mkt-1",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == FULL_KEYS
    assert body["status"] == "FILLED"
    fill = body["fills"][0]
    assert set(fill) == {"price", "qty", "commission", "commissionAsset", "tradeId"}
    assert fill["commissionAsset"] == "BTC"
    assert response.headers["x-mbx-order-count-10s"] == "1"
    assert "x-mbx-used-weight-1m" in response.headers
    query = await client.request(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "bn-mkt-1"}
    )
    assert set(query.json()) == ORDER_QUERY_KEYS
    assert query.json()["orderId"] == body["orderId"]
    ack = await client.request(
        "POST",
        "/api/v3/order",
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "MARKET",
            "quantity": "0.0001",
            "newOrderRespType": "ACK",
        },
    )
    assert set(ack.json()) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    assert len(ack.json()["clientOrderId"]) == 22
    account_info = (await client.request("GET", "/api/v3/account", {})).json()
    assert set(account_info) == ACCOUNT_KEYS
    assets = {b["asset"] for b in account_info["balances"]}
    assert {"BTC", "USDT"} <= assets
    history = (await client.request("GET", "/api/v3/allOrders", {"symbol": "BTCUSDT"})).json()
    assert next(o["clientOrderId"] for o in history) == "bn-mkt-1"


async def test_limit_open_cancel_and_duplicates(local, h):
    account, client = await h.new_binance(local)
    order = {
        "symbol": "ETHUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.1",
        "price": "1000",
        "newClientOrderId": "bn-lim-1",
    }
    first = await client.request("POST", "/api/v3/order", order)
    assert first.json()["status"] == "NEW"
    duplicate = await client.request("POST", "/api/v3/order", order)
    assert err(duplicate) == (400, -2010, "Duplicate order sent.")
    opened = (await client.request("GET", "/api/v3/openOrders", {"symbol": "ETHUSDT"})).json()
    assert [o["clientOrderId"] for o in opened] == ["bn-lim-1"]
    cancel = await client.request(
        "DELETE", "/api/v3/order", {"symbol": "ETHUSDT", "origClientOrderId": "bn-lim-1"}
    )
    body = cancel.json()
    assert body["status"] == "CANCELED"
    assert body["origClientOrderId"] == "bn-lim-1"
    again = await client.request(
        "DELETE", "/api/v3/order", {"symbol": "ETHUSDT", "origClientOrderId": "bn-lim-1"}
    )
    assert err(again) == (400, -2011, "Unknown order sent.")
    missing = await client.request("GET", "/api/v3/order", {"symbol": "ETHUSDT", "orderId": "1"})
    assert err(missing) == (400, -2013, "Order does not exist.")
    # After the first was cancelled the id is free again (unique among open orders only).
    assert (await client.request("POST", "/api/v3/order", order)).status_code == 200
    assert len(await local.binance_admin.orders(account)) == 2


async def test_oco_take_profit_leg_fills_and_stop_expires(local, h):
    account, client = await h.new_binance(local)
    await local.binance_admin.fund(account, "SOL", Decimal("2"))
    await local.binance_admin.set_price("SOLUSDT", Decimal("150"))
    response = await client.request(
        "POST",
        "/api/v3/orderList/oco",
        {
            "symbol": "SOLUSDT",
            "side": "SELL",
            "quantity": "1",
            "aboveType": "LIMIT_MAKER",
            "abovePrice": "165",
            "belowType": "STOP_LOSS",
            "belowStopPrice": "140",
            "listClientOrderId": "oco-1",
            "aboveClientOrderId": "oco-tp",
            "belowClientOrderId": "oco-sl",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {
        "orderListId",
        "contingencyType",
        "listStatusType",
        "listOrderStatus",
        "listClientOrderId",
        "transactionTime",
        "symbol",
        "orders",
        "orderReports",
    } == set(body)
    assert body["listOrderStatus"] == "EXECUTING"
    assert (await local.binance_admin.balances_detail(account))["SOL"]["locked"] == 1
    # rest-api.md "Query Open Order lists": the executing lists, shaped as the docs' example
    # (the "Query Order list" fields, no orderReports).
    open_lists = (await client.request("GET", "/api/v3/openOrderList", {})).json()
    assert [item["listClientOrderId"] for item in open_lists] == ["oco-1"]
    assert set(open_lists[0]) == set(body) - {"orderReports"}
    assert open_lists[0]["orders"] == body["orders"]
    await local.binance_admin.set_price("SOLUSDT", Decimal("166"))
    assert (await client.request("GET", "/api/v3/openOrderList", {})).json() == []
    tp = (
        await client.request(
            "GET", "/api/v3/order", {"symbol": "SOLUSDT", "origClientOrderId": "oco-tp"}
        )
    ).json()
    sl = (
        await client.request(
            "GET", "/api/v3/order", {"symbol": "SOLUSDT", "origClientOrderId": "oco-sl"}
        )
    ).json()
    assert (tp["status"], sl["status"]) == ("FILLED", "EXPIRED")
    assert tp["orderListId"] == body["orderListId"]
    listed = (
        await client.request("GET", "/api/v3/orderList", {"orderListId": body["orderListId"]})
    ).json()
    assert listed["listOrderStatus"] == "ALL_DONE"
    balances = await local.binance_admin.balances(account)
    assert balances["SOL"] == 1
    assert balances["USDT"] > Decimal("10160")


async def test_oco_bad_price_relationship(local, h):
    account, client = await h.new_binance(local)
    await local.binance_admin.fund(account, "SOL", Decimal("2"))
    await local.binance_admin.set_price("SOLUSDT", Decimal("150"))
    response = await client.request(
        "POST",
        "/api/v3/orderList/oco",
        {
            "symbol": "SOLUSDT",
            "side": "SELL",
            "quantity": "1",
            "aboveType": "LIMIT_MAKER",
            "abovePrice": "145",
            "belowType": "STOP_LOSS",
            "belowStopPrice": "140",
        },
    )
    assert err(response) == (
        400,
        -2010,
        "The relationship of the prices for the orders is not correct.",
    )


async def test_api_restrictions(local, h):
    _, client = await h.new_binance(local, withdraw=True, ips=["127.0.0.1"])
    body = (await client.request("GET", "/sapi/v1/account/apiRestrictions", {})).json()
    assert set(body) == RESTRICTION_KEYS
    assert body["ipRestrict"] is True
    assert body["enableWithdrawals"] is True
    assert len(client.key) == 64
    assert len(client.secret) == 64
    _, unbound = await h.new_binance(local, trade=False)
    body = (await unbound.request("GET", "/sapi/v1/account/apiRestrictions", {})).json()
    assert body["ipRestrict"] is False
    assert body["enableSpotAndMarginTrading"] is False


MARKET = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"}


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({"quantity": "0.000001"}, -1013, "Filter failure: LOT_SIZE"),
        ({"quantity": "0.000015"}, -1013, "Filter failure: LOT_SIZE"),
        ({"quantity": "0.00005"}, -1013, "Filter failure: NOTIONAL"),
        ({"quantity": "0.123456789"}, -1111, "Parameter 'quantity' has too much precision."),
        ({"quantity": "1"}, -2010, "Account has insufficient balance for requested action."),
        ({"quantity": "500"}, -1013, "Filter failure: MARKET_LOT_SIZE"),
        ({"symbol": "XRPUSDT", "quantity": "1"}, -1013, "Filter failure: MIN_NOTIONAL"),
        (
            {
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.001",
                "price": "60000.123456789",
            },
            -1111,
            "Parameter 'price' has too much precision.",
        ),
        (
            {"type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001", "price": "60000.005"},
            -1013,
            "Filter failure: PRICE_FILTER",
        ),
        (
            {"type": "LIMIT", "quantity": "0.001", "price": "60000"},
            -1102,
            "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
        ),
        ({}, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"),
        ({"symbol": "NOPE", "quantity": "1"}, -1121, "Invalid symbol."),
        (
            {"quantity": "0.001", "newClientOrderId": "bad id!"},
            -1100,
            "Illegal characters found in parameter 'newClientOrderId'; "
            "legal range is '^[a-zA-Z0-9-_]{1,36}$'.",
        ),
    ],
)
async def test_filter_rejections(local, h, params, code, message):
    _, client = await h.new_binance(local, usdt="1000")
    response = await client.request("POST", "/api/v3/order", MARKET | params)
    assert err(response) == (400, code, message)


async def test_auth_rejections(local, h):
    _, client = await h.new_binance(local)
    base = local.urls["binance"]
    no_key = await local.http.get(f"{base}/api/v3/account?{client.sign({})}")
    assert err(no_key) == (401, -2014, "API-key format invalid.")
    unknown = h.BinanceClient(local.http, base, "Z" * 64, client.secret)
    assert err(await unknown.request("GET", "/api/v3/account", {})) == (
        401,
        -2015,
        "Invalid API-key, IP, or permissions for action.",
    )
    forged = h.BinanceClient(local.http, base, client.key, "y" * 64)
    assert err(await forged.request("GET", "/api/v3/account", {})) == (
        400,
        -1022,
        "Signature for this request is not valid.",
    )
    now = int(time.time() * 1000)
    assert err(await client.request("GET", "/api/v3/account", {}, ts=now - 6000)) == (
        400,
        -1021,
        "Timestamp for this request is outside of the recvWindow.",
    )
    assert err(await client.request("GET", "/api/v3/account", {}, ts=now + 1500)) == (
        400,
        -1021,
        "Timestamp for this request was 1000ms ahead of the server's time.",
    )
    ok = await client.request("GET", "/api/v3/account", {"recvWindow": "20000"}, ts=now - 6000)
    assert ok.status_code == 200
    unsigned = await local.http.get(
        f"{base}/api/v3/account?timestamp={now}", headers={"X-MBX-APIKEY": client.key}
    )
    assert err(unsigned) == (
        400,
        -1102,
        "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
    )


async def test_permission_and_ip_rejections(local, h):
    _, reader = await h.new_binance(local, trade=False)
    response = await reader.request("POST", "/api/v3/order", MARKET | {"quantity": "0.001"})
    assert err(response) == (401, -2015, "Invalid API-key, IP, or permissions for action.")
    _, bound = await h.new_binance(local, ips=["198.51.100.4"])
    assert err(await bound.request("GET", "/api/v3/account", {}))[:2] == (401, -2015)


async def test_signature_over_query_and_body_mix(local, h):
    """Parameters split between query string and body: payload is query + body as sent."""
    _, client = await h.new_binance(local)
    import hashlib
    import hmac

    query = "symbol=BTCUSDT&side=BUY"
    body = f"type=MARKET&quantity=0.001&timestamp={int(time.time() * 1000)}"
    sig = hmac.new(client.secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
    response = await local.http.post(
        f"{client.base}/api/v3/order?{query}",
        content=f"{body}&signature={sig}",
        headers={"X-MBX-APIKEY": client.key, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
