"""Signing: the official vectors, an independent signer (ccxt), and the vault's policy."""

from __future__ import annotations

import functools
import hashlib
import json

import ccxt
import pytest

from marketbot.contracts import Exchange
from marketbot.exchanges.binance import signing as binance_signing
from marketbot.exchanges.bybit import signing as bybit_signing
from marketbot.exchanges.errors import SigningRefusedError
from marketbot.exchanges.signer import LocalSigner, SigningInput
from marketbot.exchanges.signing import sign_request, signing_policy

# rest-api.md "SIGNED Endpoint Examples for POST /api/v3/order" (HMAC keys).
BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
BINANCE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
ASCII_PAYLOAD = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
NON_ASCII_PAYLOAD = (
    "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT"
    "&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)

# The value checks hold whether the vault hands a signature out or sends the request itself
# (``sent_by_vault``); a signer sending its own request may sign either.
bybit_validate = functools.partial(bybit_signing.POLICY.validate, sending=True)
binance_validate = functools.partial(binance_signing.POLICY.validate, sending=True)


def binance_input(query: str, body: str = "", ts: int = 1499827319559) -> SigningInput:
    return SigningInput(Exchange.BINANCE, "POST", "/api/v3/order", query, body, ts, 5000)


def bybit_input(method: str, path: str, query: str = "", body: str = "") -> SigningInput:
    return SigningInput(Exchange.BYBIT, method, path, query, body, 1658384314791, 5000)


def ccxt_hmac(secret: str, payload: str) -> str:
    return str(ccxt.Exchange.hmac(payload.encode(), secret.encode(), hashlib.sha256, "hex"))


def test_binance_official_vector_ascii() -> None:
    signature = sign_request(
        Exchange.BINANCE, BINANCE_SECRET, BINANCE_KEY, binance_input(ASCII_PAYLOAD)
    )
    assert signature == "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_binance_official_vector_non_ascii() -> None:
    signature = binance_signing.sign(BINANCE_SECRET, BINANCE_KEY, binance_input(NON_ASCII_PAYLOAD))
    assert signature == "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"


def test_binance_signs_query_concatenated_with_body() -> None:
    split = binance_input("symbol=LTCBTC&side=BUY&type=LIMIT", ASCII_PAYLOAD[33:])
    assert split.query + split.body == ASCII_PAYLOAD
    assert binance_signing.sign(BINANCE_SECRET, "", split).startswith("c8db5682")


def test_binance_matches_ccxt_hmac() -> None:
    request = binance_input(ASCII_PAYLOAD)
    assert binance_signing.sign(BINANCE_SECRET, "", request) == ccxt_hmac(
        BINANCE_SECRET, ASCII_PAYLOAD
    )


def test_bybit_pre_sign_strings_follow_the_guide() -> None:
    # guide.mdx "An example for how to generate plain text to encrypt"
    get = bybit_input(
        "GET", "/v5/order/realtime", query="category=option&symbol=BTC-29JUL22-25000-C"
    )
    assert bybit_signing.pre_sign_string("XXXXXXXXXX", get) == (
        "1658384314791XXXXXXXXXX5000category=option&symbol=BTC-29JUL22-25000-C"
    )
    post = SigningInput(
        Exchange.BYBIT,
        "POST",
        "/v5/order/create",
        "",
        '{"category": "option"}',
        1658385579423,
        5000,
    )
    assert bybit_signing.pre_sign_string("XXXXXXXXXX", post) == (
        '1658385579423XXXXXXXXXX5000{"category": "option"}'
    )


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("GET", "/v5/account/wallet-balance", "accountType=UNIFIED", ""),
        ("POST", "/v5/order/create", "", '{"category":"spot","symbol":"BTCUSDT","side":"Buy"}'),
    ],
)
def test_bybit_matches_ccxt_hmac(method: str, path: str, query: str, body: str) -> None:
    secret = "bybit-test-secret"
    request = bybit_input(method, path, query, body)
    expected = ccxt_hmac(secret, f"1658384314791KEY5000{body if method == 'POST' else query}")
    assert sign_request(Exchange.BYBIT, secret, "KEY", request) == expected


