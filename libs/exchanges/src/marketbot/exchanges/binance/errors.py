"""Binance Spot codes -> typed errors (reference/binance-spot/errors.md).

Codes decide; for -1013, -2010 and -2011 the documented messages are matched *exactly*
(whole message equality against errors.md's tables, never a substring search).
"""

from __future__ import annotations

from marketbot.contracts import Exchange, RejectReason
from marketbot.exchanges.errors import (
    CLOCK,
    DUPLICATE,
    NOT_FOUND,
    RATE_LIMIT,
    RETRY,
    UNKNOWN,
    CodeRule,
    ExchangeError,
    build_error,
    reject,
)

_BALANCE = reject(RejectReason.INSUFFICIENT_BALANCE)
_FILTER = reject(RejectReason.FILTER)
_PERMISSION = reject(RejectReason.PERMISSION)
_KEY = reject(RejectReason.INVALID_KEY)

CODES: dict[int, CodeRule] = {
    -1000: UNKNOWN,  # UNKNOWN
    -1001: UNKNOWN,  # DISCONNECTED (internal error)
    -1002: _PERMISSION,  # UNAUTHORIZED
    -1003: RATE_LIMIT,  # TOO_MANY_REQUESTS
    -1006: UNKNOWN,  # UNEXPECTED_RESP: execution status unknown
    -1007: UNKNOWN,  # TIMEOUT: execution status unknown
    -1008: RETRY,  # SERVER_BUSY
    -1013: reject(),  # INVALID_MESSAGE (filter failures refined below)
    -1014: reject(),  # UNKNOWN_ORDER_COMPOSITION
    -1015: RATE_LIMIT,  # TOO_MANY_ORDERS
    -1016: reject(),  # SERVICE_SHUTTING_DOWN
    -1020: reject(),  # UNSUPPORTED_OPERATION
    -1021: CLOCK,  # INVALID_TIMESTAMP
    -1022: _KEY,  # INVALID_SIGNATURE
    -1111: _FILTER,  # BAD_PRECISION
    -2010: reject(),  # NEW_ORDER_REJECTED (refined by message)
    -2011: reject(),  # CANCEL_REJECTED (refined by message)
    -2013: NOT_FOUND,  # NO_SUCH_ORDER
    # An unknown order list on GET /api/v3/orderList (binance/binance-spot-api-docs#43).
    -2018: NOT_FOUND,
    -2014: _KEY,  # BAD_API_KEY_FMT
    -2015: _KEY,  # REJECTED_MBX_KEY: invalid API-key, IP, or permissions
    -2026: NOT_FOUND,  # ORDER_ARCHIVED
}

# errors.md "Messages for -1010 ERROR_MSG_RECEIVED, -2010 NEW_ORDER_REJECTED, -2011 ...".
MATCHING_ENGINE_MESSAGES: dict[str, CodeRule] = {
    "Unknown order sent.": NOT_FOUND,
    "Order list does not exist.": NOT_FOUND,
    "Duplicate order sent.": DUPLICATE,
    "Market is closed.": reject(),
    "Account has insufficient balance for requested action.": _BALANCE,
    "Price * QTY is zero or less.": _FILTER,
    "This action is disabled on this account.": _PERMISSION,
    "This account may not place or cancel orders.": _PERMISSION,
    "This symbol is not permitted for this account.": _PERMISSION,
    "This symbol is restricted for this account.": _PERMISSION,
    "Rest API trading is not enabled.": _PERMISSION,
    "Order would trigger immediately.": reject(),
    "Order would immediately match and take.": reject(),
    "The relationship of the prices for the orders is not correct.": reject(),
}

# errors.md "Filter failures".
FILTER_FAILURES = frozenset(
    f"Filter failure: {name}"
    for name in (
        "PRICE_FILTER",
        "PERCENT_PRICE",
        "LOT_SIZE",
        "MIN_NOTIONAL",
        "NOTIONAL",
        "ICEBERG_PARTS",
        "MARKET_LOT_SIZE",
        "MAX_POSITION",
        "MAX_NUM_ORDERS",
        "MAX_NUM_ALGO_ORDERS",
        "MAX_NUM_ICEBERG_ORDERS",
        "MAX_NUM_ORDER_AMENDS",
        "MAX_NUM_ORDER_LISTS",
        "TRAILING_DELTA",
        "EXCHANGE_MAX_NUM_ORDERS",
        "EXCHANGE_MAX_NUM_ALGO_ORDERS",
        "EXCHANGE_MAX_NUM_ICEBERG_ORDERS",
        "EXCHANGE_MAX_NUM_ORDER_LISTS",
    )
)

_DEFAULT = reject()


def classify(code: int, message: str) -> CodeRule:
    if code in (-1010, -2010, -2011, -2038):
        by_message = MATCHING_ENGINE_MESSAGES.get(message)
        if by_message is not None:
            return by_message
    if code == -1013 and message in FILTER_FAILURES:
        return _FILTER
    return CODES.get(code, _DEFAULT)


def error_for(
    code: int, message: str, *, http_status: int | None, retry_after_s: float = 1.0
) -> ExchangeError:
    return build_error(
        classify(code, message),
        exchange=Exchange.BINANCE,
        code=code,
        message=message,
        http_status=http_status,
        retry_after_s=retry_after_s,
    )
