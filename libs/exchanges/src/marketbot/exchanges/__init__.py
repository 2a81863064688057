"""marketbot.exchanges: Bybit V5 and Binance Spot clients behind one ``Venue`` protocol.

Build one venue per exchange per process with ``create_venue`` and share it by all users;
pass each user's ``Signer`` to the signed methods. The key vault signs with
``signing.sign_request`` after ``signing.signing_policy(exchange).validate(request)``.
"""

from marketbot.exchanges.errors import (
    CircuitOpenError,
    ClockSkewError,
    DuplicateClientOrderIdError,
    ExchangeError,
    IpBannedError,
    OrderNotFoundError,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    Retryable,
    SigningRefusedError,
)
from marketbot.exchanges.factory import Environment, VenueSettings, base_url, create_venue
from marketbot.exchanges.http import HttpSettings
from marketbot.exchanges.retry import RetryPolicy
from marketbot.exchanges.signer import LocalSigner, Signature, Signer, SigningInput
from marketbot.exchanges.signing import sign_request, signing_policy
from marketbot.exchanges.venue import (
    AccountInfo,
    Balance,
    ExitKind,
    ExitLeg,
    Fill,
    InstrumentFilters,
    Kline,
    KlineInterval,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Position,
    Ticker,
    Venue,
)

__all__ = [
    "AccountInfo",
    "Balance",
    "CircuitOpenError",
    "ClockSkewError",
    "DuplicateClientOrderIdError",
    "Environment",
    "ExchangeError",
    "ExitKind",
    "ExitLeg",
    "Fill",
    "HttpSettings",
    "InstrumentFilters",
    "IpBannedError",
    "Kline",
    "KlineInterval",
    "LocalSigner",
    "OrderNotFoundError",
    "OrderRequest",
    "OrderState",
    "OrderStatus",
    "OrderType",
    "OutcomeUnknown",
    "Position",
    "RateLimited",
    "Rejected",
    "RetryPolicy",
    "Retryable",
    "Signature",
    "Signer",
    "SigningInput",
    "SigningRefusedError",
    "Ticker",
    "Venue",
    "VenueSettings",
    "base_url",
    "create_venue",
    "sign_request",
    "signing_policy",
]
