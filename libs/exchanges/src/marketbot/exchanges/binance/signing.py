"""Binance Spot HMAC-SHA256 signing: pure functions (rest-api.md "SIGNED Endpoint Examples")."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal

from marketbot.contracts import Exchange, Side
from marketbot.exchanges.binance.constants import (
    FORMATS,
    ORDER,
    ORDER_LIST_OCO,
    SIGNABLE,
    USER_DATA_SUBSCRIBE_SIGNATURE,
    WS_API_METHOD,
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

WS_API_PATHS = frozenset({USER_DATA_SUBSCRIBE_SIGNATURE})


def signature_payload(request: SigningInput, api_key: str = "") -> str:
    """REST: the query string concatenated, without separator, with the form body.

    WS API (``path`` a WS API method): the query's parameters plus ``apiKey`` (the key the
    signer holds: the vault binds the signature to its own key, and the caller need not
    know it), sorted by name (``ws_api_payload``).
    """
    if request.path in WS_API_PATHS:
        params: dict[str, str | int] = dict(_split(request.query))
        params["apiKey"] = api_key
        return ws_api_payload(params)
    return request.query + request.body


def _split(text: str) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split("&") if text else []:
        name, _, value = part.partition("=")
        pairs.append((name, value))
    return pairs


def ws_api_payload(params: Mapping[str, str | int]) -> str:
    """The signature payload of a WebSocket API request (web-socket-api.md "SIGNED request
    example (HMAC)", step 1): every parameter except ``signature``, sorted by name, as
    ``name=value`` joined by ``&``; values as text (UTF-8, not percent-encoded).
    """
    pairs: list[str] = []
    for name in sorted(params):
        if name == "signature":
            continue
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise TypeError(f"parameter {name!r} must be a string or an integer")
        pairs.append(f"{name}={value}")
    return "&".join(pairs)


def user_data_subscribe_request(timestamp_ms: int, recv_window_ms: int = 5000) -> SigningInput:
    """What to ask the vault for to subscribe one account on a WS API connection: the
    parameters but ``apiKey``, sorted (the signer adds its key; see ``signature_payload``)."""
    payload = ws_api_payload({"recvWindow": recv_window_ms, "timestamp": timestamp_ms})
    return SigningInput(
        Exchange.BINANCE,
        WS_API_METHOD,
        USER_DATA_SUBSCRIBE_SIGNATURE,
        payload,
        "",
        timestamp_ms,
        recv_window_ms,
    )


def user_data_subscribe_message(
    request_id: str, request: SigningInput, signature: Signature
) -> dict[str, object]:
    """The ``userDataStream.subscribe.signature`` request carrying the vault's signature."""
    return {
        "id": request_id,
        "method": USER_DATA_SUBSCRIBE_SIGNATURE,
        "params": {
            "apiKey": signature.api_key,
            "timestamp": request.timestamp_ms,
            "recvWindow": request.recv_window_ms,
            "signature": signature.signature,
        },
    }


def sign(secret: str, api_key: str, request: SigningInput) -> str:
    """Hex HMAC-SHA256 of the payload (``api_key`` is part of a WS API payload only)."""
    return hmac.new(
        secret.encode(), signature_payload(request, api_key).encode(), hashlib.sha256
    ).hexdigest()


def _check(request: SigningInput, endpoint: EndpointRule) -> None:
    pairs = parse_params(request.query, exchange=Exchange.BINANCE) + parse_params(
        request.body, exchange=Exchange.BINANCE
    )
    params = unique_keys(pairs, exchange=Exchange.BINANCE)
    if "signature" in params:
        raise POLICY.refuse("the payload already carries a signature")
    if request.path in WS_API_PATHS:
        _check_ws_api(request, params)
    check_values(params, endpoint, FORMATS, exchange=Exchange.BINANCE, path=request.path)
    if params.get("timestamp") != str(request.timestamp_ms):
        raise POLICY.refuse("the payload's timestamp must equal timestamp_ms")
    window = params.get("recvWindow")
    if window is not None and window != str(request.recv_window_ms):
        raise POLICY.refuse("the payload's recvWindow must equal recv_window_ms")


def _check_ws_api(request: SigningInput, params: dict[str, str]) -> None:
    """A WS API payload: in the query, sorted by name, without the key (the vault adds it)."""
    if request.body:
        raise POLICY.refuse("a WebSocket API payload is carried in query; body must be empty")
    if request.query != ws_api_payload(params):
        raise POLICY.refuse("a WebSocket API payload must list its parameters sorted by name")
    if "apiKey" in params:
        raise POLICY.refuse("apiKey is added by the vault (the key it signs with), not sent")


def _params(request: SigningInput) -> dict[str, str]:
    pairs = parse_params(request.query, exchange=Exchange.BINANCE) + parse_params(
        request.body, exchange=Exchange.BINANCE
    )
    return unique_keys(pairs, exchange=Exchange.BINANCE)


def _decimal(params: Mapping[str, str], name: str) -> Decimal | None:
    value = params.get(name)
    return Decimal(value) if value else None


def _terms(request: SigningInput) -> OrderTerms | None:
    """POST /api/v3/order (rest-api.md "New order"): symbol, side, type, quantity or
    quoteOrderQty, price; POST /api/v3/orderList/oco: one quantity for both legs, the list
    id and each leg's id (rest-api.md "New Order list - OCO")."""
    if request.method != "POST" or request.path not in (ORDER, ORDER_LIST_OCO):
        return None
    params = _params(request)
    side = Side(params["side"])
    if request.path == ORDER:
        return OrderTerms(
            symbol=params["symbol"],
            side=side,
            limit=params["type"]
            in ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"),
            client_ids=(params["newClientOrderId"],),
            quantity=_decimal(params, "quantity"),
            quote_quantity=_decimal(params, "quoteOrderQty"),
            price=_decimal(params, "price"),
        )
    ids = tuple(
        params[name]
        for name in ("listClientOrderId", "aboveClientOrderId", "belowClientOrderId")
        if name in params
    )
    return OrderTerms(
        symbol=params["symbol"],
        side=side,
        limit=False,
        client_ids=ids,
        quantity=_decimal(params, "quantity"),
    )


POLICY = SigningPolicy(Exchange.BINANCE, SIGNABLE, _check, _terms)


def validate(request: SigningInput) -> None:
    """Raise ``SigningRefusedError`` unless the vault may sign this exact request."""
    POLICY.validate(request)
