"""Each error class, from the documented payloads, through the real client stack."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from marketbot.contracts import Exchange, RejectReason, Side
from marketbot.exchanges.binance import errors as binance_errors
from marketbot.exchanges.bybit import errors as bybit_errors
from marketbot.exchanges.errors import (
    ClockSkewError,
    DuplicateClientOrderIdError,
    IpBannedError,
    OrderNotFoundError,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    Retryable,
)
from marketbot.exchanges.signer import LocalSigner
from marketbot.exchanges.venue import OrderRequest, OrderType

from .fakes import bybit_error, bybit_ok, fail_with, make_venue, respond

SIGNER = LocalSigner("key", "secret")

# Documented payloads (reference/bybit-v5/error.mdx, reference/binance-spot/errors.md)
BYBIT_CASES = [
    (10001, "Request parameter error", Rejected, RejectReason.EXCHANGE),
    (
        10003,
        "API key is invalid. Check whether the key and domain are matched, there are 4 env: "
        "mainnet, testnet, mainnet-demo, testnet-demo",
        Rejected,
        RejectReason.INVALID_KEY,
    ),
    (
        10004,
        "Error sign, please check your signature generation algorithm.",
        Rejected,
        RejectReason.INVALID_KEY,
    ),
    (
        10005,
        "Permission denied, please check your API key permissions.",
        Rejected,
        RejectReason.PERMISSION,
    ),
    (
        10010,
        "Unmatched IP, please check your API key's bound IP addresses.",
        Rejected,
        RejectReason.PERMISSION,
    ),
    (170131, "Balance insufficient ", Rejected, RejectReason.INSUFFICIENT_BALANCE),
    (110007, "Available balance is insufficient ", Rejected, RejectReason.INSUFFICIENT_BALANCE),
    (170136, "Order quantity lower than the minimum.", Rejected, RejectReason.FILTER),
    (170137, "Order volume decimal too long", Rejected, RejectReason.FILTER),
    (170140, "Order value exceeded lower limit", Rejected, RejectReason.FILTER),
    (170121, "Invalid symbol.", Rejected, RejectReason.EXCHANGE),
    (170213, "Order does not exist.", OrderNotFoundError, RejectReason.EXCHANGE),
    (110001, "Order does not exist", OrderNotFoundError, RejectReason.EXCHANGE),
    (170141, "Duplicate clientOrderId", DuplicateClientOrderIdError, RejectReason.EXCHANGE),
    (110072, "OrderLinkedID is duplicate", DuplicateClientOrderIdError, RejectReason.EXCHANGE),
    (10006, "Too many visits. Exceeded the API Rate Limit.", RateLimited, None),
    (10002, "The request time exceeds the time window range.", ClockSkewError, None),
    (10016, "Server error.", OutcomeUnknown, None),
    (170146, "Order creation timeout", OutcomeUnknown, None),
    (
        429,
        "The trading service is experiencing a high server load. "
        "Please retry if you encounter this issue.",
        Retryable,
        None,
    ),
]

BINANCE_CASES = [
    (
        -2010,
        "Account has insufficient balance for requested action.",
        Rejected,
        RejectReason.INSUFFICIENT_BALANCE,
    ),
    (-2010, "Duplicate order sent.", DuplicateClientOrderIdError, RejectReason.EXCHANGE),
    (-2010, "Market is closed.", Rejected, RejectReason.EXCHANGE),
    (-2010, "This symbol is not permitted for this account.", Rejected, RejectReason.PERMISSION),
    (-2010, "NEW_ORDER_REJECTED", Rejected, RejectReason.EXCHANGE),
    (-1013, "Filter failure: LOT_SIZE", Rejected, RejectReason.FILTER),
    (-1013, "Filter failure: NOTIONAL", Rejected, RejectReason.FILTER),
    (-1013, "Filter failure: MARKET_LOT_SIZE", Rejected, RejectReason.FILTER),
    (-1111, "Parameter 'quantity' has too much precision.", Rejected, RejectReason.FILTER),
    (-1121, "Invalid symbol.", Rejected, RejectReason.EXCHANGE),
    (-1022, "Signature for this request is not valid.", Rejected, RejectReason.INVALID_KEY),
    (-2014, "API-key format invalid.", Rejected, RejectReason.INVALID_KEY),
    (-2015, "Invalid API-key, IP, or permissions for action.", Rejected, RejectReason.INVALID_KEY),
    (-2013, "Order does not exist.", OrderNotFoundError, RejectReason.EXCHANGE),
    (-2011, "Unknown order sent.", OrderNotFoundError, RejectReason.EXCHANGE),
    (-1003, "Too many requests queued.", RateLimited, None),
    (-1015, "Too many new orders.", RateLimited, None),
    (-1021, "Timestamp for this request is outside of the recvWindow.", ClockSkewError, None),
    (
        -1007,
        "Timeout waiting for response from backend server. "
        "Send status unknown; execution status unknown.",
        OutcomeUnknown,
        None,
    ),
    (
        -1006,
        "An unexpected response was received from the message bus. Execution status unknown.",
        OutcomeUnknown,
        None,
    ),
    (
        -1008,
        "Server is currently overloaded with other requests. Please try again in a few minutes.",
        Retryable,
        None,
    ),
]


@pytest.mark.parametrize(("code", "message", "kind", "reason"), BYBIT_CASES)
def test_bybit_codes(code: int, message: str, kind: type, reason: RejectReason | None) -> None:
    error = bybit_errors.error_for(code, message, http_status=200)
    assert type(error) is kind
    assert error.code == code
    if reason is not None:
        assert isinstance(error, Rejected)
        assert error.reason is reason


@pytest.mark.parametrize(("code", "message", "kind", "reason"), BINANCE_CASES)
def test_binance_codes(code: int, message: str, kind: type, reason: RejectReason | None) -> None:
    error = binance_errors.error_for(code, message, http_status=400)
    assert type(error) is kind
    if reason is not None:
        assert isinstance(error, Rejected)
        assert error.reason is reason


def test_binance_messages_are_matched_whole_never_by_substring() -> None:
    near = binance_errors.error_for(
        -2010, "Account has insufficient balance for requested action. (not exact)", http_status=400
    )
    assert isinstance(near, Rejected)
    assert near.reason is RejectReason.EXCHANGE
    filter_like = binance_errors.error_for(-1013, "xFilter failure: LOT_SIZE", http_status=400)
    assert isinstance(filter_like, Rejected)
    assert filter_like.reason is RejectReason.EXCHANGE


# ---- through the client ------------------------------------------------------------


async def test_bybit_rejection_is_final_and_not_retried() -> None:
    venue, fake = make_venue(Exchange.BYBIT)
    fake.queue(
        "/v5/account/wallet-balance",
        respond(
            200, bybit_error(10005, "Permission denied, please check your API key permissions.")
        ),
    )
    with pytest.raises(Rejected) as caught:
        await venue.balances(SIGNER)
    assert caught.value.reason is RejectReason.PERMISSION
    assert len(fake.calls("/v5/account/wallet-balance")) == 1


async def test_bybit_10002_remeasures_the_clock_and_retries_once() -> None:
    venue, fake = make_venue(Exchange.BYBIT, server_offset_ms=0)
    fake.always(
        "/v5/account/info",
        respond(200, bybit_ok({"marginMode": "REGULAR_MARGIN", "unifiedMarginStatus": 4})),
    )
    await venue.account_info(SIGNER)
    assert venue.clock_offset_ms == 0
    fake.server_offset_ms = 7000  # the exchange's clock jumps
    fake.queue(
        "/v5/account/info",
        respond(200, bybit_error(10002, "The request time exceeds the time window range.")),
    )
    info = await venue.account_info(SIGNER)
    assert info.margin_mode == "REGULAR_MARGIN"
    assert venue.clock_offset_ms == 7000
    assert len(fake.calls("/v5/market/time")) == 2
    sent = fake.calls("/v5/account/info")[-1]
    assert int(sent.headers["X-BAPI-TIMESTAMP"]) >= fake.server_ms() - 1000


async def test_bybit_clock_skew_twice_is_raised() -> None:
    venue, fake = make_venue(Exchange.BYBIT)
    skew = respond(200, bybit_error(10002, "The request time exceeds the time window range."))
    fake.queue("/v5/account/info", skew, skew, skew)
    with pytest.raises(ClockSkewError):
        await venue.account_info(SIGNER)
    assert len(fake.calls("/v5/account/info")) == 2


async def test_binance_minus_1021_remeasures_the_clock_and_retries_once() -> None:
    venue, fake = make_venue(Exchange.BINANCE)
    account = {
        "canTrade": True,
        "accountType": "SPOT",
        "balances": [{"asset": "BTC", "free": "4723846.89208129", "locked": "0.00000000"}],
    }
    fake.always("/api/v3/account", respond(200, account))
    await venue.balances(SIGNER)
    fake.server_offset_ms = -9000
    fake.queue(
        "/api/v3/account",
        respond(
            400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
        ),
    )
    balances = await venue.balances(SIGNER)
    assert balances[0].free == Decimal("4723846.89208129")
    assert venue.clock_offset_ms == -9000
    last = fake.calls("/api/v3/account")[-1]
    assert f"timestamp={fake.server_ms() - 200}" in str(last.url)


async def test_reads_retry_5xx_and_transport_errors_with_backoff() -> None:
    venue, fake = make_venue(Exchange.BINANCE)
    account = {"canTrade": True, "accountType": "SPOT", "balances": []}
    fake.queue(
        "/api/v3/account",
        respond(503, "Service Unavailable"),
        fail_with(httpx.ReadTimeout),
        respond(200, account),
    )
    assert await venue.balances(SIGNER) == []
    assert len(fake.calls("/api/v3/account")) == 3


async def test_a_write_with_5xx_is_an_unknown_outcome_never_resent_blindly() -> None:
    venue, fake = make_venue(Exchange.BINANCE)
    from .test_venues import BINANCE_EXCHANGE_INFO

    fake.always("/api/v3/exchangeInfo", respond(200, BINANCE_EXCHANGE_INFO))
    not_found = respond(400, {"code": -2013, "msg": "Order does not exist."})
    server_error = respond(500, "Internal Server Error")
    # every POST fails with 500; the reconciling query keeps saying "does not exist"
    fake.always("/api/v3/order", lambda r: server_error(r) if r.method == "POST" else not_found(r))
    order = OrderRequest(
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal("0.01"),
        client_order_id="mb-1",
    )
    with pytest.raises(OutcomeUnknown):
        await venue.place_order(SIGNER, order)
    posts = [r for r in fake.calls("/api/v3/order") if r.method == "POST"]
    # The venue submits once; only the engine resends, after a committed attempt mark and a
    # lookup by id (libs/execution placement.py, "one resend policy").
    assert len(posts) == 1


async def test_bybit_403_stops_all_traffic_until_the_ban_ends() -> None:
    venue, fake = make_venue(Exchange.BYBIT)
    fake.queue("/v5/market/tickers", respond(403, "access too frequent"))
    with pytest.raises(IpBannedError) as caught:
        await venue.ticker("BTCUSDT")
    assert caught.value.retry_after_s == pytest.approx(600)
    before = len(fake.requests)
    with pytest.raises(IpBannedError):
        await venue.account_info(SIGNER)
    assert len(fake.requests) == before
    venue.clock.advance(601)
    fake.always("/v5/account/info", respond(200, bybit_ok({"marginMode": "REGULAR_MARGIN"})))
    assert (await venue.account_info(SIGNER)).margin_mode == "REGULAR_MARGIN"


async def test_binance_429_obeys_retry_after() -> None:
    venue, fake = make_venue(Exchange.BINANCE)
    fake.queue(
        "/api/v3/ticker/24hr",
        respond(429, {"code": -1003, "msg": "Too many requests queued."}, {"Retry-After": "3"}),
    )
    ticker = {
        "symbol": "BNBBTC",
        "lastPrice": "4.00000200",
        "bidPrice": "4.00000000",
        "askPrice": "4.00000200",
        "priceChangePercent": "-95.960",
    }
    fake.always("/api/v3/ticker/24hr", respond(200, ticker))
    started = venue.clock.monotonic()
    result = await venue.ticker("BNBBTC")
    assert result.last_price == Decimal("4.00000200")
    assert venue.clock.monotonic() - started >= 3.0


async def test_unreachable_exchange_is_retryable_not_unknown() -> None:
    venue, fake = make_venue(Exchange.BYBIT)
    fake.always("/v5/account/info", fail_with(httpx.ConnectError))
    with pytest.raises(Retryable):
        await venue.account_info(SIGNER)
