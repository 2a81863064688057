"""Binance Spot facts as data: base URLs, weights, limits, signable endpoints."""

from __future__ import annotations

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

# What the key vault may sign: exact (method, path) -> allowed parameter names.
# Nothing else: no withdrawals (/sapi/v1/capital/withdraw/apply), no transfers.
SIGNABLE: dict[tuple[str, str], EndpointRule] = {
    ("GET", PING): rule(),
    ("GET", TIME): rule(),
    ("GET", TICKER_PRICE): rule("symbol", "symbols"),
    ("GET", TICKER_24H): rule("symbol", "symbols", "type"),
    ("GET", KLINES): rule("symbol", "interval", "startTime", "endTime", "timeZone", "limit"),
    ("GET", EXCHANGE_INFO): rule("symbol", "symbols", "permissions"),
    ("GET", ACCOUNT): rule("omitZeroBalances", *_SIGNED),
    ("GET", API_RESTRICTIONS): rule(*_SIGNED),
    ("POST", ORDER): rule(
        "symbol",
        "side",
        "type",
        "timeInForce",
        "quantity",
        "quoteOrderQty",
        "price",
        "newClientOrderId",
        "stopPrice",
        "newOrderRespType",
        "selfTradePreventionMode",
        *_SIGNED,
    ),
    ("DELETE", ORDER): rule(
        "symbol", "orderId", "origClientOrderId", "newClientOrderId", "cancelRestrictions", *_SIGNED
    ),
    ("GET", ORDER): rule("symbol", "orderId", "origClientOrderId", *_SIGNED),
    ("GET", OPEN_ORDERS): rule("symbol", *_SIGNED),
    ("GET", ALL_ORDERS): rule("symbol", "orderId", "startTime", "endTime", "limit", *_SIGNED),
    ("POST", ORDER_LIST_OCO): rule(
        "symbol",
        "listClientOrderId",
        "side",
        "quantity",
        *(f"above{name}" for name in _OCO_LEG),
        *(f"below{name}" for name in _OCO_LEG),
        "newOrderRespType",
        "selfTradePreventionMode",
        *_SIGNED,
    ),
    ("DELETE", ORDER_LIST): rule(
        "symbol", "orderListId", "listClientOrderId", "newClientOrderId", *_SIGNED
    ),
    ("GET", ORDER_LIST): rule("orderListId", "origClientOrderId", *_SIGNED),
    ("GET", MY_TRADES): rule(
        "symbol", "orderId", "startTime", "endTime", "fromId", "limit", *_SIGNED
    ),
    # web-socket-api.md "Subscribe to User Data Stream through signature subscription":
    # apiKey, timestamp, recvWindow, signed over the parameters sorted by name
    # (binance/signing.py ws_api_payload). The caller sends recvWindow and timestamp; the
    # vault adds apiKey (its own key) and signs. No REST entry allows ``apiKey``, so no
    # REST payload is ever signed with it, and a REST request carrying apiKey is refused by
    # Binance (errors.md -1104 "Not all sent parameters were read").
    (WS_API_METHOD, USER_DATA_SUBSCRIBE_SIGNATURE): rule(*_SIGNED),
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
