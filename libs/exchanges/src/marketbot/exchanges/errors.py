"""Typed exchange errors: the class decides what the caller does next.

* ``Rejected``: final. The exchange refused the request; ``reason`` is what the user sees.
* ``Retryable``: nothing was executed; sending again is safe.
* ``RateLimited``: a ``Retryable`` with the time to wait before trying again.
* ``OutcomeUnknown``: the request may have been executed (timeout, 5xx, dropped response
  after sending). Never resend blindly: reconcile by client order id.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from marketbot.contracts import Exchange, RejectReason


class ExchangeError(Exception):
    """Base of every error raised by a venue client."""

    def __init__(
        self,
        message: str,
        *,
        exchange: Exchange | None = None,
        code: int | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exchange = exchange
        self.code = code
        self.http_status = http_status

    def __str__(self) -> str:
        where = f"{self.exchange.value} " if self.exchange else ""
        code = f" [{self.code}]" if self.code is not None else ""
        status = f" (HTTP {self.http_status})" if self.http_status is not None else ""
        return f"{where}{type(self).__name__}{code}{status}: {self.message}"


class Rejected(ExchangeError):  # noqa: N818 - the name the issue and callers use
    """Final: the exchange refused the request. Do not retry."""

    def __init__(
        self,
        message: str,
        *,
        reason: RejectReason,
        exchange: Exchange | None = None,
        code: int | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, exchange=exchange, code=code, http_status=http_status)
        self.reason = reason


class OrderNotFoundError(Rejected):
    """The exchange says the order does not exist (a fact, not a failure)."""


class DuplicateClientOrderIdError(Rejected):
    """The client order id is already in use: an earlier attempt may have been placed."""


class Retryable(ExchangeError):  # noqa: N818 - the name the issue and callers use
    """Nothing was executed; the same request may be sent again."""


class ClockSkewError(Retryable):
    """The timestamp was outside the exchange's receive window (Bybit 10002, Binance -1021)."""


class CircuitOpenError(Retryable):
    """The circuit breaker of this endpoint is open; the request was not sent.

    ``retry_after_s``: when the breaker lets a probe through (wait for it, never spin)."""

    def __init__(
        self,
        message: str,
        *,
        exchange: Exchange | None = None,
        retry_after_s: float = 1.0,
    ) -> None:
        super().__init__(message, exchange=exchange)
        self.retry_after_s = retry_after_s


class RateLimited(Retryable):
    """A rate limit was hit (or would be); wait ``retry_after_s`` before sending again."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float,
        exchange: Exchange | None = None,
        code: int | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, exchange=exchange, code=code, http_status=http_status)
        self.retry_after_s = retry_after_s


class IpBannedError(RateLimited):
    """The exchange banned this IP (Binance 418, Bybit 403): all traffic stops until it ends."""


class OutcomeUnknown(ExchangeError):  # noqa: N818 - the name the issue and callers use
    """The request may or may not have been executed. Reconcile by client order id."""

    def __init__(
        self,
        message: str,
        *,
        exchange: Exchange | None = None,
        code: int | None = None,
        http_status: int | None = None,
        client_order_id: str | None = None,
    ) -> None:
        super().__init__(message, exchange=exchange, code=code, http_status=http_status)
        self.client_order_id = client_order_id


class SigningRefusedError(Rejected):
    """The signing policy refused the request (endpoint not allowed, or malformed)."""

    def __init__(self, message: str, *, exchange: Exchange | None = None) -> None:
        super().__init__(message, reason=RejectReason.SIGNING_REFUSED, exchange=exchange)


class Action(Enum):
    """What a documented error code means for the caller."""

    REJECT = "reject"
    NOT_FOUND = "not_found"
    DUPLICATE = "duplicate"
    RETRY = "retry"
    RATE_LIMIT = "rate_limit"
    CLOCK = "clock"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CodeRule:
    """How one documented venue code is classified."""

    action: Action
    reason: RejectReason = RejectReason.EXCHANGE


def reject(reason: RejectReason = RejectReason.EXCHANGE) -> CodeRule:
    return CodeRule(Action.REJECT, reason)


RETRY = CodeRule(Action.RETRY)
RATE_LIMIT = CodeRule(Action.RATE_LIMIT)
CLOCK = CodeRule(Action.CLOCK)
UNKNOWN = CodeRule(Action.UNKNOWN)
NOT_FOUND = CodeRule(Action.NOT_FOUND)
DUPLICATE = CodeRule(Action.DUPLICATE)


def build_error(
    rule: CodeRule,
    *,
    exchange: Exchange,
    code: int,
    message: str,
    http_status: int | None,
    retry_after_s: float = 1.0,
) -> ExchangeError:
    """The typed error for a classified venue code."""
    kwargs: dict[str, Any] = {"exchange": exchange, "code": code, "http_status": http_status}
    match rule.action:
        case Action.REJECT:
            return Rejected(message, reason=rule.reason, **kwargs)
        case Action.NOT_FOUND:
            return OrderNotFoundError(message, reason=RejectReason.EXCHANGE, **kwargs)
        case Action.DUPLICATE:
            return DuplicateClientOrderIdError(message, reason=RejectReason.EXCHANGE, **kwargs)
        case Action.RETRY:
            return Retryable(message, **kwargs)
        case Action.RATE_LIMIT:
            return RateLimited(message, retry_after_s=retry_after_s, **kwargs)
        case Action.CLOCK:
            return ClockSkewError(message, **kwargs)
        case Action.UNKNOWN:
            return OutcomeUnknown(message, **kwargs)
