"""Signing for the private streams: Bybit's WS auth and Binance's WS API subscription.

The vault signs exactly two stream payloads: Bybit ``GET/realtime{expires}`` with a bounded
expiry, and Binance ``userDataStream.subscribe.signature`` over its parameters sorted.
"""

from __future__ import annotations

import hashlib

import ccxt
import pytest

from marketbot.contracts import Exchange
from marketbot.exchanges.binance import constants as binance_constants
from marketbot.exchanges.binance import signing as binance_signing
from marketbot.exchanges.bybit import constants as bybit_constants
from marketbot.exchanges.bybit import signing as bybit_signing
from marketbot.exchanges.errors import SigningRefusedError
from marketbot.exchanges.signer import LocalSigner, Signature, SigningInput
from marketbot.exchanges.signing import sign_request, signing_policy

# web-socket-api.md "SIGNED request example (HMAC)": the example key and secret.
BINANCE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
# The docs' non-ASCII symbol: fullwidth digits one to six (U+FF11..U+FF16).
FULLWIDTH_123456 = "\uff11\uff12\uff13\uff14\uff15\uff16"
SUBSCRIBE = binance_constants.USER_DATA_SUBSCRIBE_SIGNATURE


def ccxt_hmac(secret: str, payload: str) -> str:
    return str(ccxt.Exchange.hmac(payload.encode(), secret.encode(), hashlib.sha256, "hex"))


# ---- Bybit: GET/realtime{expires} ------------------------------------------------------


def test_bybit_ws_auth_signs_get_realtime_expires() -> None:
    # websocket_wss-authentication.mdx: expires = now + 1 s; signature =
    # hex(HMAC_SHA256(secret, f"GET/realtime{expires}")); args [api_key, expires, signature].
    request = bybit_signing.ws_auth_request(1662350399000, expiry_ms=1000)
    assert bybit_signing.ws_auth_expires(request) == 1662350400000
    assert bybit_signing.pre_sign_string("KEY", request) == "GET/realtime1662350400000"
    signing_policy(Exchange.BYBIT).validate(request)
    signature = sign_request(Exchange.BYBIT, "secret", "KEY", request)
    assert signature == ccxt_hmac("secret", "GET/realtime1662350400000")
    message = bybit_signing.ws_auth_message(request, Signature("KEY", signature))
    assert message == {"op": "auth", "args": ["KEY", 1662350400000, signature]}


def test_bybit_ws_auth_expiry_is_bounded() -> None:
    limit = bybit_constants.WS_AUTH_MAX_EXPIRY_MS
    signing_policy(Exchange.BYBIT).validate(bybit_signing.ws_auth_request(1, limit))
    with pytest.raises(SigningRefusedError, match="expires at most"):
        signing_policy(Exchange.BYBIT).validate(bybit_signing.ws_auth_request(1, limit + 1))


@pytest.mark.parametrize(
    ("method", "query", "body"),
    [
        ("GET", "expires=1", ""),
        ("GET", "", '{"expires":1}'),
        ("POST", "", ""),
        ("DELETE", "", ""),
    ],
)
def test_bybit_ws_auth_refuses_anything_but_the_bare_payload(
    method: str, query: str, body: str
) -> None:
    request = SigningInput(Exchange.BYBIT, method, "/realtime", query, body, 1, 1000)
    with pytest.raises(SigningRefusedError):
        signing_policy(Exchange.BYBIT).validate(request)


@pytest.mark.parametrize("path", ["/realtime/", "/v5/private", "realtime", "/realtime?x=1"])
def test_bybit_ws_auth_path_is_exact(path: str) -> None:
    request = SigningInput(Exchange.BYBIT, "GET", path, "", "", 1, 1000)
    with pytest.raises(SigningRefusedError):
        signing_policy(Exchange.BYBIT).validate(request)


async def test_bybit_local_signer_signs_ws_auth_with_its_key() -> None:
    signer = LocalSigner("KEY", "secret")
    request = bybit_signing.ws_auth_request(1000, 2000)
    signature = await signer.sign(request)
    assert signature == Signature("KEY", ccxt_hmac("secret", "GET/realtime3000"))
    with pytest.raises(SigningRefusedError):
        await signer.sign(bybit_signing.ws_auth_request(1000, 60_000))


# ---- Binance: WS API, parameters sorted ------------------------------------------------

ORDER_PLACE_ASCII = {
    "symbol": "BTCUSDT",
    "side": "SELL",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.01000000",
    "price": "52000.00",
    "recvWindow": 100,
    "timestamp": 1645423376532,
    "apiKey": BINANCE_KEY,
    "signature": "------ FILL ME ------",
}
# The non-ASCII example's table and payload say quantity 1.00000000 (its JSON says
# 0.01000000); the documented payload and signature are built from the table.
ORDER_PLACE_NON_ASCII = {
    "symbol": FULLWIDTH_123456,
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "1.00000000",
    "price": "0.10000000",
    "recvWindow": 5000,
    "timestamp": 1645423376532,
    "apiKey": BINANCE_KEY,
    "signature": "------ FILL ME ------",
}


def without_key(params: dict[str, str | int]) -> str:
    """What a client sends the vault: the params but apiKey (and signature), sorted."""
    return binance_signing.ws_api_payload({k: v for k, v in params.items() if k != "apiKey"})


def ws_api_input(payload: str, ts: int = 1645423376532, window: int = 5000) -> SigningInput:
    return SigningInput(Exchange.BINANCE, "GET", SUBSCRIBE, payload, "", ts, window)


