"""Bybit V5 facts as data: base URLs, limits, signable endpoints (reference/bybit-v5)."""

from __future__ import annotations

import dataclasses
import re

from marketbot.exchanges.credentials import CredentialFormat, field_format
from marketbot.exchanges.policy import EndpointRule, rule

MAINNET_URL = "https://api.bybit.com"
TESTNET_URL = "https://api-testnet.bybit.com"
DEMO_URL = "https://api-demo.bybit.com"

DEFAULT_RECV_WINDOW_MS = 5000
SIGN_TYPE_HMAC = "2"

# HTTP IP limit: 600 requests per 5-second window per IP (rate-limit_rate-limit.mdx).
IP_LIMIT = 600
IP_WINDOW_S = 5.0
# "403, access too frequent": terminate all sessions and wait at least 10 minutes.
IP_BAN_S = 600.0

# Paths
TIME = "/v5/market/time"
TICKERS = "/v5/market/tickers"
KLINE = "/v5/market/kline"
INSTRUMENTS = "/v5/market/instruments-info"
ACCOUNT_INFO = "/v5/account/info"
WALLET_BALANCE = "/v5/account/wallet-balance"
QUERY_API = "/v5/user/query-api"
ORDER_CREATE = "/v5/order/create"
ORDER_CANCEL = "/v5/order/cancel"
ORDER_REALTIME = "/v5/order/realtime"
ORDER_HISTORY = "/v5/order/history"
POSITION_LIST = "/v5/position/list"
EXECUTION_LIST = "/v5/execution/list"
WS_AUTH = "/realtime"

# Private WebSocket (websocket_wss-authentication.mdx "WebSocket private stream").
WS_PRIVATE_MAINNET_URL = "wss://stream.bybit.com/v5/private"
WS_PRIVATE_TESTNET_URL = "wss://stream-testnet.bybit.com/v5/private"
WS_PRIVATE_PATH = "/v5/private"
WS_PUBLIC_SPOT_MAINNET_URL = "wss://stream.bybit.com/v5/public/spot"
WS_PUBLIC_SPOT_TESTNET_URL = "wss://stream-testnet.bybit.com/v5/public/spot"
WS_PUBLIC_SPOT_PATH = "/v5/public/spot"
# The auth message's ``expires`` "is greater than your current timestamp"; the docs' example
# (after pybit) uses now + 1 s. The vault signs an expiry at most this far after the signed
# timestamp, so a WS auth signature is never good for longer than a REST one.
WS_AUTH_MAX_EXPIRY_MS = 10_000
# "we recommend that you send the ping heartbeat packet every 20 seconds".
WS_PING_INTERVAL_S = 20.0

# Per UID, per endpoint, per second (API Rate Limit Table; spot where it differs).
KEY_LIMITS_PER_S: dict[str, int] = {
    ORDER_CREATE: 20,
    ORDER_CANCEL: 20,
    ORDER_REALTIME: 50,
    ORDER_HISTORY: 50,
    POSITION_LIST: 50,
    WALLET_BALANCE: 50,
    ACCOUNT_INFO: 50,
    QUERY_API: 10,
    EXECUTION_LIST: 50,
}

_ORDER_CREATE_PARAMS = (
    "category",
    "symbol",
    "isLeverage",
    "side",
    "orderType",
    "qty",
    "marketUnit",
    "price",
    "orderFilter",
    "triggerPrice",
    "timeInForce",
    "orderLinkId",
    "takeProfit",
    "stopLoss",
    "tpLimitPrice",
    "slLimitPrice",
    "tpOrderType",
    "slOrderType",
    "smpType",
)
_QUERY_ORDER_PARAMS = (
    "category",
    "symbol",
    "baseCoin",
    "settleCoin",
    "orderId",
    "orderLinkId",
    "orderFilter",
    "limit",
    "cursor",
)

# Formats every signed value must have, by parameter name (a data entry may override).
_DECIMAL = r"\d{1,20}(\.\d{1,20})?"
_MILLIS = r"\d{1,16}"
FORMATS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern)
    for name, pattern in {
        "symbol": r"[A-Z0-9]{2,25}",
        "qty": _DECIMAL,
        "price": _DECIMAL,
        "triggerPrice": _DECIMAL,
        "takeProfit": _DECIMAL,
        "stopLoss": _DECIMAL,
        "tpLimitPrice": _DECIMAL,
        "slLimitPrice": _DECIMAL,
        # orderLinkId: "max 36 characters", letters, numbers, - and _ (order_create-order.mdx)
        "orderLinkId": r"[A-Za-z0-9_\-]{1,36}",
        "orderId": r"[A-Za-z0-9\-]{1,64}",
        "limit": r"\d{1,3}",
        "cursor": r"[A-Za-z0-9%=_\-:.]{1,512}",
        "startTime": _MILLIS,
        "endTime": _MILLIS,
        "coin": r"[A-Z0-9]{1,20}(,[A-Z0-9]{1,20}){0,9}",
        "baseCoin": r"[A-Z0-9]{1,20}",
        "openOnly": r"[012]",
    }.items()
}

