"""Binance Spot endpoints and their response models (one parser per endpoint)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from marketbot.contracts import KeyPermissions, Side
from marketbot.exchanges.binance import constants as c
from marketbot.exchanges.http import Endpoint
from marketbot.exchanges.numbers import optional_decimal, to_decimal
from marketbot.exchanges.venue import (
    AccountInfo,
    Balance,
    Fill,
    InstrumentFilters,
    Kline,
    OrderState,
    OrderStatus,
    Ticker,
)

PING = Endpoint("GET", c.PING)
SERVER_TIME = Endpoint("GET", c.TIME)
TICKER_24H = Endpoint("GET", c.TICKER_24H)
TICKER_PRICE = Endpoint("GET", c.TICKER_PRICE)
KLINES = Endpoint("GET", c.KLINES)
EXCHANGE_INFO = Endpoint("GET", c.EXCHANGE_INFO)
ACCOUNT = Endpoint("GET", c.ACCOUNT, signed=True)
API_RESTRICTIONS = Endpoint("GET", c.API_RESTRICTIONS, signed=True)
NEW_ORDER = Endpoint("POST", c.ORDER, signed=True, read=False)
CANCEL_ORDER = Endpoint("DELETE", c.ORDER, signed=True, read=False)
QUERY_ORDER = Endpoint("GET", c.ORDER, signed=True)
OPEN_ORDERS = Endpoint("GET", c.OPEN_ORDERS, signed=True)
ALL_ORDERS = Endpoint("GET", c.ALL_ORDERS, signed=True)
NEW_OCO = Endpoint("POST", c.ORDER_LIST_OCO, signed=True, read=False)
CANCEL_ORDER_LIST = Endpoint("DELETE", c.ORDER_LIST, signed=True, read=False)
QUERY_ORDER_LIST = Endpoint("GET", c.ORDER_LIST, signed=True)
OPEN_ORDER_LISTS = Endpoint("GET", c.OPEN_ORDER_LIST, signed=True)
MY_TRADES = Endpoint("GET", c.MY_TRADES, signed=True)

# enums.md "Order status"
STATUSES: dict[str, OrderStatus] = {
    "NEW": OrderStatus.NEW,
    "PENDING_NEW": OrderStatus.PENDING,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.PENDING,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}


def ms_to_datetime(value: object) -> datetime | None:
    if value in (None, "", 0, -1):
        return None
    return datetime.fromtimestamp(int(str(value)) / 1000, tz=UTC)


def _positive(value: object) -> Decimal | None:
    number = optional_decimal(value)
    return number if number is not None and number > 0 else None


def parse_ticker(item: dict[str, Any]) -> Ticker:
    return Ticker(
        symbol=item["symbol"],
        last_price=to_decimal(item["lastPrice"]),
        bid_price=optional_decimal(item.get("bidPrice")),
        ask_price=optional_decimal(item.get("askPrice")),
        open_price_24h=optional_decimal(item.get("openPrice")),
        high_price_24h=optional_decimal(item.get("highPrice")),
        low_price_24h=optional_decimal(item.get("lowPrice")),
        volume_24h=optional_decimal(item.get("volume")),
        quote_volume_24h=optional_decimal(item.get("quoteVolume")),
        change_percent_24h=optional_decimal(item.get("priceChangePercent")),
    )


def parse_klines(rows: list[list[Any]]) -> list[Kline]:
    """Binance lists oldest first already."""
    return [
        Kline(
            open_time=datetime.fromtimestamp(int(row[0]) / 1000, tz=UTC),
            open=to_decimal(row[1]),
            high=to_decimal(row[2]),
            low=to_decimal(row[3]),
            close=to_decimal(row[4]),
            volume=to_decimal(row[5]),
            quote_volume=to_decimal(row[7]),
        )
        for row in rows
    ]


def parse_instrument(item: dict[str, Any]) -> InstrumentFilters:
    """filters.md: PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE, MIN_NOTIONAL, NOTIONAL (0 = off)."""
    filters = {f.get("filterType"): f for f in item.get("filters", [])}
    price = filters.get("PRICE_FILTER", {})
    lot = filters.get("LOT_SIZE", {})
    market = filters.get("MARKET_LOT_SIZE")
    notional = filters.get("NOTIONAL")
    min_notional = filters.get("MIN_NOTIONAL")
    min_value = Decimal(0)
    max_value: Decimal | None = None
    if notional is not None:
        min_value = to_decimal(notional.get("minNotional"), default=Decimal(0))
        max_value = _positive(notional.get("maxNotional"))
    if min_notional is not None:
        min_value = max(min_value, to_decimal(min_notional.get("minNotional"), default=Decimal(0)))
    quote_places = item.get("quoteAssetPrecision", item.get("quotePrecision"))
    return InstrumentFilters(
        symbol=item["symbol"],
        base_asset=item.get("baseAsset", ""),
        quote_asset=item.get("quoteAsset", ""),
        qty_step=to_decimal(lot.get("stepSize"), default=Decimal(0)),
        min_qty=to_decimal(lot.get("minQty"), default=Decimal(0)),
        max_qty=_positive(lot.get("maxQty")),
        min_notional=min_value,
        max_notional=max_value,
        tick_size=to_decimal(price.get("tickSize"), default=Decimal(0)),
        min_price=_positive(price.get("minPrice")),
        max_price=_positive(price.get("maxPrice")),
        market_qty_step=_positive(market.get("stepSize")) if market else None,
        market_min_qty=optional_decimal(market.get("minQty")) if market else None,
        market_max_qty=_positive(market.get("maxQty")) if market else None,
        quote_step=Decimal(1).scaleb(-int(quote_places)) if quote_places is not None else None,
        trading=item.get("status", "TRADING") == "TRADING",
    )


def parse_account(payload: dict[str, Any]) -> AccountInfo:
    rates = payload.get("commissionRates") or {}
    return AccountInfo(
        can_trade=bool(payload.get("canTrade", False)),
        can_withdraw=payload.get("canWithdraw"),
        account_type=str(payload.get("accountType", "SPOT")),
        maker_commission=optional_decimal(rates.get("maker")),
        taker_commission=optional_decimal(rates.get("taker")),
        raw={k: v for k, v in payload.items() if k != "balances"},
    )


def parse_balances(payload: dict[str, Any]) -> list[Balance]:
    return [
        Balance(
            asset=item["asset"],
            free=to_decimal(item.get("free"), default=Decimal(0)),
            locked=to_decimal(item.get("locked"), default=Decimal(0)),
        )
        for item in payload.get("balances", [])
    ]


EXCESS_FLAGS = (
    "enableMargin",
    "enableFutures",
    "enablePortfolioMarginTrading",
    "enableVanillaOptions",
    "enableInternalTransfer",
    "permitsUniversalTransfer",
)
"""apiRestrictions flags (openapi.yaml, GET /sapi/v1/account/apiRestrictions) a key used by
marketbot must not have: it needs enableReading and enableSpotAndMarginTrading only (the
latter also covers margin orders, which need enableMargin as well)."""


def parse_key_permissions(restrictions: dict[str, Any], account: dict[str, Any]) -> KeyPermissions:
    """apiRestrictions says what the key may do; the account says whether it can trade now."""
    expiry_ms = restrictions.get("tradingAuthorityExpirationTime")
    expires_at = ms_to_datetime(expiry_ms) if expiry_ms else None
    excess = tuple(flag for flag in EXCESS_FLAGS if restrictions.get(flag))
    return KeyPermissions(
        excess=excess,
        can_read=bool(restrictions.get("enableReading", False)),
        can_trade=bool(restrictions.get("enableSpotAndMarginTrading", False))
        and bool(account.get("canTrade", True)),
        can_withdraw=bool(restrictions.get("enableWithdrawals", False)),
        ip_bound=bool(restrictions.get("ipRestrict", False)),
        expires_at=expires_at,
    )


def parse_fills(
    items: list[dict[str, Any]], *, order_id: str | None = None, time: datetime | None = None
) -> tuple[Fill, ...]:
    """A FULL response's ``fills``: they carry no time of their own; the order's
    ``transactTime`` is when they executed (a taker order fills as it is placed)."""
    return tuple(
        Fill(
            price=to_decimal(f["price"]),
            quantity=to_decimal(f["qty"]),
            fee=to_decimal(f.get("commission"), default=Decimal(0)),
            fee_asset=str(f.get("commissionAsset", "")),
            trade_id=str(f["tradeId"]) if f.get("tradeId") is not None else None,
            exchange_order_id=order_id,
            filled_at=time,
        )
        for f in items
    )


def parse_my_trades(items: list[dict[str, Any]]) -> list[Fill]:
    """``GET /api/v3/myTrades`` (rest-api.md "Account trade list"), oldest first.

    ``commission`` is in ``commissionAsset``: the asset received for a buy (base), quote for a
    sell, or BNB when BNB pays the fees."""
    fills = [
        Fill(
            price=to_decimal(t["price"]),
            quantity=to_decimal(t["qty"]),
            fee=to_decimal(t.get("commission"), default=Decimal(0)),
            fee_asset=str(t.get("commissionAsset", "")),
            trade_id=str(t["id"]),
            exchange_order_id=str(t["orderId"]),
            filled_at=ms_to_datetime(t.get("time")),
            is_maker=bool(t["isMaker"]) if "isMaker" in t else None,
        )
        for t in items
    ]
    fills.sort(key=lambda f: int(f.trade_id or 0))
    return fills


def parse_order(item: dict[str, Any]) -> OrderState:
    fills = parse_fills(
        item.get("fills", []) or [],
        order_id=str(item["orderId"]),
        time=ms_to_datetime(item.get("transactTime")),
    )
    executed = to_decimal(item.get("executedQty"), default=Decimal(0))
    quote_filled = optional_decimal(item.get("cummulativeQuoteQty"))
    average: Decimal | None = None
    if quote_filled is not None and quote_filled > 0 and executed > 0:
        average = quote_filled / executed
    fees: dict[str, Decimal] = {}
    for fill in fills:
        fees[fill.fee_asset] = fees.get(fill.fee_asset, Decimal(0)) + fill.fee
    created = item.get("time", item.get("transactTime"))
    return OrderState(
        exchange_order_id=str(item["orderId"]),
        client_order_id=str(item.get("clientOrderId", "")),
        symbol=item["symbol"],
        side=Side(item["side"]),
        order_type=str(item.get("type", "")),
        status=STATUSES.get(str(item.get("status")), OrderStatus.PENDING),
        quantity=to_decimal(item.get("origQty"), default=Decimal(0)),
        quote_quantity=_positive(item.get("origQuoteOrderQty")),
        filled_quantity=executed,
        filled_quote_quantity=quote_filled
        if quote_filled is not None and quote_filled >= 0
        else None,
        price=_positive(item.get("price")),
        average_price=average,
        fills=fills,
        fees=tuple(fees.items()),
        created_at=ms_to_datetime(created),
        updated_at=ms_to_datetime(item.get("updateTime", item.get("workingTime"))),
    )


def parse_list_reports(payload: dict[str, Any]) -> tuple[OrderState, ...]:
    """The legs of an order list as ``orderReports`` give them (create and cancel answers).

    In a cancel answer a leg's own id is ``origClientOrderId`` and ``clientOrderId`` is the
    cancel request's (rest-api.md "Cancel Order list" response)."""
    reports: list[OrderState] = []
    for report in payload.get("orderReports", []) or []:
        item = {"symbol": payload.get("symbol", ""), **report}
        if report.get("origClientOrderId"):
            item["clientOrderId"] = report["origClientOrderId"]
        reports.append(parse_order(item))
    return tuple(reports)
