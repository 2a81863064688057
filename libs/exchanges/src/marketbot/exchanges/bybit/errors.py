"""Bybit V5 codes -> typed errors (reference/bybit-v5/error.mdx). Classified by code only."""

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
    # UTA / general
    -1: CLOCK,  # "request expired: o@0, now[] diff[]"
    429: RETRY,  # "high server load. Please retry"
    -2015: _KEY,  # (Spot) api key has expired
    33004: _KEY,  # (Derivatives) api key has expired
    10000: UNKNOWN,  # Server Timeout
    10001: reject(),  # Request parameter error
    10002: CLOCK,  # request time exceeds the time window range
    10003: _KEY,  # API key is invalid
    10004: _KEY,  # Error sign
    10005: _PERMISSION,  # Permission denied
    10006: RATE_LIMIT,  # Too many visits
    10007: _KEY,  # User authentication failed
    10008: _PERMISSION,  # Common banned
    10009: _PERMISSION,  # Service restricted for region
    10010: _PERMISSION,  # Unmatched IP
    10014: reject(),  # Invalid duplicate request
    10016: UNKNOWN,  # Server error
    10017: reject(),  # Route not found
    10024: _PERMISSION,  # Compliance rules triggered
    10027: _PERMISSION,  # Transactions are banned
    10028: _PERMISSION,  # Unified account only
    10029: reject(),  # symbol invalid (whitelist)
    110001: NOT_FOUND,  # Order does not exist
    110003: _FILTER,  # price exceeds allowable range
    110004: _BALANCE,
    110007: _BALANCE,
    110008: reject(),  # order completed or cancelled
    110010: reject(),  # order has been cancelled
    110012: _BALANCE,
    110017: _FILTER,  # orderQty truncated to zero
    110044: _BALANCE,
    110045: _BALANCE,
    110051: _BALANCE,
    110052: _BALANCE,
    110053: _BALANCE,
    110072: DUPLICATE,  # OrderLinkedID is duplicate
    110079: RETRY,  # order is processing, try again later
    110094: _FILTER,  # notional below lower limit
    # Spot trade
    170001: UNKNOWN,  # Internal error
    170005: RATE_LIMIT,  # Too many new orders
    170007: UNKNOWN,  # Timeout waiting for response from backend server
    170032: UNKNOWN,  # Network error
    170033: _BALANCE,  # margin insufficient account balance
    170105: reject(),  # parameter empty
    170115: reject(),  # invalid timeInForce
    170116: reject(),  # invalid orderType
    170117: reject(),  # invalid side
    170121: reject(),  # invalid symbol
    170124: _FILTER,  # order amount too large
    170130: reject(),  # invalid parameter data
    170131: _BALANCE,  # Balance insufficient
    170132: _FILTER,  # price too high
    170133: _FILTER,  # price lower than the minimum
    170134: _FILTER,  # price decimal too long
    170136: _FILTER,  # quantity lower than the minimum
    170137: _FILTER,  # volume decimal too long
    170139: reject(),  # order has been filled
    170140: _FILTER,  # order value below lower limit
    170141: DUPLICATE,  # Duplicate clientOrderId
    170142: reject(),  # order has been cancelled
    170143: reject(),  # cannot be found on order book
    170146: UNKNOWN,  # order creation timeout
    170147: UNKNOWN,  # order cancellation timeout
    170148: _FILTER,  # market order amount decimal too long
    170149: reject(),  # create order failed
    170150: reject(),  # cancel order failed
    170151: reject(),  # trading pair not open yet
    170157: _PERMISSION,  # pair not available for api trading
    170190: reject(),  # cancel order has been finished
    170191: RETRY,  # can not cancel order, try again later
    170192: _FILTER,
    170193: _FILTER,
    170194: _FILTER,
    170210: reject(),  # New order rejected
    170212: reject(),  # cancel order request processing
    170213: NOT_FOUND,  # Order does not exist
    170222: RATE_LIMIT,  # Too many requests in this time frame
    170234: UNKNOWN,  # System Error
    170341: _FILTER,  # quantity exceeds maximum
    170371: _FILTER,
    170372: _FILTER,
    170381: _FILTER,
    170382: _FILTER,
    170810: reject(),  # max 500 open orders
}

_DEFAULT = reject()


def classify(code: int) -> CodeRule:
    return CODES.get(code, _DEFAULT)


def error_for(
    code: int, message: str, *, http_status: int | None, retry_after_s: float = 1.0
) -> ExchangeError:
    return build_error(
        classify(code),
        exchange=Exchange.BYBIT,
        code=code,
        message=message,
        http_status=http_status,
        retry_after_s=retry_after_s,
    )