def test_binance_ws_api_payload_matches_the_docs_ascii_example() -> None:
    payload = binance_signing.ws_api_payload(ORDER_PLACE_ASCII)
    assert payload == (
        f"apiKey={BINANCE_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL"
        "&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
    )
    # The vault's own signing function: given the params but apiKey, it adds its key and
    # signs the sorted payload (pure; this example is an order.place, which the vault's
    # policy would not sign: see the refusal test below).
    request = ws_api_input(without_key(ORDER_PLACE_ASCII))
    signature = binance_signing.sign(BINANCE_SECRET, BINANCE_KEY, request)
    assert signature == "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"


def test_binance_ws_api_payload_matches_the_docs_non_ascii_example() -> None:
    payload = binance_signing.ws_api_payload(ORDER_PLACE_NON_ASCII)
    assert payload == (
        f"apiKey={BINANCE_KEY}&price=0.10000000&quantity=1.00000000&recvWindow=5000&side=BUY"
        f"&symbol={FULLWIDTH_123456}&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
    )
    request = ws_api_input(without_key(ORDER_PLACE_NON_ASCII))
    assert binance_signing.signature_payload(request, BINANCE_KEY) == payload
    signature = binance_signing.sign(BINANCE_SECRET, BINANCE_KEY, request)
    assert signature == "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"
    assert signature == ccxt_hmac(BINANCE_SECRET, payload)


def test_binance_ws_api_payload_refuses_values_that_are_not_text_or_integers() -> None:
    with pytest.raises(TypeError, match="recvWindow"):
        binance_signing.ws_api_payload({"recvWindow": True})


async def test_binance_vault_signs_the_user_data_subscription() -> None:
    request = binance_signing.user_data_subscribe_request(1747385641636, 5000)
    assert request.query == "recvWindow=5000&timestamp=1747385641636"
    signature = await LocalSigner(BINANCE_KEY, BINANCE_SECRET).sign(request)
    signed = f"apiKey={BINANCE_KEY}&recvWindow=5000&timestamp=1747385641636"
    assert signature.signature == ccxt_hmac(BINANCE_SECRET, signed)
    message = binance_signing.user_data_subscribe_message("sub-1", request, signature)
    # web-socket-api.md "Subscribe to User Data Stream through signature subscription".
    assert message == {
        "id": "sub-1",
        "method": "userDataStream.subscribe.signature",
        "params": {
            "apiKey": BINANCE_KEY,
            "timestamp": 1747385641636,
            "recvWindow": 5000,
            "signature": signature.signature,
        },
    }
    # What the server recomputes from the params it receives is what the vault signed.
    assert binance_signing.ws_api_payload(message["params"]) == signed  # type: ignore[arg-type]


SORTED = "recvWindow=5000&timestamp=1645423376532"


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        # the docs' order.place payloads: parameters this entry does not allow
        (without_key(ORDER_PLACE_ASCII), "not allowed"),
        (without_key(ORDER_PLACE_NON_ASCII), "malformed"),
        # not sorted: what is signed must be what the server rebuilds
        ("timestamp=1645423376532&recvWindow=5000", "sorted"),
        # the key is the vault's to add: a caller cannot choose it
        (f"apiKey={BINANCE_KEY}&" + SORTED, "added by the vault"),
        ("apiKey=&" + SORTED, "added by the vault"),
        # timestamp and window bound to what the vault audits and clock-checks
        ("recvWindow=5000&timestamp=1645423376533", "timestamp"),
        ("recvWindow=60000&timestamp=1645423376532", "recvWindow"),
        ("recvWindow=5000", "timestamp"),
        (SORTED + "&signature=00", "signature"),
        (SORTED + "&timestamp=1645423376532", "twice"),
        ("listenKey=abc&" + SORTED, "not allowed"),
    ],
)
def test_binance_ws_api_policy_refuses(payload: str, match: str) -> None:
    with pytest.raises(SigningRefusedError, match=match):
        signing_policy(Exchange.BINANCE).validate(ws_api_input(payload))


def test_binance_ws_api_policy_accepts_the_sorted_payload_only_in_query() -> None:
    policy = signing_policy(Exchange.BINANCE)
    policy.validate(ws_api_input(SORTED))
    moved = SigningInput(Exchange.BINANCE, "GET", SUBSCRIBE, "", SORTED, 1645423376532, 5000)
    with pytest.raises(SigningRefusedError, match="body must be empty"):
        policy.validate(moved)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SUBSCRIBE),
        ("GET", "userDataStream.subscribe"),
        ("GET", "order.place"),
        ("GET", "account.status"),
        ("GET", "session.logon"),
        ("GET", "/" + SUBSCRIBE),
        ("GET", "/ws-api/v3"),
    ],
)
def test_binance_signs_no_other_ws_api_method(method: str, path: str) -> None:
    request = SigningInput(Exchange.BINANCE, method, path, SORTED, "", 1645423376532, 5000)
    with pytest.raises(SigningRefusedError, match="not a signable endpoint"):
        signing_policy(Exchange.BINANCE).validate(request)


def test_binance_rest_entries_refuse_the_ws_api_payload() -> None:
    """The payload a subscription signature covers cannot be signed for a REST endpoint
    (no REST entry takes ``apiKey``)."""
    policy = signing_policy(Exchange.BINANCE)
    signed = f"apiKey={BINANCE_KEY}&" + SORTED
    for method, path in policy.endpoints:
        if path == SUBSCRIBE:
            continue
        request = SigningInput(Exchange.BINANCE, method, path, signed, "", 1645423376532, 5000)
        with pytest.raises(SigningRefusedError):
            policy.validate(request)
