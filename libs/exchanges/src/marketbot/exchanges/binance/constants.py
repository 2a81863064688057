"""Binance Spot facts as data: base URLs, weights, limits, signable endpoints."""

from __future__ import annotations

import dataclasses
import re

from marketbot.exchanges.credentials import CredentialFormat, field_format
from marketbot.exchanges.policy import EndpointRule, rule

MAINNET_URL = "https://api.binance.com"
TESTNET_URL = "https://testnet.binance.vision"
# Binance Spot has no separate "demo" REST host in the reference; demo == testnet here.
DEMO_URL = TESTNET_URL

DEFAULT_RECV_WINDOW_MS = 5000

# REQUEST_WEIGHT per IP (enums.md example, exchange-facts): 6000 per minute. Replaced by
# exchangeInfo.rateLimits when loaded.
REQUEST_WEIGHT_LIMIT = 6000
REQUEST_WEIGHT_WINDOW_S = 60.0
# ORDERS per account (enums.md example): 10 per second; replaced by exchangeInfo.rateLimits.
ORDERS_LIMIT = 10
ORDERS_WINDOW_S = 1.0

USED_WEIGHT_HEADER = "x-mbx-used-weight-1m"
RETRY_AFTER_HEADER = "retry-after"
DEFAULT_BAN_S = 120.0  # 418 without Retry-After: bans start at 2 minutes

# Paths
PING = "/api/v3/ping"
TIME = "/api/v3/time"
TICKER_PRICE = "/api/v3/ticker/price"
TICKER_24H = "/api/v3/ticker/24hr"
KLINES = "/api/v3/klines"
EXCHANGE_INFO = "/api/v3/exchangeInfo"
ACCOUNT = "/api/v3/account"
API_RESTRICTIONS = "/sapi/v1/account/apiRestrictions"
ORDER = "/api/v3/order"
OPEN_ORDERS = "/api/v3/openOrders"
ALL_ORDERS = "/api/v3/allOrders"
ORDER_LIST_OCO = "/api/v3/orderList/oco"
ORDER_LIST = "/api/v3/orderList"
OPEN_ORDER_LIST = "/api/v3/openOrderList"
MY_TRADES = "/api/v3/myTrades"

# WebSocket API (web-socket-api.md "General API Information": wss://ws-api.binance.com:443/ws-api/v3).
WS_API_MAINNET_URL = "wss://ws-api.binance.com:443/ws-api/v3"
WS_API_TESTNET_URL = "wss://ws-api.testnet.binance.vision/ws-api/v3"
WS_API_PATH = "/ws-api/v3"
# A WS API method signed by the vault is named by its method name in ``path`` (it has no
# leading slash, so it can never be a REST path) under "GET" (the sign request's contract
# names an HTTP method; the WS API has none).
WS_API_METHOD = "GET"
USER_DATA_SUBSCRIBE_SIGNATURE = "userDataStream.subscribe.signature"
# "A single session supports up to 1,000 active subscriptions simultaneously" and "a
# maximum of 65,535 total subscriptions over its lifetime" (User Data Stream subscription).
WS_API_MAX_ACTIVE_SUBSCRIPTIONS = 1000
WS_API_MAX_LIFETIME_SUBSCRIPTIONS = 65_535

# Request weight per (method, path) (rest-api.md); symbol-less variants are heavier.
WEIGHTS: dict[tuple[str, str], int] = {
    ("GET", PING): 1,
    ("GET", TIME): 1,
    ("GET", TICKER_PRICE): 2,
    ("GET", TICKER_24H): 2,
    ("GET", KLINES): 2,
    ("GET", EXCHANGE_INFO): 20,
    ("GET", ACCOUNT): 20,
    ("GET", API_RESTRICTIONS): 1,
    ("POST", ORDER): 1,
    ("DELETE", ORDER): 1,
    ("GET", ORDER): 4,
    ("GET", OPEN_ORDERS): 6,
    ("GET", ALL_ORDERS): 20,
    ("POST", ORDER_LIST_OCO): 1,
    ("DELETE", ORDER_LIST): 1,
    ("GET", ORDER_LIST): 4,
    # rest-api.md "Query Open Order lists (USER_DATA)": weight 6, every symbol at once.
    ("GET", OPEN_ORDER_LIST): 6,
    ("GET", MY_TRADES): 20,
}
# rest-api.md "Account trade list": weight 20, 5 with orderId.
WEIGHTS_WITH_ORDER_ID: dict[tuple[str, str], int] = {("GET", MY_TRADES): 5}
WEIGHTS_WITHOUT_SYMBOL: dict[tuple[str, str], int] = {
    ("GET", TICKER_PRICE): 4,
    ("GET", TICKER_24H): 80,
    ("GET", OPEN_ORDERS): 80,
}
# Endpoints that count against the account's ORDERS limits (unfilled order count).
ORDER_COUNTED: dict[tuple[str, str], int] = {("POST", ORDER): 1, ("POST", ORDER_LIST_OCO): 2}