# ---- the vault's policy --------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "method", "path"),
    [
        (Exchange.BYBIT, "GET", "/v5/account/wallet-balance"),
        (Exchange.BYBIT, "POST", "/v5/order/create"),
        (Exchange.BYBIT, "POST", "/v5/order/cancel"),
        (Exchange.BYBIT, "GET", "/v5/order/realtime"),
        (Exchange.BYBIT, "GET", "/v5/order/history"),
        (Exchange.BYBIT, "GET", "/realtime"),
        (Exchange.BINANCE, "GET", "/api/v3/account"),
        (Exchange.BINANCE, "POST", "/api/v3/order"),
        (Exchange.BINANCE, "DELETE", "/api/v3/order"),
        (Exchange.BINANCE, "GET", "/api/v3/order"),
        (Exchange.BINANCE, "GET", "/api/v3/allOrders"),
        (Exchange.BINANCE, "POST", "/api/v3/orderList/oco"),
        (Exchange.BINANCE, "DELETE", "/api/v3/orderList"),
        (Exchange.BINANCE, "GET", "/api/v3/orderList"),
        (Exchange.BINANCE, "GET", "/api/v3/openOrderList"),
    ],
)
def test_policy_allows_the_listed_endpoints(exchange: Exchange, method: str, path: str) -> None:
    assert signing_policy(exchange).is_allowed(method, path)


@pytest.mark.parametrize(
    ("exchange", "method", "path"),
    [
        (Exchange.BYBIT, "POST", "/v5/asset/withdraw/create"),
        (Exchange.BYBIT, "POST", "/v5/asset/transfer/inter-transfer"),
        (Exchange.BINANCE, "POST", "/sapi/v1/capital/withdraw/apply"),
        (Exchange.BINANCE, "POST", "/sapi/v1/asset/transfer"),
        (Exchange.BYBIT, "POST", "/v5/order/create/"),
        (Exchange.BYBIT, "POST", "/v5/order//create"),
        (Exchange.BYBIT, "POST", "//v5/order/create"),
        (Exchange.BYBIT, "POST", "/v5/order/create/../../asset/withdraw/create"),
        (Exchange.BYBIT, "POST", "/v5/order%2Fcreate"),
        (Exchange.BYBIT, "POST", "/V5/ORDER/CREATE"),
        (Exchange.BYBIT, "post", "/v5/order/create"),
        (Exchange.BYBIT, "POST", "/v5/order/create?x=1"),
        (Exchange.BYBIT, "POST", "/v5/order/create#frag"),
        (Exchange.BYBIT, "POST", "/v5/order/create\x00"),
        (Exchange.BYBIT, "POST", " /v5/order/create"),
        (Exchange.BYBIT, "GET", "/v5/order/create"),
        (Exchange.BINANCE, "POST", "/api/v3/order;jsessionid=1"),
        (Exchange.BINANCE, "POST", "/api/v3/order/../../../sapi/v1/capital/withdraw/apply"),
        (Exchange.BINANCE, "POST", "/api/v3/Order"),
        (Exchange.BINANCE, "POST", "/api/v3/order%00"),
        (Exchange.BINANCE, "PUT", "/api/v3/order"),
    ],
)
def test_policy_refuses_everything_else(exchange: Exchange, method: str, path: str) -> None:
    policy = signing_policy(exchange)
    assert not policy.is_allowed(method, path)
    request = SigningInput(exchange, method, path, "timestamp=1", "", 1, 5000)
    with pytest.raises(SigningRefusedError):
        policy.validate(request)


def test_bybit_policy_refuses_withdrawal_parameters_on_an_allowed_path() -> None:
    """The path is not signed, so a withdrawal body under /v5/order/create must be refused."""
    body = json.dumps({"coin": "USDT", "chain": "TRX", "address": "T...", "amount": "100"})
    with pytest.raises(SigningRefusedError, match="not allowed"):
        bybit_validate(bybit_input("POST", "/v5/order/create", body=body))


