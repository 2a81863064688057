"""Binance Spot HMAC-SHA256 signing: pure functions (rest-api.md "SIGNED Endpoint Examples")."""

from __future__ import annotations

import hashlib
import hmac

from marketbot.contracts import Exchange
from marketbot.exchanges.binance.constants import FORMATS, SIGNABLE
from marketbot.exchanges.policy import (
    EndpointRule,
    SigningPolicy,
    check_values,
    parse_params,
    unique_keys,
)
from marketbot.exchanges.signer import SigningInput


def signature_payload(request: SigningInput) -> str:
    """The query string concatenated, without separator, with the form body."""
    return request.query + request.body


def sign(secret: str, api_key: str, request: SigningInput) -> str:
    """Hex HMAC-SHA256 of the payload. ``api_key`` is not part of a Binance signature."""
    del api_key
    return hmac.new(
        secret.encode(), signature_payload(request).encode(), hashlib.sha256
    ).hexdigest()


def _check(request: SigningInput, endpoint: EndpointRule) -> None:
    pairs = parse_params(request.query, exchange=Exchange.BINANCE) + parse_params(
        request.body, exchange=Exchange.BINANCE
    )
    params = unique_keys(pairs, exchange=Exchange.BINANCE)
    if "signature" in params:
        raise POLICY.refuse("the payload already carries a signature")
    check_values(params, endpoint, FORMATS, exchange=Exchange.BINANCE, path=request.path)
    if params.get("timestamp") != str(request.timestamp_ms):
        raise POLICY.refuse("the payload's timestamp must equal timestamp_ms")
    window = params.get("recvWindow")
    if window is not None and window != str(request.recv_window_ms):
        raise POLICY.refuse("the payload's recvWindow must equal recv_window_ms")


POLICY = SigningPolicy(Exchange.BINANCE, SIGNABLE, _check)


def validate(request: SigningInput) -> None:
    """Raise ``SigningRefusedError`` unless the vault may sign this exact request."""
    POLICY.validate(request)