_SIGNED = ("recvWindow", "timestamp")
_OCO_LEG = (
    "Type",
    "ClientOrderId",
    "IcebergQty",
    "Price",
    "StopPrice",
    "TrailingDelta",
    "TimeInForce",
    "StrategyId",
    "StrategyType",
    "PegPriceType",
    "PegOffsetType",
    "PegOffsetValue",
)

# Formats every signed value must have, by parameter name (a data entry may override).
_DECIMAL = r"\d{1,20}(\.\d{1,20})?"
_INTEGER = r"\d{1,20}"
_CLIENT_ID = r"[A-Za-z0-9_\-]{1,36}"  # rest-api.md: newClientOrderId ^[a-zA-Z0-9-_]{1,36}$
FORMATS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern)
    for name, pattern in {
        "symbol": r"[A-Z0-9]{2,20}",
        "quantity": _DECIMAL,
        "quoteOrderQty": _DECIMAL,
        "price": _DECIMAL,
        "stopPrice": _DECIMAL,
        **{
            f"{leg}{name}": _DECIMAL
            for leg in ("above", "below")
            for name in ("Price", "StopPrice")
        },
        "newClientOrderId": _CLIENT_ID,
        "origClientOrderId": _CLIENT_ID,
        "listClientOrderId": _CLIENT_ID,
        "aboveClientOrderId": _CLIENT_ID,
        "belowClientOrderId": _CLIENT_ID,
        "orderId": _INTEGER,
        "orderListId": _INTEGER,
        "fromId": _INTEGER,
        "startTime": _INTEGER,
        "endTime": _INTEGER,
        "limit": r"\d{1,4}",
        "timestamp": _INTEGER,
        "recvWindow": _INTEGER,
        "omitZeroBalances": r"true|false",
    }.items()
}

# enums.md: order sides, types, time in force, response types, STP modes.
_ORDER_TYPES = (
    "LIMIT",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
    "LIMIT_MAKER",
)
_VALUES = {
    "side": ("BUY", "SELL"),
    "type": _ORDER_TYPES,
    "aboveType": _ORDER_TYPES,
    "belowType": _ORDER_TYPES,
    "timeInForce": ("GTC", "IOC", "FOK"),
    "aboveTimeInForce": ("GTC", "IOC", "FOK"),
    "belowTimeInForce": ("GTC", "IOC", "FOK"),
    "newOrderRespType": ("ACK", "RESULT", "FULL"),
    "selfTradePreventionMode": ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"),
    "cancelRestrictions": ("ONLY_NEW", "ONLY_PARTIALLY_FILLED"),
}

