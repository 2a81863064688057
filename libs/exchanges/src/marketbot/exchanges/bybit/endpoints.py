"""Bybit V5 endpoints and their response models (one parser per endpoint)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from marketbot.contracts import KeyPermissions, Side
from marketbot.exchanges.bybit import constants as c
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
    Position,
    Ticker,
)

SERVER_TIME = Endpoint("GET", c.TIME)
TICKERS = Endpoint("GET", c.TICKERS)
KLINE = Endpoint("GET", c.KLINE)
INSTRUMENTS = Endpoint("GET", c.INSTRUMENTS)
ACCOUNT_INFO = Endpoint("GET", c.ACCOUNT_INFO, signed=True)
WALLET_BALANCE = Endpoint("GET", c.WALLET_BALANCE, signed=True)
QUERY_API = Endpoint("GET", c.QUERY_API, signed=True)
ORDER_CREATE = Endpoint("POST", c.ORDER_CREATE, signed=True, read=False)
ORDER_CANCEL = Endpoint("POST", c.ORDER_CANCEL, signed=True, read=False)
ORDER_REALTIME = Endpoint("GET", c.ORDER_REALTIME, signed=True)
ORDER_HISTORY = Endpoint("GET", c.ORDER_HISTORY, signed=True)
POSITION_LIST = Endpoint("GET", c.POSITION_LIST, signed=True)
EXECUTION_LIST = Endpoint("GET", c.EXECUTION_LIST, signed=True)

SIDES = {"Buy": Side.BUY, "Sell": Side.SELL}
SIDE_NAMES = {Side.BUY: "Buy", Side.SELL: "Sell"}

# enum.mdx "orderStatus"
STATUSES: dict[str, OrderStatus] = {
    "New": OrderStatus.NEW,
    "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
    "Untriggered": OrderStatus.UNTRIGGERED,
    "Rejected": OrderStatus.REJECTED,
    "PartiallyFilledCanceled": OrderStatus.PARTIALLY_FILLED_CANCELED,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELED,
    "Triggered": OrderStatus.TRIGGERED,
    "Deactivated": OrderStatus.DEACTIVATED,
}


def ms_to_datetime(value: object) -> datetime | None:
    if value in (None, "", 0, "0"):
        return None
    return datetime.fromtimestamp(int(str(value)) / 1000, tz=UTC)


def _positive(value: object) -> Decimal | None:
    number = optional_decimal(value)
    return number if number is not None and number > 0 else None


def parse_server_time_ms(result: dict[str, Any]) -> int:
    return int(result["timeNano"]) // 1_000_000


def parse_ticker(item: dict[str, Any]) -> Ticker:
    pcnt = optional_decimal(item.get("price24hPcnt"))
    return Ticker(
        symbol=item["symbol"],
        last_price=to_decimal(item["lastPrice"]),
        bid_price=optional_decimal(item.get("bid1Price")),
        ask_price=optional_decimal(item.get("ask1Price")),
        open_price_24h=optional_decimal(item.get("prevPrice24h")),
        high_price_24h=optional_decimal(item.get("highPrice24h")),
        low_price_24h=optional_decimal(item.get("lowPrice24h")),
        volume_24h=optional_decimal(item.get("volume24h")),
        quote_volume_24h=optional_decimal(item.get("turnover24h")),
        change_percent_24h=pcnt * 100 if pcnt is not None else None,
    )


def parse_klines(result: dict[str, Any]) -> list[Kline]:
    """Bybit lists newest first; return oldest first."""
    candles = [
        Kline(
            open_time=datetime.fromtimestamp(int(row[0]) / 1000, tz=UTC),
            open=to_decimal(row[1]),
            high=to_decimal(row[2]),
            low=to_decimal(row[3]),
            close=to_decimal(row[4]),
            volume=to_decimal(row[5]),
            quote_volume=to_decimal(row[6]),
        )
        for row in result.get("list", [])
    ]
    candles.sort(key=lambda k: k.open_time)
    return candles


def parse_instrument(item: dict[str, Any]) -> InstrumentFilters:
    """Spot: basePrecision is the quantity step (no qtyStep on spot); minOrderAmt the notional."""
    lot = item.get("lotSizeFilter", {})
    price = item.get("priceFilter", {})
    step = to_decimal(lot.get("basePrecision") or lot.get("qtyStep"))
    return InstrumentFilters(
        symbol=item["symbol"],
        base_asset=item.get("baseCoin", ""),
        quote_asset=item.get("quoteCoin", ""),
        qty_step=step,
        min_qty=to_decimal(lot.get("minOrderQty"), default=Decimal(0)),
        max_qty=_positive(lot.get("maxLimitOrderQty") or lot.get("maxOrderQty")),
        min_notional=to_decimal(lot.get("minOrderAmt"), default=Decimal(0)),
        max_notional=_positive(lot.get("maxOrderAmt")),
        tick_size=to_decimal(price.get("tickSize")),
        market_qty_step=step,
        market_min_qty=to_decimal(lot.get("minOrderQty"), default=Decimal(0)),
        market_max_qty=_positive(lot.get("maxMarketOrderQty")),
        quote_step=optional_decimal(lot.get("quotePrecision")),
        trading=item.get("status", "Trading") == "Trading",
    )


def parse_account_info(result: dict[str, Any]) -> AccountInfo:
    return AccountInfo(
        can_trade=True,
        account_type=f"UNIFIED(status={result.get('unifiedMarginStatus')})",
        margin_mode=result.get("marginMode"),
        raw=dict(result),
    )


def parse_balances(result: dict[str, Any]) -> list[Balance]:
    """UNIFIED wallet: free = walletBalance - locked (spot open orders)."""
    balances: list[Balance] = []
    for account in result.get("list", []):
        for coin in account.get("coin", []):
            wallet = to_decimal(coin.get("walletBalance"), default=Decimal(0))
            locked = to_decimal(coin.get("locked"), default=Decimal(0))
            balances.append(Balance(asset=coin["coin"], free=wallet - locked, locked=locked))
    return balances


_NEEDED = {("Spot", "SpotTrade")}


def parse_key_permissions(result: dict[str, Any]) -> KeyPermissions:
    permissions: dict[str, list[str]] = result.get("permissions", {}) or {}
    read_only = int(result.get("readOnly", 1)) == 1
    trade = not read_only and bool(permissions.get("Spot") or permissions.get("ContractTrade"))
    ips = tuple(str(ip) for ip in result.get("ips", []) or [])
    expires_at: datetime | None = None
    expired_text = result.get("expiredAt")
    if expired_text:
        moment = datetime.fromisoformat(str(expired_text).replace("Z", "+00:00"))
        if moment.year > 1970:
            expires_at = moment
    # user_apikey-info.mdx, "permissions": only Spot.SpotTrade is needed; everything else
    # (ContractTrade, Derivatives, Options, Wallet transfers, Earn, Exchange...) is excess.
    excess = tuple(
        f"{group}.{name}"
        for group, names in sorted(permissions.items())
        for name in (names or [])
        if (group, name) not in _NEEDED and (group, name) != ("Wallet", "Withdraw")
    )
    return KeyPermissions(
        can_read=True,
        can_trade=trade,
        can_withdraw="Withdraw" in (permissions.get("Wallet") or []),
        excess=excess,
        ip_bound=bool(ips) and ips != ("*",),
        ips=() if ips == ("*",) else ips,
        expires_at=expires_at,
    )


def parse_order(item: dict[str, Any]) -> OrderState:
    fees = tuple(
        (asset, to_decimal(amount)) for asset, amount in (item.get("cumFeeDetail") or {}).items()
    )
    market_in_quote = item.get("marketUnit") == "quoteCoin"
    qty = to_decimal(item.get("qty"), default=Decimal(0))
    return OrderState(
        exchange_order_id=str(item["orderId"]),
        client_order_id=str(item.get("orderLinkId", "")),
        symbol=item["symbol"],
        side=SIDES[item["side"]],
        order_type=str(item.get("orderType", "")).upper(),
        status=STATUSES.get(str(item.get("orderStatus")), OrderStatus.PENDING),
        quantity=Decimal(0) if market_in_quote else qty,
        quote_quantity=qty if market_in_quote else None,
        filled_quantity=to_decimal(item.get("cumExecQty"), default=Decimal(0)),
        filled_quote_quantity=optional_decimal(item.get("cumExecValue")),
        price=_positive(item.get("price")),
        average_price=_positive(item.get("avgPrice")),
        fees=fees,
        created_at=ms_to_datetime(item.get("createdTime")),
        updated_at=ms_to_datetime(item.get("updatedTime")),
        reject_reason=_reject_reason(item.get("rejectReason")),
    )


def spot_fee_asset(
    side: str, fee_rate: Decimal | None, is_maker: bool, base_asset: str, quote_asset: str
) -> str:
    """enum.mdx "Spot Fee Currency Instruction": with a positive fee rate a Buy pays in base
    and a Sell in quote; with a negative (maker rebate) rate a maker Buy gets quote, a maker
    Sell base; a taker is as with a positive rate."""
    buy = side == "Buy"
    if fee_rate is not None and fee_rate < 0 and is_maker:
        return quote_asset if buy else base_asset
    return base_asset if buy else quote_asset


def parse_executions(
    result: dict[str, Any], *, base_asset: str | None = None, quote_asset: str | None = None
) -> list[Fill]:
    """``GET /v5/execution/list`` (docs/v5/order/execution.mdx), oldest first.

    Only trades (``execType`` Trade; funding and settlement records are not fills).
    ``feeCurrency`` names the asset charged; records without it (older spot executions, see
    the ccxt fixture) get it from the Spot Fee Currency Instruction when base and quote are
    given."""
    fills: list[Fill] = []
    for item in result.get("list", []) or []:
        if item.get("execType", "Trade") != "Trade":
            continue
        is_maker = bool(item.get("isMaker", False))
        fee_asset = str(item.get("feeCurrency") or "")
        if not fee_asset and base_asset and quote_asset:
            fee_asset = spot_fee_asset(
                str(item.get("side", "")),
                optional_decimal(item.get("feeRate")),
                is_maker,
                base_asset,
                quote_asset,
            )
        fills.append(
            Fill(
                price=to_decimal(item["execPrice"]),
                quantity=to_decimal(item["execQty"]),
                fee=to_decimal(item.get("execFee"), default=Decimal(0)),
                fee_asset=fee_asset,
                trade_id=str(item["execId"]),
                exchange_order_id=str(item["orderId"]),
                filled_at=ms_to_datetime(item.get("execTime")),
                is_maker=is_maker,
            )
        )
    # The list is newest first; equal execTimes are ordered by execId (the doc's tip).
    fills.sort(key=lambda f: (f.filled_at or datetime.min.replace(tzinfo=UTC), f.trade_id or ""))
    return fills


def parse_position(item: dict[str, Any]) -> Position:
    return Position(
        symbol=item["symbol"],
        side=str(item.get("side", "")),
        size=to_decimal(item.get("size"), default=Decimal(0)),
        average_price=_positive(item.get("avgPrice")),
        mark_price=_positive(item.get("markPrice")),
        unrealised_pnl=optional_decimal(item.get("unrealisedPnl")),
        take_profit=_positive(item.get("takeProfit")),
        stop_loss=_positive(item.get("stopLoss")),
    )


def _reject_reason(value: object) -> str | None:
    if not value or value == "EC_NoError":
        return None
    return str(value)