# Values: spot only. category=linear/inverse/option are derivatives, isLeverage=1 is spot
# margin (order_create-order.mdx, the category and isLeverage rows): never signed.
_SPOT = {"category": ("spot",)}
_ORDER_VALUES = {
    **_SPOT,
    "isLeverage": ("0",),
    "side": ("Buy", "Sell"),
    "orderType": ("Market", "Limit"),
    "timeInForce": ("GTC", "IOC", "FOK", "PostOnly"),
    "marketUnit": ("baseCoin", "quoteCoin"),
    "orderFilter": ("Order", "tpslOrder", "StopOrder"),
    "tpOrderType": ("Market", "Limit"),
    "slOrderType": ("Market", "Limit"),
    # smp.mdx / enum.mdx smpType
    "smpType": ("None", "CancelMaker", "CancelTaker", "CancelBoth"),
}

# What the key vault may sign: exact (method, path) -> a data entry (policy.rule). Nothing
# else: no withdrawals (/v5/asset/withdraw/create), no transfers, no derivatives, no key
# management (/v5/user/delete-api). A new endpoint is a new entry here.
SIGNABLE: dict[tuple[str, str], EndpointRule] = {
    ("GET", ACCOUNT_INFO): rule(),
    ("GET", WALLET_BALANCE): rule(
        "coin", required=("accountType",), values={"accountType": ("UNIFIED",)}
    ),
    # The vault's own key check (user_apikey-info.mdx): never handed out (no parameters, so
    # its signature would fit any parameterless GET).
    ("GET", QUERY_API): rule(internal=True),
    ("POST", ORDER_CREATE): rule(
        *_ORDER_CREATE_PARAMS,
        required=("category", "symbol", "side", "orderType", "qty", "orderLinkId"),
        values=_ORDER_VALUES,
    ),
    ("POST", ORDER_CANCEL): rule(
        "orderFilter",
        required=("category", "symbol"),
        one_of=(("orderId", "orderLinkId"),),
        values=_ORDER_VALUES,
    ),
    ("GET", ORDER_REALTIME): rule(
        *_QUERY_ORDER_PARAMS, "openOnly", required=("category",), values=_ORDER_VALUES
    ),
    ("GET", ORDER_HISTORY): rule(
        *_QUERY_ORDER_PARAMS,
        "orderStatus",
        "startTime",
        "endTime",
        required=("category",),
        values=_ORDER_VALUES,
    ),
    # docs/v5/order/execution.mdx (Get Trade History): category mandatory (spot here);
    # the venue reads one order's trades (orderId) page by page (cursor).
    ("GET", EXECUTION_LIST): rule(
        "symbol",
        "orderId",
        "orderLinkId",
        "baseCoin",
        "startTime",
        "endTime",
        "limit",
        "cursor",
        "execType",
        required=("category",),
        values={**_SPOT, "execType": ("Trade",)},
    ),
    # Private WebSocket auth: signs "GET/realtime" + expires, where expires = timestamp_ms
    # + recv_window_ms and recv_window_ms <= WS_AUTH_MAX_EXPIRY_MS (bybit/signing.py). That
    # pre-sign string has no API key in it, so it cannot match a REST signature.
    ("GET", WS_AUTH): rule(),
}

# Every REST entry is sent by the vault itself (its signature never leaves it). Bybit
# signs timestamp + key + window + the query or JSON body, not the path (guide.mdx), and
# does not document refusing a parameter an endpoint does not read (unlike Binance's
# -1104), so only a target's *mandatory* parameters and values can tell endpoints apart:
# a wallet-balance signature (accountType=UNIFIED) also fits other documented reads
# taking accountType, an order-create body (category=spot, symbol, orderLinkId...) fits
# /v5/order/amend and /v5/order/cancel-all (test_replay_scan.py, over the Bybit pages).
# Handed out: the private WebSocket auth only ("GET/realtime" + expires: no REST pre-sign
# string starts with "GET", they start with the timestamp).
VAULT_SENT: frozenset[tuple[str, str]] = frozenset(
    key for key in SIGNABLE if key != ("GET", WS_AUTH) and key != ("GET", QUERY_API)
)
SIGNABLE = {
    key: dataclasses.replace(entry, sent_by_vault=key in VAULT_SENT)
    for key, entry in SIGNABLE.items()
}

KLINE_INTERVALS: dict[str, str] = {
    "1m": "1",
    "3m": "3",
    "5m": "5",
    "15m": "15",
    "30m": "30",
    "1h": "60",
    "2h": "120",
    "4h": "240",
    "6h": "360",
    "12h": "720",
    "1d": "D",
    "1w": "W",
    "1M": "M",
}


# System-generated HMAC keys (guide.mdx, user_apikey-info.mdx examples);
# RSA/Ed25519 keys are not supported.
CREDENTIAL_FORMAT = CredentialFormat(
    api_key=field_format(r"[A-Za-z0-9]{18}", "18 letters and digits"),
    secret=field_format(r"[A-Za-z0-9]{36}", "36 letters and digits"),
    where="Bybit > Account > API Management (system-generated key, HMAC)",
)
