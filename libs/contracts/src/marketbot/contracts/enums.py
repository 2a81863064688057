"""Closed vocabularies shared by every service."""

from enum import StrEnum


class Exchange(StrEnum):
    BYBIT = "bybit"
    BINANCE = "binance"


class SignalAction(StrEnum):
    """What the TradingView alert asks for."""

    BUY = "buy"
    SELL = "sell"
    CLOSE = "close"


class DecisionAction(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class Plan(StrEnum):
    PRO = "PRO"
    FLEX = "FLEX"
    TRIAL = "TRIAL"


class SubscriptionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    EXPIRED = "EXPIRED"


class TradingMode(StrEnum):
    PERSONAL = "PERSONAL"
    PAUSED = "PAUSED"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class CloseReason(StrEnum):
    TAKE_PROFIT = "TAKE_PROFIT"
    STOP_LOSS = "STOP_LOSS"
    SIGNAL = "SIGNAL"
    MANUAL = "MANUAL"


class OperationStatus(StrEnum):
    REQUESTED = "REQUESTED"
    PLACED = "PLACED"
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"


class RejectReason(StrEnum):
    """Why an order was not placed; the message next to it says it in words."""

    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    FILTER = "FILTER"
    PERMISSION = "PERMISSION"
    INVALID_KEY = "INVALID_KEY"
    STALE = "STALE"
    NO_POSITION = "NO_POSITION"
    SIGNING_REFUSED = "SIGNING_REFUSED"
    EXCHANGE = "EXCHANGE"
