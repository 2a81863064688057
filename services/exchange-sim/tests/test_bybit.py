"""Bybit V5 endpoints against the shapes of reference/bybit-v5/*.mdx examples."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marketbot.runtime.testing import eventually

ENVELOPE = {"retCode", "retMsg", "result", "retExtInfo", "time"}
INSTRUMENT_KEYS = {
    "symbolId",
    "symbol",
    "baseCoin",
    "quoteCoin",
    "innovation",
    "status",
    "marginTrading",
    "stTag",
    "lotSizeFilter",
    "priceFilter",
    "riskParameters",
    "symbolType",
}
LOT_KEYS = {
    "basePrecision",
    "quotePrecision",
    "minOrderQty",
    "maxOrderQty",
    "minOrderAmt",
    "maxOrderAmt",
    "maxLimitOrderQty",
    "maxMarketOrderQty",
    "postOnlyMaxLimitOrderSize",
}
TICKER_KEYS = {
    "symbol",
    "bid1Price",
    "bid1Size",
    "ask1Price",
    "ask1Size",
    "lastPrice",
    "prevPrice24h",
    "price24hPcnt",
    "highPrice24h",
    "lowPrice24h",
    "turnover24h",
    "volume24h",
    "usdIndexPrice",
}
# Every field of the order/history example in order_order-list.mdx.
ORDER_KEYS = {
    "orderId",
    "orderLinkId",
    "blockTradeId",
    "symbol",
    "price",
    "qty",
    "side",
    "isLeverage",
    "positionIdx",
    "orderStatus",
    "cancelType",
    "rejectReason",
    "avgPrice",
    "leavesQty",
    "leavesValue",
    "cumExecQty",
    "cumExecValue",
    "cumExecFee",
    "timeInForce",
    "orderType",
    "stopOrderType",
    "orderIv",
    "triggerPrice",
    "takeProfit",
    "stopLoss",
    "tpTriggerBy",
    "slTriggerBy",
    "triggerDirection",
    "triggerBy",
    "lastPriceOnCreated",
    "reduceOnly",
    "closeOnTrigger",
    "smpType",
    "smpGroup",
    "smpOrderId",
    "tpLimitPrice",
    "slLimitPrice",
    "placeType",
    "slippageToleranceType",
    "slippageTolerance",
    "createdTime",
    "updatedTime",
    "extraFees",
    "cumFeeDetail",
    "rpiTakerAccess",
}
WALLET_KEYS = {
    "totalEquity",
    "accountIMRate",
    "totalMarginBalance",
    "totalInitialMargin",
    "accountType",
    "totalAvailableBalance",
    "accountMMRate",
    "totalPerpUPL",
    "totalWalletBalance",
    "accountLTV",
    "totalMaintenanceMargin",
    "coin",
}
COIN_KEYS = {
    "availableToBorrow",
    "bonus",
    "accruedInterest",
    "availableToWithdraw",
    "totalOrderIM",
    "equity",
    "totalPositionMM",
    "usdValue",
    "unrealisedPnl",
    "collateralSwitch",
    "borrowAmount",
    "totalPositionIM",
    "walletBalance",
    "cumRealisedPnl",
    "locked",
    "marginCollateral",
    "coin",
}


def ok(response: Any) -> dict[str, Any]:
    body = response.json()
    assert response.status_code == 200, response.text
    assert set(body) == ENVELOPE
    assert body["retCode"] == 0, body
    result: dict[str, Any] = body["result"]
    return result


async def test_market_endpoints(local):
    base = local.urls["bybit"]
    result = ok(await local.http.get(f"{base}/v5/market/time"))
    assert set(result) == {"timeSecond", "timeNano"}
    assert len(result["timeNano"]) == 19

    info = ok(await local.http.get(f"{base}/v5/market/instruments-info?category=spot"))
    symbols = {row["symbol"] for row in info["list"]}
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"} <= symbols
    row = info["list"][0]
    assert set(row) == INSTRUMENT_KEYS
    assert set(row["lotSizeFilter"]) == LOT_KEYS
    assert "qtyStep" not in row["lotSizeFilter"]

    tickers = ok(await local.http.get(f"{base}/v5/market/tickers?category=spot&symbol=ETHUSDT"))
    assert tickers["category"] == "spot"
    assert set(tickers["list"][0]) == TICKER_KEYS

    kline = ok(
        await local.http.get(
            f"{base}/v5/market/kline?category=spot&symbol=BTCUSDT&interval=60&limit=5"
        )
    )
    times = [int(k[0]) for k in kline["list"]]
    assert len(times) == 5
    assert times == sorted(times, reverse=True)
    assert all(len(k) == 7 for k in kline["list"])
    price = await local.bybit_admin.price("BTCUSDT")
    assert Decimal(kline["list"][0][4]) == price


async def test_market_buy_by_quote_fills_and_reports(local, h):
    account, client = await h.new_bybit(local)
    created = ok(
        await client.post(
            "/v5/order/create",
            {
                "category": "spot",
                "symbol": "BTCUSDT",
                "side": "Buy",
                "orderType": "Market",
                "qty": "100",
                "orderLinkId": "bb-mkt-1",
            },
        )
    )
    assert set(created) == {"orderId", "orderLinkId"}
    assert created["orderLinkId"] == "bb-mkt-1"
    assert created["orderId"].isdigit()

    found = ok(
        await client.get("/v5/order/realtime", {"category": "spot", "orderLinkId": "bb-mkt-1"})
    )
    order = found["list"][0]
    assert set(order) >= ORDER_KEYS
    assert order["orderStatus"] == "Filled"
    assert order["marketUnit"] == "quoteCoin"
    assert order["cumFeeDetail"] == {"BTC": order["cumExecFee"]}
    balances = await local.bybit_admin.balances(account)
    assert balances["USDT"] > Decimal("9900")
    assert balances["BTC"] > 0

    history = ok(await client.get("/v5/order/history", {"category": "spot", "limit": "5"}))
    assert history["list"][0]["orderId"] == created["orderId"]


async def test_limit_order_rests_then_cancels(local, h):
    account, client = await h.new_bybit(local)
    price = await local.bybit_admin.price("ETHUSDT")
    below = (price * Decimal("0.9")).quantize(Decimal("0.01"))
    created = ok(
        await client.post(
            "/v5/order/create",
            {
                "category": "spot",
                "symbol": "ETHUSDT",
                "side": "Buy",
                "orderType": "Limit",
                "qty": "0.1",
                "price": str(below),
                "orderLinkId": "bb-lim-1",
            },
        )
    )
    open_orders = ok(await client.get("/v5/order/realtime", {"category": "spot"}))
    assert [o["orderId"] for o in open_orders["list"]] == [created["orderId"]]
    assert open_orders["list"][0]["orderStatus"] == "New"
    detail = await local.bybit_admin.balances_detail(account)
    assert detail["USDT"]["locked"] == below * Decimal("0.1")

    cancelled = ok(
        await client.post(
            "/v5/order/cancel", {"category": "spot", "symbol": "ETHUSDT", "orderLinkId": "bb-lim-1"}
        )
    )
    assert cancelled == created
    again = (
        await client.post(
            "/v5/order/cancel",
            {"category": "spot", "symbol": "ETHUSDT", "orderId": created["orderId"]},
        )
    ).json()
    assert (again["retCode"], again["retMsg"]) == (170213, "Order does not exist.")
    assert (await local.bybit_admin.balances_detail(account))["USDT"]["locked"] == 0


async def test_limit_fills_when_price_crosses(local, h):
    account, client = await h.new_bybit(local)
    await local.bybit_admin.set_price("SOLUSDT", Decimal("150"))
    ok(
        await client.post(
            "/v5/order/create",
            {
                "category": "spot",
                "symbol": "SOLUSDT",
                "side": "Buy",
                "orderType": "Limit",
                "qty": "1",
                "price": "140",
                "orderLinkId": "bb-cross",
            },
        )
    )
    await local.bybit_admin.set_price("SOLUSDT", Decimal("139.5"))
    orders = await local.bybit_admin.orders(account)
    assert orders[0]["status"] == "FILLED"
    assert orders[0]["native"]["avgPrice"] == "139.5"


async def test_take_profit_and_stop_loss_trigger(local, h):
    account, client = await h.new_bybit(local)
    await local.bybit_admin.set_price("ADAUSDT", Decimal("0.4500"))
    ok(
        await client.post(
            "/v5/order/create",
            {
                "category": "spot",
                "symbol": "ADAUSDT",
                "side": "Buy",
                "orderType": "Limit",
                "qty": "100",
                "price": "0.4600",
                "takeProfit": "0.5000",
                "stopLoss": "0.4000",
                "orderLinkId": "bb-tpsl",
            },
        )
    )
    orders = await local.bybit_admin.orders(account)
    legs = [o for o in orders if o["native"]["stopOrderType"] in ("TakeProfit", "StopLoss")]
    assert {o["native"]["orderStatus"] for o in legs} == {"Untriggered"}
    await local.bybit_admin.set_price("ADAUSDT", Decimal("0.5100"))

    async def settled() -> list[dict[str, Any]]:
        rows = await local.bybit_admin.orders(account)
        return [o for o in rows if o["native"]["stopOrderType"]]

    legs = await eventually(settled)
    status = {o["native"]["stopOrderType"]: o["native"]["orderStatus"] for o in legs}
    assert status == {"TakeProfit": "Filled", "StopLoss": "Deactivated"}
    tp = next(o for o in legs if o["native"]["stopOrderType"] == "TakeProfit")
    assert tp["native"]["parentOrderLinkId"] == "bb-tpsl"
    assert tp["native"]["ocoTriggerBy"] == "OcoTriggerByTp"
    balances = await local.bybit_admin.balances(account)
    assert balances["ADA"] < Decimal("1")
    assert balances["USDT"] > Decimal("10000")


async def test_a_tpsl_order_is_cancelled_only_under_its_own_filter(local, h):
    """order_cancel-order.mdx, orderFilter row: "If not passed, `Order` by default"."""
    account, client = await h.new_bybit(local)
    await local.bybit_admin.set_price("ADAUSDT", Decimal("0.4500"))
    await local.bybit_admin.fund(account, "ADA", Decimal("100"))
    created = ok(
        await client.post(
            "/v5/order/create",
            {
                "category": "spot",
                "symbol": "ADAUSDT",
                "side": "Sell",
                "orderType": "Market",
                "qty": "100",
                "marketUnit": "baseCoin",
                "triggerPrice": "0.4000",
                "orderFilter": "tpslOrder",
                "orderLinkId": "bb-sl-1",
            },
        )
    )
    body = {"category": "spot", "symbol": "ADAUSDT", "orderLinkId": "bb-sl-1"}
    wrong = (await client.post("/v5/order/cancel", body)).json()
    assert (wrong["retCode"], wrong["retMsg"]) == (170213, "Order does not exist.")
    cancelled = ok(await client.post("/v5/order/cancel", {**body, "orderFilter": "tpslOrder"}))
    assert cancelled == created
    (order,) = [o for o in await local.bybit_admin.orders(account) if o["client_order_id"]]
    assert order["native"]["orderStatus"] == "Deactivated"


async def test_wallet_account_and_key_info(local, h):
    _account, client = await h.new_bybit(local, ips=["127.0.0.1"], withdraw=True)
    wallet = ok(await client.get("/v5/account/wallet-balance", {"accountType": "UNIFIED"}))
    row = wallet["list"][0]
    assert set(row) >= WALLET_KEYS
    assert row["accountType"] == "UNIFIED"
    assert set(row["coin"][0]) >= COIN_KEYS
    assert row["coin"][0]["walletBalance"] == "10000"
    info = ok(await client.get("/v5/account/info", {}))
    assert {"marginMode", "updatedTime", "unifiedMarginStatus", "isMasterTrader"} <= set(info)
    raw = await client.get("/v5/user/query-api", {})
    assert raw.json()["retMsg"] == ""
    key = ok(raw)
    assert key["apiKey"] == client.key
    assert len(client.key) == 18
    assert len(client.secret) == 36
    assert key["readOnly"] == 0
    assert key["ips"] == ["127.0.0.1"]
    assert "Withdraw" in key["permissions"]["Wallet"]
    assert key["permissions"]["Spot"] == ["SpotTrade"]

    _, unbound = await h.new_bybit(local, trade=False)
    key = ok(await unbound.get("/v5/user/query-api", {}))
    assert key["readOnly"] == 1
    assert key["ips"] == ["*"]
    assert key["permissions"]["Spot"] == []


async def test_position_list_is_empty_for_a_spot_account_and_checks_its_parameters(local, h):
    _account, client = await h.new_bybit(local)
    body = ok(await client.get("/v5/position/list", {"category": "linear", "symbol": "BTCUSDT"}))
    assert body == {"category": "linear", "nextPageCursor": "", "list": []}
    missing = await client.get("/v5/position/list", {"category": "linear"})
    assert missing.json()["retCode"] == 10001  # linear needs symbol or settleCoin
    spot = await client.get("/v5/position/list", {"category": "spot", "symbol": "BTCUSDT"})
    assert spot.json()["retCode"] == 10001  # linear, inverse or option only


async def test_a_triggered_tpsl_order_that_fills_in_part_ends_partially_filled_cancelled(local, h):
    """Once triggered a spot TP/SL order is a market order (order_open-order.mdx orderType:
    "For TP/SL orders, is the order type after the order was triggered"): what the market
    cannot take ends it PartiallyFilledCanceled ("Only spot has this order status"), not
    Deactivated ("cancelled before they are triggered", enum.mdx). While untriggered it is
    listed among the open TP/SL orders (openOnly=0, orderFilter=tpslOrder); after, not."""
    account, client = await h.new_bybit(local)
    await local.bybit_admin.set_price("ADAUSDT", Decimal("0.4500"))
    await local.bybit_admin.fund(account, "ADA", Decimal("100"))
    ok(
        await client.post(
            "/v5/order/create",
            {
                "category": "spot",
                "symbol": "ADAUSDT",
                "side": "Sell",
                "orderType": "Market",
                "qty": "100",
                "marketUnit": "baseCoin",
                "triggerPrice": "0.4000",
                "orderFilter": "tpslOrder",
                "orderLinkId": "bb-sl-part",
            },
        )
    )
    listing = {"category": "spot", "openOnly": "0", "orderFilter": "tpslOrder", "limit": "50"}
    working = ok(await client.get("/v5/order/realtime", listing))
    assert [o["orderLinkId"] for o in working["list"]] == ["bb-sl-part"]
    assert working["list"][0]["orderStatus"] == "Untriggered"
    await local.bybit_admin.set_liquidity("ADAUSDT", Decimal("40"))
    await local.bybit_admin.set_price("ADAUSDT", Decimal("0.3990"))
    await local.bybit_admin.set_liquidity("ADAUSDT", None)
    found = ok(
        await client.get(
            "/v5/order/realtime",
            {"category": "spot", "symbol": "ADAUSDT", "orderLinkId": "bb-sl-part"},
        )
    )
    (order,) = found["list"]
    assert (order["orderStatus"], order["cumExecQty"]) == ("PartiallyFilledCanceled", "40")
    assert ok(await client.get("/v5/order/realtime", listing))["list"] == []


async def test_a_held_trigger_shows_triggered_cannot_be_cancelled_and_fills_on_release(local, h):
    """enum.mdx: "Triggered: instantaneous state for conditional orders from Untriggered to
    New", a closed status (not listed by openOnly=0, not cancellable); the admin API holds
    it there so a client can be tested against it, and the release fills the same order."""
    account, client = await h.new_bybit(local)
    await local.bybit_admin.set_price("ADAUSDT", Decimal("0.4500"))
    await local.bybit_admin.fund(account, "ADA", Decimal("100"))
    body = {
        "category": "spot",
        "symbol": "ADAUSDT",
        "side": "Sell",
        "orderType": "Market",
        "qty": "100",
        "marketUnit": "baseCoin",
        "triggerPrice": "0.4000",
        "orderFilter": "tpslOrder",
        "orderLinkId": "bb-sl-held",
    }
    created = ok(await client.post("/v5/order/create", body))
    await local.bybit_admin.hold_triggers(True)
    try:
        await local.bybit_admin.set_price("ADAUSDT", Decimal("0.3990"))
        query = {"category": "spot", "symbol": "ADAUSDT", "orderLinkId": "bb-sl-held"}
        (held,) = ok(await client.get("/v5/order/realtime", query))["list"]
        assert (held["orderStatus"], held["cumExecQty"]) == ("Triggered", "0")
        listing = {"category": "spot", "openOnly": "0", "orderFilter": "tpslOrder"}
        assert ok(await client.get("/v5/order/realtime", listing))["list"] == []
        cancel = {**query, "orderFilter": "tpslOrder"}
        refused = (await client.post("/v5/order/cancel", cancel)).json()
        assert refused["retCode"] == 170213
    finally:
        assert await local.bybit_admin.hold_triggers(False) == 1
    (filled,) = ok(await client.get("/v5/order/realtime", query))["list"]
    assert filled["orderId"] == created["orderId"]
    assert (filled["orderStatus"], filled["cumExecQty"]) == ("Filled", "100")
