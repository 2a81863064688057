"""Rate limits: metrics never leak API keys, and a 429 never turns into a ban."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from marketbot.contracts import Exchange
from marketbot.exchanges.errors import RateLimited
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import Endpoint, HttpSettings
from marketbot.exchanges.retry import RetryPolicy
from marketbot.runtime.clock import ManualClock

from .fakes import make_venue


async def test_per_key_buckets_never_put_the_api_key_in_a_metric() -> None:
    from prometheus_client import REGISTRY

    from marketbot.exchanges.ratelimit import PER_KEY, RateLimiter

    limiter = RateLimiter(Exchange.BYBIT, ManualClock())
    api_key = "CANARYKEY123456789"
    per_key = limiter.bucket((PER_KEY, api_key, "/v5/order/create"), 20, 1.0)
    per_ip = limiter.bucket(("ip",), 600, 5.0)
    await limiter.acquire([(per_key, 1), (per_ip, 1)])
    assert api_key not in per_key.name
    exported = [
        sample.labels.get("bucket", "")
        for metric in REGISTRY.collect()
        if metric.name == "marketbot_exchange_rate_limit_headroom_ratio"
        for sample in metric.samples
    ]
    assert "ip" in exported
    assert not any(api_key in label or label.startswith(PER_KEY) for label in exported)


# ---- 429s never earn a ban (issue 18) ----------------------------------------------

PING = Endpoint("GET", "/api/v3/ping")


def _binance_429(retry_after: int) -> httpx.Response:
    # rest-api.md LIMITS: a 429 carries Retry-After, seconds to wait "to prevent a ban"
    return httpx.Response(
        429,
        content=json.dumps({"code": -1003, "msg": "Too much request weight used"}).encode(),
        headers={"Retry-After": str(retry_after), "X-MBX-USED-WEIGHT-1M": "61"},
    )


async def test_requests_queued_for_a_connection_do_not_follow_a_429() -> None:
    """The ban check comes after the slot: nothing that waited behind the request that got
    the 429 (already past the limiter, queued for the one connection) reaches the exchange
    before its Retry-After has passed."""
    clock = ManualClock()
    arrivals: list[tuple[float, int]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        status = 429 if not arrivals else 200
        arrivals.append((clock.monotonic(), status))
        for _ in range(5):
            await asyncio.sleep(0)  # on the wire: the other requests queue for the slot
        if status == 429:
            return _binance_429(30)
        return httpx.Response(200, content=b"{}", headers={"X-MBX-USED-WEIGHT-1M": "5"})

    venue = create_venue(
        Exchange.BINANCE,
        "http://binance.test",
        clock=clock,
        settings=VenueSettings(
            http=HttpSettings(max_connections=1, retry=RetryPolicy(max_attempts=1))
        ),
        transport=httpx.MockTransport(handler),
    )
    results = await asyncio.gather(
        *(venue.http.call(PING) for _ in range(6)), return_exceptions=True
    )
    # one request reached the exchange; the five queued behind it were held, never sent
    assert arrivals == [(arrivals[0][0], 429)]
    assert all(isinstance(r, RateLimited) for r in results)
    assert sorted(r.retry_after_s for r in results) == [30.0] * 6  # type: ignore[union-attr]
    # after the wait, traffic resumes
    clock.advance(30)
    assert await venue.http.call(PING) == {}
    assert arrivals[1][1] == 200
    await venue.aclose()


async def test_a_429_lowers_the_weight_budget_to_what_the_exchange_accepted() -> None:
    clock = ManualClock()
    venue, fake = make_venue(Exchange.BINANCE, clock=clock)
    used = {"n": 0}

    def responder(request: httpx.Request) -> httpx.Response:
        used["n"] += 1
        if used["n"] > 40:
            return _binance_429(20)
        return httpx.Response(200, content=b"{}", headers={"X-MBX-USED-WEIGHT-1M": str(used["n"])})

    fake.always("/api/v3/ping", responder)
    for _ in range(40):
        await venue.http.send_once(PING, {})
    with pytest.raises(RateLimited) as caught:
        await venue.http.send_once(PING, {})
    assert caught.value.retry_after_s == 20
    weight = venue.http._weight
    assert weight.budget <= 40 * 0.9
    assert venue.http.limiter.hold_remaining() == pytest.approx(20)
    await venue.aclose()


async def test_the_exchanges_own_limits_are_learned_before_the_first_request() -> None:
    clock = ManualClock()
    venue, fake = make_venue(
        Exchange.BINANCE, clock=clock, http=HttpSettings(limits_refresh_s=300.0)
    )
    info = {
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 100,
            },
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 5},
        ],
        "symbols": [],
    }
    fake.always(
        "/api/v3/exchangeInfo",
        lambda r: httpx.Response(200, content=json.dumps(info).encode()),
    )
    fake.always("/api/v3/ping", lambda r: httpx.Response(200, content=b"{}"))
    await venue.http.call(PING)
    assert [r.url.path for r in fake.requests] == ["/api/v3/exchangeInfo", "/api/v3/ping"]
    assert venue.http._weight.limit == 100
    assert venue.http.order_limits == [(5, 10.0)]
    await venue.http.call(PING)
    assert len(fake.calls("/api/v3/exchangeInfo")) == 1  # not again before 300 s
    clock.advance(301)
    await venue.http.call(PING)
    assert len(fake.calls("/api/v3/exchangeInfo")) == 2
    await venue.aclose()


async def test_a_per_key_10006_holds_that_keys_queued_requests_only() -> None:
    """Bybit: X-Bapi-Limit-Status 0 blocks the key's endpoint bucket until
    X-Bapi-Limit-Reset-Timestamp (rate-limit_rate-limit.mdx); a request already past the
    limiter for that key waits, and other traffic is not held."""
    from marketbot.exchanges.ratelimit import PER_KEY

    clock = ManualClock()
    venue, _fake = make_venue(Exchange.BYBIT, clock=clock)
    http = venue.http
    bucket = http._key_bucket("KEY1", "/v5/order/realtime", 50)
    tokens = await http.limiter.acquire([(bucket, 1.0)])
    bucket.block_for(0.8)
    with pytest.raises(RateLimited) as caught:
        http.limiter.check_clear(tokens)
    assert caught.value.retry_after_s == pytest.approx(0.8)
    other = await http.limiter.acquire([(http._ip, 1.0)])
    http.limiter.check_clear(other)  # the IP and other keys are not held
    assert bucket.name.startswith(PER_KEY)
    await venue.aclose()


async def test_a_bybit_429_holds_every_request_for_a_second() -> None:
    """Bybit's 429 "System level frequency protection" names no wait (error.mdx)."""
    from .fakes import respond

    clock = ManualClock()
    venue, fake = make_venue(Exchange.BYBIT, clock=clock)
    fake.queue("/v5/market/time", respond(429, "too many"))
    with pytest.raises(RateLimited):
        await venue.http.send_once(Endpoint("GET", "/v5/market/time"), {})
    assert venue.http.limiter.hold_remaining() == pytest.approx(1.0)
    with pytest.raises(RateLimited):
        venue.http.limiter.check_clear()
    clock.advance(1.0)
    venue.http.limiter.check_clear()
    await venue.aclose()