def test_bybit_policy_refuses_duplicate_keys_and_query_on_post() -> None:
    with pytest.raises(SigningRefusedError):
        bybit_validate(bybit_input("POST", "/v5/order/create", body='{"symbol":"A","symbol":"B"}'))
    with pytest.raises(SigningRefusedError):
        bybit_validate(
            bybit_input("POST", "/v5/order/create", query="symbol=A", body='{"symbol":"A"}')
        )
    with pytest.raises(SigningRefusedError):
        bybit_validate(bybit_input("GET", "/v5/order/realtime", body='{"x":1}'))


COMPLETE_ORDER = "newClientOrderId=mb-1&" + ASCII_PAYLOAD


def test_binance_policy_requires_the_audited_timestamp() -> None:
    ok = binance_input(COMPLETE_ORDER)
    binance_validate(ok)
    with pytest.raises(SigningRefusedError, match="timestamp"):
        binance_validate(binance_input(COMPLETE_ORDER, ts=1499827319560))
    missing = COMPLETE_ORDER.replace("&timestamp=1499827319559", "")
    with pytest.raises(SigningRefusedError, match="timestamp"):
        binance_validate(binance_input(missing))
    doubled = COMPLETE_ORDER + "&timestamp=1499827319559"
    with pytest.raises(SigningRefusedError, match="twice"):
        binance_validate(binance_input(doubled))


def test_binance_policy_refuses_withdrawal_parameters_and_smuggled_signatures() -> None:
    withdraw = "coin=USDT&address=abc&amount=100&recvWindow=5000&timestamp=1499827319559"
    with pytest.raises(SigningRefusedError, match="not allowed"):
        binance_validate(binance_input(withdraw))
    with pytest.raises(SigningRefusedError):
        binance_validate(binance_input(ASCII_PAYLOAD + "&signature=00"))
    with pytest.raises(SigningRefusedError, match="malformed"):
        binance_validate(binance_input("symbol=LTC BTC&" + ASCII_PAYLOAD))


def test_policy_refuses_a_request_for_the_other_exchange() -> None:
    with pytest.raises(SigningRefusedError):
        signing_policy(Exchange.BYBIT).validate(binance_input(ASCII_PAYLOAD))


async def test_local_signer_enforces_the_policy() -> None:
    vector = await LocalSigner(BINANCE_KEY, BINANCE_SECRET, enforce_policy=False).sign(
        binance_input(ASCII_PAYLOAD)
    )
    assert vector.signature.startswith("c8db5682")
    signer = LocalSigner(BINANCE_KEY, BINANCE_SECRET)
    signature = await signer.sign(binance_input(COMPLETE_ORDER))
    assert signature.api_key == BINANCE_KEY
    # the official vector has no client order id: an incomplete order is not signed
    with pytest.raises(SigningRefusedError, match="newClientOrderId"):
        await signer.sign(binance_input(ASCII_PAYLOAD))
    with pytest.raises(SigningRefusedError):
        await signer.sign(
            SigningInput(
                Exchange.BINANCE,
                "POST",
                "/sapi/v1/capital/withdraw/apply",
                ASCII_PAYLOAD,
                "",
                1499827319559,
                5000,
            )
        )
    assert BINANCE_SECRET not in repr(signer)


# ---- values, not only names (issue 14) --------------------------------------------------

BYBIT_ORDER = {
    "category": "spot",
    "symbol": "BTCUSDT",
    "side": "Buy",
    "orderType": "Market",
    "qty": "10",
    "marketUnit": "quoteCoin",
    "orderLinkId": "mb-1",
}


def bybit_order(**changes: object) -> SigningInput:
    body = {**BYBIT_ORDER, **changes}
    body = {k: v for k, v in body.items() if v is not None}
    return bybit_input("POST", "/v5/order/create", body=json.dumps(body))


def test_bybit_signs_a_complete_spot_order() -> None:
    bybit_validate(bybit_order())
    bybit_validate(bybit_order(isLeverage=0))


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"category": "linear"}, "category='linear' is not allowed"),
        ({"category": "option"}, "not allowed"),
        ({"isLeverage": 1}, "isLeverage='1' is not allowed"),
        ({"isLeverage": "1"}, "not allowed"),
        ({"side": "buy"}, "side='buy' is not allowed"),
        ({"orderType": "Stop"}, "not allowed"),
        ({"qty": ""}, "'qty' is empty"),
        ({"qty": "1e9"}, "not a valid qty"),
        ({"symbol": "BTC/USDT"}, "not a valid symbol"),
        ({"qty": None}, "must carry \\['qty'\\]"),
        ({"orderLinkId": None}, "orderLinkId"),
        ({"qty": 1.5}, "string or an integer"),
        ({"isLeverage": True}, "string or an integer"),
    ],
)
def test_bybit_checks_values_not_only_names(changes: dict[str, object], rule: str) -> None:
    with pytest.raises(SigningRefusedError, match=rule):
        bybit_validate(bybit_order(**changes))


