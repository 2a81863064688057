"""Rate limiter, circuit breaker, cache and server clock, on a manual clock."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from marketbot.contracts import Exchange
from marketbot.exchanges.breaker import BreakerState, CircuitBreaker, EndpointBreakers
from marketbot.exchanges.cache import TTLCache
from marketbot.exchanges.deadline import within
from marketbot.exchanges.errors import CircuitOpenError, IpBannedError, OutcomeUnknown, RateLimited
from marketbot.exchanges.http import Endpoint, HttpSettings
from marketbot.exchanges.numbers import format_decimal, round_down_to_step
from marketbot.exchanges.ratelimit import (
    PROTECTION_IOU_S,
    PROTECTION_RESERVE,
    RateLimiter,
    WindowBucket,
    background,
    protection_follows,
    protective,
)
from marketbot.exchanges.retry import RetryPolicy
from marketbot.exchanges.timesync import ServerClock
from marketbot.runtime.clock import ManualClock

from .fakes import bybit_ok, fail_with, make_venue, respond


async def test_window_bucket_never_exceeds_the_limit_in_any_window() -> None:
    clock = ManualClock()
    limiter = RateLimiter(Exchange.BYBIT, clock, max_wait_s=60)
    bucket = limiter.bucket(("ip",), 600, 5.0)
    sent: list[float] = []
    for _ in range(1000):
        await limiter.acquire([(bucket, 1.0)])
        sent.append(clock.monotonic())
    # slide a 5 s window over every send time: never more than 90 % of 600
    for i, start in enumerate(sent):
        in_window = sum(1 for t in sent[i:] if t < start + 5.0)
        assert in_window <= 540
    assert sent[-1] - sent[0] >= 5.0


async def test_observed_usage_from_headers_slows_down_before_the_limit() -> None:
    clock = ManualClock()
    bucket = WindowBucket("weight", 6000, 60.0, clock)
    bucket.observe_used(5390)  # another process behind the same IP used this much
    assert bucket.delay_for(10) == 0
    bucket.spend(10)
    assert bucket.delay_for(1) > 0
    assert bucket.headroom() == pytest.approx(1 - 5400 / 6000)


async def test_waiting_longer_than_allowed_raises_rate_limited() -> None:
    clock = ManualClock()
    limiter = RateLimiter(Exchange.BINANCE, clock, max_wait_s=1.0)
    bucket = limiter.bucket(("ip", "weight"), 10, 60.0, safety=1.0)
    await limiter.acquire([(bucket, 10.0)])
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire([(bucket, 1.0)])
    assert caught.value.retry_after_s == pytest.approx(60.0)


async def test_ban_stops_acquiring_until_it_ends() -> None:
    clock = ManualClock()
    limiter = RateLimiter(Exchange.BINANCE, clock)
    bucket = limiter.bucket(("ip",), 100, 60.0)
    limiter.ban(120)
    with pytest.raises(IpBannedError):
        await limiter.acquire([(bucket, 1.0)])
    clock.advance(120)
    await limiter.acquire([(bucket, 1.0)])


def test_breaker_opens_half_opens_and_recovers() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(Exchange.BYBIT, clock, failure_threshold=3, reset_timeout_s=10)
    for _ in range(3):
        breaker.before_request()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        breaker.before_request()
    clock.advance(10)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_request()  # the probe
    with pytest.raises(CircuitOpenError):
        breaker.before_request()  # only one probe at a time
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.advance(10)
    breaker.before_request()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_request()


def test_a_partial_fault_does_not_open_the_breaker_a_dead_endpoint_does() -> None:
    # 30 % of one burst fails, and the failures all come back together (one read timeout
    # after the burst): a run of consecutive failures, but not a failing endpoint.
    clock = ManualClock()
    breaker = CircuitBreaker(Exchange.BINANCE, clock, failure_threshold=5, window_s=30)
    for _ in range(45):
        breaker.record_success()
    clock.advance(2)
    for _ in range(19):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_request()
    # the endpoint goes down: every answer fails, and the share soon passes one half
    for _ in range(60):
        breaker.record_failure()
        if breaker.state is BreakerState.OPEN:
            break
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError) as opened:
        breaker.before_request()
    assert 0 < opened.value.retry_after_s <= 10
    # outcomes older than the window are forgotten
    clock.advance(10)
    breaker.before_request()  # the probe
    breaker.record_success()
    clock.advance(31)
    for _ in range(5):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_breakers_are_per_endpoint() -> None:
    clock = ManualClock()
    breakers = EndpointBreakers(Exchange.BYBIT, clock, failure_threshold=3)
    create, lookup = "POST /v5/order/create", "GET /v5/order/realtime"
    for _ in range(3):
        breakers.get(create).record_failure()
    assert breakers.get(create).state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        breakers.get(create).before_request()
    breakers.get(lookup).before_request()  # lookups of the same orders still go out
    assert breakers.states() == {create: BreakerState.OPEN, lookup: BreakerState.CLOSED}
    other = EndpointBreakers(Exchange.BINANCE, clock, failure_threshold=3)
    other.get("POST /api/v3/order").before_request()  # nor does the other venue stop


async def test_breaker_in_the_client_opens_on_5xx_and_recovers() -> None:
    settings = HttpSettings(
        breaker_failure_threshold=3,
        breaker_reset_timeout_s=5,
        retry=RetryPolicy(max_attempts=1),
    )
    venue, fake = make_venue(Exchange.BYBIT, http=settings)
    fake.queue(
        "/v5/market/tickers", *[respond(502, "Bad Gateway")] * 2, fail_with(httpx.ReadTimeout)
    )
    for symbol in ("A", "B", "C"):
        with pytest.raises(OutcomeUnknown):
            await venue.ticker(symbol)
    assert venue.http.breaker(TICKERS).state is BreakerState.OPEN
    before = len(fake.requests)
    with pytest.raises(CircuitOpenError):
        await venue.ticker("D")
    assert len(fake.requests) == before
    venue.clock.advance(5)
    fake.always(
        "/v5/market/tickers",
        respond(200, bybit_ok({"category": "spot", "list": [{"symbol": "E", "lastPrice": "1"}]})),
    )
    assert (await venue.ticker("E")).last_price == Decimal(1)
    assert venue.http.breaker(TICKERS).state is BreakerState.CLOSED


async def test_cache_single_flight_and_ttl() -> None:
    clock = ManualClock()
    cache = TTLCache(clock, default_ttl_s=2.0)
    calls = 0
    gate = asyncio.Event()

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    waiters = [asyncio.create_task(cache.get_or_load("k", load)) for _ in range(100)]
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*waiters)) == {1}
    assert calls == 1
    assert await cache.get_or_load("k", load) == 1
    clock.advance(2.0)
    assert await cache.get_or_load("k", load) == 2


async def test_cache_does_not_keep_errors() -> None:
    cache = TTLCache(ManualClock())

    async def boom() -> int:
        raise ValueError("x")

    async def fine() -> int:
        return 5

    with pytest.raises(ValueError, match="x"):
        await cache.get_or_load("k", boom)
    assert await cache.get_or_load("k", fine) == 5


async def test_server_clock_measures_and_refreshes() -> None:
    clock = ManualClock()
    server_offset = 1234
    fetches = 0

    async def fetch() -> int:
        nonlocal fetches
        fetches += 1
        return int(clock.now().timestamp() * 1000) + server_offset

    synced = ServerClock(Exchange.BINANCE, clock, fetch, refresh_s=60, safety_ms=0)
    await synced.ensure_fresh()
    assert synced.offset_ms == 1234
    await asyncio.gather(*(synced.ensure_fresh() for _ in range(10)))
    assert fetches == 1
    server_offset = -50
    clock.advance(60)
    await synced.ensure_fresh()
    assert (synced.offset_ms, fetches) == (-50, 2)


def test_decimal_formatting_uses_the_step_exponent() -> None:
    assert format_decimal(Decimal("0.0100009"), Decimal("0.000001")) == "0.010000"
    assert format_decimal(Decimal("1E-7"), Decimal("1E-8")) == "0.00000010"
    assert format_decimal(Decimal("123"), Decimal("1")) == "123"
    assert format_decimal(Decimal("1E+3")) == "1000"
    assert round_down_to_step(Decimal("0.123456"), Decimal("0.001")) == Decimal("0.123")


TICKERS = Endpoint("GET", "/v5/market/tickers")


async def test_a_limiter_wait_is_capped_at_the_callers_remaining_life() -> None:
    clock = ManualClock()
    limiter = RateLimiter(Exchange.BINANCE, clock, max_wait_s=30)
    bucket = limiter.bucket(("ip", "weight"), 10, 20.0, safety=1.0)
    start = clock.monotonic()
    await limiter.acquire([(bucket, 10.0)])  # the window is full for 20 s
    with within(5.0, clock), pytest.raises(RateLimited) as refused:
        await limiter.acquire([(bucket, 1.0)])
    assert refused.value.retry_after_s == pytest.approx(20.0)
    assert clock.monotonic() == start  # refused at once, not after waiting
    await limiter.acquire([(bucket, 1.0)])  # no deadline: waits (20 s < max_wait_s)
    assert clock.monotonic() == pytest.approx(start + 20.0)


async def test_background_work_uses_half_the_budget_and_never_queues() -> None:
    clock = ManualClock()
    limiter = RateLimiter(Exchange.BINANCE, clock, max_wait_s=30)
    bucket = limiter.bucket(("ip", "weight"), 100, 60.0, safety=1.0)
    key = limiter.bucket(("key", "k1", "orders"), 10, 10.0, safety=1.0)
    start = clock.monotonic()
    with background():
        for _ in range(5):
            await limiter.acquire([(key, 1.0), (bucket, 10.0)])
        with pytest.raises(RateLimited) as refused:
            await limiter.acquire([(key, 1.0), (bucket, 10.0)])
    assert refused.value.retry_after_s > 0
    assert clock.monotonic() == start  # refused, not queued
    assert bucket.used() == 50
    assert key.used() == 5  # the per-key tokens of the refused request were given back
    for _ in range(5):  # order placement still has the other half
        await limiter.acquire([(bucket, 10.0)])
    assert clock.monotonic() == start


class HeldClock(ManualClock):
    """A clock whose sleeps last until the test lets them end (``wake``)."""

    def __init__(self) -> None:
        super().__init__()
        self.wake = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        await self.wake.wait()


async def test_orders_leave_the_protection_owed_and_protection_skips_their_queue() -> None:
    """A filled position's exit legs must not wait behind new entries: the reduced-limit
    fault scenario left 14 Binance positions bare when the entries of a later plan took the
    whole weight of the minute and the protections were refused for 59 s."""
    clock = HeldClock()
    limiter = RateLimiter(Exchange.BINANCE, clock, max_wait_s=120)
    bucket = limiter.bucket(("ip", "weight"), 100, 60.0, safety=1.0)
    for _ in range(4):  # entries with exits: each owes its protection a unit
        with protection_follows():
            await limiter.acquire([(bucket, 20.0)])  # the account read: registers
            await limiter.acquire([(bucket, 1.0)])  # the create: the same entry's
    assert limiter.owed() == 4
    assert bucket.used() == 84
    # An order leaves the 4 units owed: 84 + 14 fits, 84 + 15 would not (100 - 4).
    await limiter.acquire([(bucket, 12.0)])
    queued = asyncio.create_task(limiter.acquire([(bucket, 3.0)]))
    await asyncio.sleep(0)
    assert not queued.done()  # waiting, first in the line
    assert bucket.lock.locked()
    with protective():  # ahead of the queued order, at once, and each takes its unit
        for _ in range(4):
            await asyncio.wait_for(limiter.acquire([(bucket, 1.0)]), timeout=5)
    assert limiter.owed() == 0
    assert bucket.used() == 100
    limiter.max_wait_s = 1.0
    with protective(), pytest.raises(RateLimited):  # the whole budget, and no more
        await limiter.acquire([(bucket, 1.0)])
    limiter.max_wait_s = 120
    clock.advance(60.0)
    clock.wake.set()
    await asyncio.wait_for(queued, timeout=5)
    assert bucket.used() == 3


async def test_protection_owed_lapses_and_is_capped() -> None:
    clock = ManualClock()
    limiter = RateLimiter(Exchange.BYBIT, clock, max_wait_s=30)
    bucket = limiter.bucket(("ip", "requests"), 100, 5.0, safety=1.0)
    for _ in range(30):
        with protection_follows():
            await limiter.acquire([(bucket, 1.0)])
    assert limiter.owed() == 30
    start = clock.monotonic()
    # At most PROTECTION_RESERVE of the budget is left: 10 of the 70 remaining.
    for _ in range(60):
        await limiter.acquire([(bucket, 1.0)])
    assert clock.monotonic() == start
    assert PROTECTION_RESERVE * bucket.budget == 10
    await limiter.acquire([(bucket, 1.0)])  # the 91st waits for the window
    assert clock.monotonic() > start
    # An entry whose protection never came (unfilled, or nothing to place) lets it lapse.
    clock.advance(PROTECTION_IOU_S)
    assert limiter.owed() == 0


async def test_entries_without_exits_lose_no_budget() -> None:
    clock = ManualClock()
    limiter = RateLimiter(Exchange.BYBIT, clock, max_wait_s=30)
    bucket = limiter.bucket(("ip", "requests"), 100, 5.0, safety=1.0)
    start = clock.monotonic()
    for _ in range(100):
        await limiter.acquire([(bucket, 1.0)])
    assert clock.monotonic() == start
    assert limiter.owed() == 0


async def test_protection_inside_background_work_is_protection() -> None:
    clock = ManualClock()
    limiter = RateLimiter(Exchange.BINANCE, clock, max_wait_s=30)
    bucket = limiter.bucket(("ip", "weight"), 100, 60.0, safety=1.0)
    with background():
        for _ in range(5):
            await limiter.acquire([(bucket, 10.0)])
        with pytest.raises(RateLimited):  # the polling's half is used
            await limiter.acquire([(bucket, 10.0)])
        with protective():  # the tracker protecting a bare position is not polling
            for _ in range(5):
                await limiter.acquire([(bucket, 10.0)])
        with pytest.raises(RateLimited):
            await limiter.acquire([(bucket, 10.0)])  # background again once outside
    assert bucket.used() == 100


async def test_an_order_as_large_as_the_budget_is_still_placeable() -> None:
    clock = ManualClock()
    limiter = RateLimiter(Exchange.BINANCE, clock, max_wait_s=30)
    bucket = limiter.bucket(("ip", "weight"), 20, 60.0, safety=1.0)
    start = clock.monotonic()
    await limiter.acquire([(bucket, 20.0)])  # Binance's account read (20) at a budget of 20
    assert bucket.used() == 20
    assert clock.monotonic() == start  # the reserve shrinks to what is left beside the order


async def test_background_work_of_a_lower_priority_stops_at_its_smaller_share() -> None:
    clock = ManualClock()
    limiter = RateLimiter(Exchange.BINANCE, clock, max_wait_s=30)
    bucket = limiter.bucket(("ip", "weight"), 100, 60.0, safety=1.0)
    with background(0.25):  # e.g. the balance refresh after a restart
        for _ in range(2):
            await limiter.acquire([(bucket, 10.0)])
        with pytest.raises(RateLimited):
            await limiter.acquire([(bucket, 10.0)])
    with background():  # the tracker's polling still has its half
        for _ in range(3):
            await limiter.acquire([(bucket, 10.0)])
        with pytest.raises(RateLimited):
            await limiter.acquire([(bucket, 10.0)])
    assert bucket.used() == 50
    with pytest.raises(ValueError, match="background share 0 must be within"), background(0):
        pass
