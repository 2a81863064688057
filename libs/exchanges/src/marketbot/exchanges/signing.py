"""Venue-agnostic signing entry points for the key vault (no per-exchange branching here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from marketbot.contracts import Exchange
from marketbot.exchanges.binance import constants as binance_constants
from marketbot.exchanges.binance import signing as binance_signing
from marketbot.exchanges.bybit import constants as bybit_constants
from marketbot.exchanges.bybit import signing as bybit_signing
from marketbot.exchanges.credentials import CredentialFormat
from marketbot.exchanges.policy import OrderTerms, SigningPolicy
from marketbot.exchanges.signer import SigningInput
from marketbot.runtime.clock import Clock, epoch_ms


@dataclass(frozen=True, slots=True)
class VenueSigning:
    sign: Callable[[str, str, SigningInput], str]
    policy: SigningPolicy
    credentials: CredentialFormat


REGISTRY: dict[Exchange, VenueSigning] = {
    Exchange.BYBIT: VenueSigning(
        bybit_signing.sign, bybit_signing.POLICY, bybit_constants.CREDENTIAL_FORMAT
    ),
    Exchange.BINANCE: VenueSigning(
        binance_signing.sign, binance_signing.POLICY, binance_constants.CREDENTIAL_FORMAT
    ),
}


def sign_request(exchange: Exchange, secret: str, api_key: str, request: SigningInput) -> str:
    """The exchange's signature of ``request`` (pure: no policy check, no I/O)."""
    return REGISTRY[exchange].sign(secret, api_key, request)


def signing_policy(exchange: Exchange) -> SigningPolicy:
    """``is_allowed(method, path)`` and ``validate(request)`` for the vault."""
    return REGISTRY[exchange].policy


def order_terms(exchange: Exchange, request: SigningInput) -> OrderTerms | None:
    """The order a validated request places (symbol, side, amounts, ids), or ``None``."""
    return REGISTRY[exchange].policy.order_terms(request)


def credential_format(exchange: Exchange) -> CredentialFormat:
    """What the venue's API key and secret look like (for validating what users paste)."""
    return REGISTRY[exchange].credentials


def signed_timestamp_ms(clock: Clock, offset_ms: int = 0) -> int:
    """Local wall clock corrected by the measured server offset, in milliseconds."""
    return epoch_ms(clock.now()) + offset_ms