def test_bybit_refuses_an_empty_body_and_empty_queries() -> None:
    with pytest.raises(SigningRefusedError, match="must carry"):
        bybit_validate(bybit_input("POST", "/v5/order/create", body="{}"))
    with pytest.raises(SigningRefusedError, match="must carry"):
        bybit_validate(bybit_input("GET", "/v5/order/realtime", query=""))
    with pytest.raises(SigningRefusedError, match="category='linear'"):
        bybit_validate(bybit_input("GET", "/v5/order/realtime", query="category=linear"))


@pytest.mark.parametrize(
    ("exchange", "method", "path", "query"),
    [
        (Exchange.BYBIT, "GET", "/v5/user/query-api", ""),
        (Exchange.BINANCE, "GET", "/sapi/v1/account/apiRestrictions", "timestamp=1"),
    ],
)
async def test_the_permission_endpoints_are_signed_for_the_vault_only(
    exchange: Exchange, method: str, path: str, query: str
) -> None:
    request = SigningInput(exchange, method, path, query, "", 1, 5000)
    policy = signing_policy(exchange)
    assert not policy.is_allowed(method, path)
    assert (method, path) not in policy.endpoints
    with pytest.raises(SigningRefusedError, match="not a signable endpoint"):
        policy.validate(request)
    policy.validate(request, internal=True)
    await LocalSigner("KEY", "secret", internal=True).sign(request)
    with pytest.raises(SigningRefusedError):
        await LocalSigner("KEY", "secret").sign(request)


def test_binance_checks_values_and_binds_each_endpoint() -> None:
    def order(query: str) -> SigningInput:
        return binance_input(query + "&timestamp=1499827319559")

    binance_validate(
        order("symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=10&newClientOrderId=mb-1")
    )
    for bad, why in [
        ("symbol=BTCUSDT&side=BUY&type=MARKET&newClientOrderId=mb-1", "one of"),
        ("symbol=BTCUSDT&side=BUY&type=MARGIN&quantity=1&newClientOrderId=mb-1", "type="),
        ("symbol=BTCUSDT&side=BORROW&type=MARKET&quantity=1&newClientOrderId=mb-1", "side="),
        ("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=&newClientOrderId=mb-1", "empty"),
        ("side=BUY&type=MARKET&quantity=1&newClientOrderId=mb-1", "symbol"),
    ]:
        with pytest.raises(SigningRefusedError, match=why):
            binance_validate(order(bad))
    account = SigningInput(Exchange.BINANCE, "GET", "/api/v3/account", "timestamp=7", "", 7, 5000)
    # A bare timestamp would also authenticate POST /sapi/v1/account/enableFastWithdrawSwitch
    with pytest.raises(SigningRefusedError, match="omitZeroBalances"):
        binance_validate(account)
    binance_validate(
        SigningInput(
            Exchange.BINANCE,
            "GET",
            "/api/v3/account",
            "omitZeroBalances=false&timestamp=7",
            "",
            7,
            5000,
        )
    )


@pytest.mark.parametrize("exchange", list(Exchange))
def test_a_vault_sent_endpoint_is_never_signed_to_hand_out(exchange: Exchange) -> None:
    """Entries no parameter binds are signed only by a signer that sends them itself."""
    policy = signing_policy(exchange)
    sent = policy.endpoints - policy.handed_out
    assert sent, "every venue has endpoints only the vault sends"
    for method, path in sent:
        request = SigningInput(exchange, method, path, "", "", 1, 5000)
        with pytest.raises(SigningRefusedError, match="sent by the vault itself"):
            policy.validate(request)
