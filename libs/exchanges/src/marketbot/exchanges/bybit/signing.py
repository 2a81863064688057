"""Bybit V5 HMAC-SHA256 signing: pure functions (guide.mdx, websocket_wss-authentication.mdx)."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal

from marketbot.contracts import Exchange, Side
from marketbot.exchanges.bybit.constants import (
    FORMATS,
    ORDER_CREATE,
    SIGNABLE,
    WS_AUTH,
    WS_AUTH_MAX_EXPIRY_MS,
)
from marketbot.exchanges.policy import (
    EndpointRule,
    OrderTerms,
    SigningPolicy,
    check_values,
    parse_params,
    unique_keys,
)
from marketbot.exchanges.signer import Signature, SigningInput


def ws_auth_expires(request: SigningInput) -> int:
    """A WS auth request's ``expires``: its timestamp plus its window (bounded by the policy)."""
    return request.timestamp_ms + request.recv_window_ms


def pre_sign_string(api_key: str, request: SigningInput) -> str:
    """GET: ts+key+window+query; POST: ts+key+window+jsonBody; WS auth: GET/realtime+expires."""
    if request.path == WS_AUTH:
        return f"GET{WS_AUTH}{ws_auth_expires(request)}"
    payload = request.body if request.method == "POST" else request.query
    return f"{request.timestamp_ms}{api_key}{request.recv_window_ms}{payload}"


def hmac_sha256_hex(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def sign(secret: str, api_key: str, request: SigningInput) -> str:
    """Lowercase hex HMAC-SHA256 of the pre-sign string."""
    return hmac_sha256_hex(secret, pre_sign_string(api_key, request))


def ws_auth_request(timestamp_ms: int, expiry_ms: int = 1000) -> SigningInput:
    """What to ask the vault for to authenticate a private WebSocket, ``expiry_ms`` from now.

    websocket_wss-authentication.mdx: sign ``GET/realtime{expires}``, ``expires`` greater than
    the current timestamp (the docs' example: now + 1 s).
    """
    return SigningInput(Exchange.BYBIT, "GET", WS_AUTH, "", "", timestamp_ms, expiry_ms)


def ws_auth_message(request: SigningInput, signature: Signature) -> dict[str, object]:
    """The ``{"op": "auth", "args": [api_key, expires, signature]}`` message."""
    return {
        "op": "auth",
        "args": [signature.api_key, ws_auth_expires(request), signature.signature],
    }


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _check(request: SigningInput, endpoint: EndpointRule) -> None:
    if request.path == WS_AUTH:
        if request.query or request.body:
            raise POLICY.refuse("WebSocket auth carries no query and no body")
        if request.recv_window_ms > WS_AUTH_MAX_EXPIRY_MS:
            raise POLICY.refuse(
                f"WebSocket auth expires at most {WS_AUTH_MAX_EXPIRY_MS} ms after timestamp_ms "
                f"(recv_window_ms is {request.recv_window_ms})"
            )
        return
    if request.method == "POST":
        if request.query:
            raise POLICY.refuse("a POST is signed over its body; the query must be empty")
        try:
            body = json.loads(request.body, object_pairs_hook=_reject_duplicates)
        except ValueError as exc:
            raise POLICY.refuse(f"body is not a JSON object: {exc}") from exc
        if not isinstance(body, dict):
            raise POLICY.refuse("body is not a JSON object")
        params = {str(key): _scalar(key, value) for key, value in body.items()}
    else:
        if request.body:
            raise POLICY.refuse(f"a {request.method} carries no body")
        params = unique_keys(
            parse_params(request.query, exchange=Exchange.BYBIT), exchange=Exchange.BYBIT
        )
    check_values(params, endpoint, FORMATS, exchange=Exchange.BYBIT, path=request.path)


def _scalar(key: object, value: object) -> str:
    """A body value as the text the policy checks: strings, and integers (isLeverage)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise POLICY.refuse(f"parameter {key!r} must be a string or an integer")


def _terms(request: SigningInput) -> OrderTerms | None:
    """POST /v5/order/create (order_create-order.mdx): ``qty`` is in base units, except a
    spot *market* order whose ``marketUnit`` is not ``baseCoin``: a market Buy's qty is in
    quote units by default (the qty row: "Spot: Market Buy order by value by default")."""
    if request.method != "POST" or request.path != ORDER_CREATE:
        return None
    body = json.loads(request.body)
    params = {str(key): str(value) for key, value in body.items()}
    side = Side.BUY if params["side"] == "Buy" else Side.SELL
    market = params["orderType"] == "Market"
    qty = Decimal(params["qty"])
    unit = params.get("marketUnit")
    in_quote = market and (unit == "quoteCoin" or (unit is None and side is Side.BUY))
    price = params.get("price")
    return OrderTerms(
        symbol=params["symbol"],
        side=side,
        limit=not market,
        client_ids=(params["orderLinkId"],),
        quantity=None if in_quote else qty,
        quote_quantity=qty if in_quote else None,
        price=Decimal(price) if price and not market else None,
    )


POLICY = SigningPolicy(Exchange.BYBIT, SIGNABLE, _check, _terms)


def validate(request: SigningInput) -> None:
    """Raise ``SigningRefusedError`` unless the vault may sign this exact request."""
    POLICY.validate(request)
