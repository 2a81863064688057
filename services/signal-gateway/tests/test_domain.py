"""Pure domain: both alert forms, canonical identity, tokens, the allow-list, limits, cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from marketbot.contracts import Exchange, SignalAction
from marketbot.gateway.domain.alerts import (
    canonical,
    check_fresh,
    read_body,
    signal_id_for,
    validate_alert,
)
from marketbot.gateway.domain.auth import bearer, hash_token, new_token, token_matches
from marketbot.gateway.domain.errors import (
    InvalidFieldError,
    MalformedError,
    UnsupportedMediaError,
)
from marketbot.gateway.domain.network import TRADINGVIEW_IPS, IpPolicy
from marketbot.gateway.domain.push import LEDGER, ORDERS, Cursor, PushItem, Ring
from marketbot.gateway.domain.ratelimit import RateLimiter

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)


def parse(body: str, content_type: str | None = "application/json"):  # type: ignore[no-untyped-def]
    return validate_alert(read_body(body.encode(), content_type))


def test_json_template() -> None:
    alert = parse(
        '{"symbol": "BYBIT:BTCUSDT.P", "action": "BUY", "price": 95000.5, '
        '"time": "2026-11-24T11:59:58Z", "strategy": "ema", "sl": "2", "tp": 4, '
        '"exchange": "Binance"}'
    )
    assert alert.symbol == "BTCUSDT"
    assert alert.action is SignalAction.BUY
    assert alert.price == Decimal("95000.5")
    assert alert.alert_time == datetime(2026, 11, 24, 11, 59, 58, tzinfo=UTC)
    assert alert.stop_loss_percent == Decimal(2)
    assert alert.take_profit_percent == Decimal(4)
    assert alert.exchange is Exchange.BINANCE


def test_plain_text_form() -> None:
    alert = parse("BUY BTCUSDT @ 95000", "text/plain")
    assert (alert.action, alert.symbol, alert.price) == (
        SignalAction.BUY,
        "BTCUSDT",
        Decimal(95000),
    )
    alert = parse("close ethusdt@3500.5 sl=1.5 tp=3 exchange=bybit", "text/plain; charset=utf-8")
    assert alert.action is SignalAction.CLOSE
    assert alert.price == Decimal("3500.5")
    assert alert.stop_loss_percent == Decimal("1.5")
    assert alert.exchange is Exchange.BYBIT


def test_same_alert_in_any_spelling_has_one_identity() -> None:
    a = parse(
        '{"symbol": "BTCUSDT", "action": "buy", "price": "95000", "time": "2026-11-24T12:00:00Z"}'
    )
    b = parse(
        '{"time":"2026-11-24T12:00:00+00:00","price":95000.0,"action":"BUY","ticker":"btcusdt"}'
    )
    c = parse("BUY BTCUSDT @ 95000 time=2026-11-24T12:00:00Z", "text/plain")
    ids = {signal_id_for("tv", canonical(x, NOW, WINDOW)) for x in (a, b, c)}
    assert len(ids) == 1
    assert signal_id_for("other", canonical(a, NOW, WINDOW)) not in ids


def test_untimed_alerts_are_the_same_within_the_window_only() -> None:
    alert = parse("BUY BTCUSDT @ 95000", "text/plain")
    first = canonical(alert, NOW, WINDOW)
    assert canonical(alert, NOW + timedelta(seconds=30), WINDOW) == first
    assert canonical(alert, NOW + timedelta(days=1), WINDOW) != first


@pytest.mark.parametrize(
    ("body", "content_type", "error", "field"),
    [
        ("", "application/json", MalformedError, "body"),
        ("{not json", "application/json", MalformedError, "body"),
        ("[1, 2]", "application/json", MalformedError, "body"),
        ("BUY", "text/plain", MalformedError, "body"),
        ('{"symbol": "BTCUSDT"}', "application/json", InvalidFieldError, "action"),
        ('{"action": "buy"}', "application/json", InvalidFieldError, "symbol"),
        ('{"symbol": "BTC/USDT", "action": "buy"}', None, InvalidFieldError, "symbol"),
        ('{"symbol": "BTCUSDT", "action": "hold"}', None, InvalidFieldError, "action"),
        ('{"symbol": "BTCUSDT", "action": "buy", "price": "-1"}', None, InvalidFieldError, "price"),
        (
            '{"symbol": "BTCUSDT", "action": "buy", "price": "abc"}',
            None,
            InvalidFieldError,
            "price",
        ),
        ('{"symbol": "BTCUSDT", "action": "buy", "sl": 101}', None, InvalidFieldError, "sl"),
        (
            '{"symbol": "BTCUSDT", "action": "buy", "time": "yesterday"}',
            None,
            InvalidFieldError,
            "time",
        ),
        (
            '{"symbol": "BTCUSDT", "action": "buy", "time": "2026-11-24T12:00:00"}',
            None,
            InvalidFieldError,
            "time",
        ),
        (
            '{"symbol": "BTCUSDT", "action": "buy", "exchange": "kraken"}',
            None,
            InvalidFieldError,
            "exchange",
        ),
        ('{"symbol": "BTCUSDT", "action": "buy", "qty": 1}', None, InvalidFieldError, "qty"),
        (
            '{"symbol": "BTCUSDT", "ticker": "ETHUSDT", "action": "buy"}',
            None,
            InvalidFieldError,
            "symbol",
        ),
        ('{"symbol": "BTCUSDT", "action": "buy", "price": NaN}', None, MalformedError, "body"),
        ("BUY BTCUSDT @ 95000 leverage=10", "text/plain", InvalidFieldError, "body"),
        ("BUY BTCUSDT", "application/xml", UnsupportedMediaError, "content-type"),
        ("BUY BTCUSDT", "text/plain; charset=latin-1", UnsupportedMediaError, "content-type"),
    ],
)
def test_every_rule_names_its_field(
    body: str, content_type: str | None, error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as raised:
        parse(body, content_type)
    assert raised.value.field == field  # type: ignore[attr-defined]
    assert raised.value.message  # type: ignore[attr-defined]


def test_staleness_and_future_alerts() -> None:
    alert = parse('{"symbol": "BTCUSDT", "action": "buy", "time": "2026-11-24T11:55:00Z"}')
    with pytest.raises(InvalidFieldError) as stale:
        check_fresh(alert, NOW, timedelta(seconds=120), timedelta(seconds=30))
    assert stale.value.code == "stale"
    check_fresh(alert, NOW, timedelta(minutes=10), timedelta(seconds=30))
    future = parse('{"symbol": "BTCUSDT", "action": "buy", "time": "2026-11-24T12:05:00Z"}')
    with pytest.raises(InvalidFieldError) as ahead:
        check_fresh(future, NOW, timedelta(seconds=120), timedelta(seconds=30))
    assert ahead.value.code == "future"


def test_tokens_are_hashed_and_compared() -> None:
    token = new_token("mbs")
    stored = hash_token(token)
    assert token not in stored
    assert token_matches(token, stored)
    assert not token_matches(token + "x", stored)
    assert not token_matches(None, stored)
    assert not token_matches(token, None)
    assert bearer("Bearer abc") == "abc"
    assert bearer("Basic abc") is None


def test_allow_list_without_trusted_proxies_ignores_forwarded_for() -> None:
    policy = IpPolicy.build(True, TRADINGVIEW_IPS, ())
    assert policy.permits(policy.client_address("52.89.214.238", None))
    forged = policy.client_address("203.0.113.9", "52.89.214.238")
    assert str(forged) == "203.0.113.9"
    assert not policy.permits(forged)


def test_allow_list_behind_trusted_proxies() -> None:
    policy = IpPolicy.build(True, TRADINGVIEW_IPS, ("10.0.0.0/8",))
    # TradingView -> load balancer 10.0.0.5 -> ingress 10.0.0.7 -> gateway
    address = policy.client_address("10.0.0.7", "52.32.178.7, 10.0.0.5")
    assert str(address) == "52.32.178.7"
    assert policy.permits(address)
    # a forged left-most hop does not help: the right-most untrusted hop counts
    spoofed = policy.client_address("10.0.0.7", "52.32.178.7, 198.51.100.1")
    assert str(spoofed) == "198.51.100.1"
    assert not policy.permits(spoofed)
    assert IpPolicy.build(False, (), ()).permits(None)


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter(rate_per_second=2, burst=2)
    assert limiter.take("tv", 0.0) == 0.0
    assert limiter.take("tv", 0.0) == 0.0
    assert limiter.take("tv", 0.0) == pytest.approx(0.5)
    assert limiter.take("other", 0.0) == 0.0
    assert limiter.take("tv", 0.5) == 0.0


def item(feed: str, seq: int, position: Cursor) -> PushItem:
    return PushItem(feed, seq, "u1", uuid.uuid4(), "OrderPlaced", {}, position)


def test_cursor_and_ring() -> None:
    assert str(Cursor.parse("12.7")) == "12.7"
    with pytest.raises(InvalidFieldError):
        Cursor.parse("12")
    ring = Ring(size=2, floor=Cursor(10, 5))
    a, b, c = (
        item(ORDERS, 11, Cursor(11, 5)),
        item(LEDGER, 6, Cursor(11, 6)),
        item(ORDERS, 12, Cursor(12, 6)),
    )
    ring.append(a)
    ring.append(b)
    assert ring.after(Cursor(10, 5)) == [a, b]
    assert ring.after(Cursor(11, 5)) == [b]
    ring.append(c)  # a is evicted: the ring is complete only from (11, 5) on
    assert ring.after(Cursor(10, 5)) is None
    assert ring.after(Cursor(11, 5)) == [b, c]