# What the key vault may sign: exact (method, path) -> a data entry (policy.rule). Only
# signed endpoints: nothing else, no withdrawals (/sapi/v1/capital/withdraw/apply), no
# transfers, no margin (/sapi/v1/margin/order). A new endpoint is a new entry here.
#
# Binding (policy.py): Binance signs the parameters only, and refuses parameters an
# endpoint does not read (errors.md -1104) or a missing mandatory one, so each entry
# *requires* the parameters that tie its signature to it; test_replay_scan.py proves, over
# every signed endpoint of the OpenAPI, which ones a signed set could still authenticate.
SIGNABLE: dict[tuple[str, str], EndpointRule] = {
    # omitZeroBalances (rest-api.md "Account information") is read by no other endpoint.
    ("GET", ACCOUNT): rule(*_SIGNED, required=("omitZeroBalances", "timestamp")),
    # The vault's own key check: no parameters of its own, so it is never handed out.
    ("GET", API_RESTRICTIONS): rule(*_SIGNED, required=("timestamp",), internal=True),
    ("POST", ORDER): rule(
        "timeInForce",
        "quantity",
        "quoteOrderQty",
        "price",
        "stopPrice",
        "newOrderRespType",
        "selfTradePreventionMode",
        *_SIGNED,
        required=("symbol", "side", "type", "newClientOrderId", "timestamp"),
        one_of=(("quantity", "quoteOrderQty"),),
        values=_VALUES,
    ),
    ("DELETE", ORDER): rule(
        "newClientOrderId",
        "cancelRestrictions",
        *_SIGNED,
        required=("symbol", "timestamp"),
        one_of=(("orderId", "origClientOrderId"),),
        values=_VALUES,
    ),
    ("GET", ORDER): rule(
        *_SIGNED, required=("symbol", "timestamp"), one_of=(("orderId", "origClientOrderId"),)
    ),
    # GET /api/v3/openOrders is not signable: its only parameter set (symbol, timestamp)
    # also authenticates DELETE /api/v3/openOrders, "Cancel all Open Orders on a Symbol"
    # (the method is not signed). allOrders requires ``limit``, which that one does not read.
    ("GET", ALL_ORDERS): rule(
        "orderId", "startTime", "endTime", *_SIGNED, required=("symbol", "limit", "timestamp")
    ),
    ("POST", ORDER_LIST_OCO): rule(
        "listClientOrderId",
        *(f"above{name}" for name in _OCO_LEG),
        *(f"below{name}" for name in _OCO_LEG),
        "newOrderRespType",
        "selfTradePreventionMode",
        *_SIGNED,
        required=("symbol", "side", "quantity", "aboveType", "belowType", "timestamp"),
        values=_VALUES,
    ),
    ("DELETE", ORDER_LIST): rule(
        "newClientOrderId",
        *_SIGNED,
        required=("symbol", "timestamp"),
        one_of=(("orderListId", "listClientOrderId"),),
    ),
    ("GET", ORDER_LIST): rule(
        *_SIGNED, required=("timestamp",), one_of=(("orderListId", "origClientOrderId"),)
    ),
    # rest-api.md "Query Open Order lists": recvWindow and timestamp only (every open list
    # of the account, all symbols). Nothing binds that signature (it would fit any
    # endpoint taking only a timestamp), so the vault sends it itself.
    ("GET", OPEN_ORDER_LIST): rule(*_SIGNED, required=("timestamp",)),
    # rest-api.md "Account trade list": symbol mandatory; orderId, startTime, endTime,
    # fromId, limit optional. ``limit`` is required here: with only symbol and timestamp the
    # signature would also authenticate DELETE /api/v3/openOrders (and, with orderId,
    # DELETE /api/v3/order), neither of which reads ``limit`` (errors.md -1104).
    ("GET", MY_TRADES): rule(
        "orderId",
        "startTime",
        "endTime",
        "fromId",
        *_SIGNED,
        required=("symbol", "limit", "timestamp"),
    ),
    # web-socket-api.md "Subscribe to User Data Stream through signature subscription":
    # apiKey, timestamp, recvWindow, signed over the parameters sorted by name
    # (binance/signing.py ws_api_payload). The caller sends recvWindow and timestamp; the
    # vault adds apiKey (its own key) and signs. No REST entry allows ``apiKey``, so no
    # REST payload is ever signed with it, and a REST request carrying apiKey is refused by
    # Binance (errors.md -1104 "Not all sent parameters were read").
    (WS_API_METHOD, USER_DATA_SUBSCRIBE_SIGNATURE): rule(*_SIGNED),
}

# Sent by the vault itself (the signature never leaves it): no parameter binds these
# signatures to their endpoint, so the replay scan (test_replay_scan.py) finds another
# documented endpoint that would accept each one (errors.md -1104 refuses only unread
# parameters):
# - POST /api/v3/order: /api/v3/order/test takes "all parameters accepted by POST
#   /api/v3/order" (rest-api.md "Test new order"), /api/v3/sor/order the same order;
# - GET and DELETE /api/v3/order, GET and DELETE /api/v3/orderList: the Margin twins
#   (/sapi/v1/margin/order, /sapi/v1/margin/orderList) read exactly the same parameters,
#   and "Spot & Margin Trading" is one permission (apiRestrictions
#   enableSpotAndMarginTrading), so an accepted key does not exclude them;
# - GET openOrderList: a timestamp alone, which fits every endpoint taking no mandatory
#   parameter of its own (GET /api/v3/account, /sapi/v1/margin/openOrderList...);
# - GET allOrders and myTrades: /api/v3/myAllocations and the Margin reads.
# Handed out: GET /api/v3/account (omitZeroBalances is read nowhere else), the OCO list
# (its above*/below* parameters), the WS API subscription (it carries apiKey).
VAULT_SENT: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", ORDER),
        ("DELETE", ORDER),
        ("GET", ORDER),
        ("GET", ALL_ORDERS),
        ("DELETE", ORDER_LIST),
        ("GET", ORDER_LIST),
        ("GET", OPEN_ORDER_LIST),
        ("GET", MY_TRADES),
    }
)
SIGNABLE = {
    key: dataclasses.replace(entry, sent_by_vault=key in VAULT_SENT)
    for key, entry in SIGNABLE.items()
}

KLINE_INTERVALS: dict[str, str] = {
    "1m": "1m",
    "3m": "3m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1h",
    "2h": "2h",
    "4h": "4h",
    "6h": "6h",
    "12h": "12h",
    "1d": "1d",
    "1w": "1w",
    "1M": "1M",
}


# System-generated HMAC keys (faqs_api_key_types.md); RSA/Ed25519 keys are not supported.
CREDENTIAL_FORMAT = CredentialFormat(
    api_key=field_format(r"[A-Za-z0-9]{64}", "64 letters and digits"),
    secret=field_format(r"[A-Za-z0-9]{64}", "64 letters and digits"),
    where="Binance > API Management (system-generated key, HMAC)",
)
