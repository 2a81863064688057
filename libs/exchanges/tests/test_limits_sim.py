"""Rate limits over real HTTP against the simulator enforcing reduced budgets.

Each test runs its own simulator process (the per-IP counters are the simulator's whole
state: a shared one would mix other tests' traffic into the windows) and counts the
rate-limit answers on the simulator's side (``/__admin/stats``), not the client's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from marketbot.contracts import Exchange
from marketbot.exchanges.errors import ExchangeError, IpBannedError, RateLimited
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import Endpoint, HttpSettings
from marketbot.exchanges.retry import RetryPolicy
from marketbot.exchanges.signer import LocalSigner
from marketbot.sim.admin import SimAdmin
from marketbot.sim.testing import start_sim_process, stop_sim_process

pytestmark = pytest.mark.xdist_group("exchange-sim-limits")

PING = Endpoint("GET", "/api/v3/ping")
BYBIT_ORDER_QUERY = Endpoint("GET", "/v5/order/realtime", signed=True)


@dataclass
class Sim:
    urls: dict[str, str]
    bybit: SimAdmin
    binance: SimAdmin


@pytest.fixture
def sim_urls() -> Iterator[dict[str, str]]:
    process, urls = start_sim_process(seed=7)
    yield urls
    stop_sim_process(process)


@pytest_asyncio.fixture
async def own_sim(sim_urls: dict[str, str]) -> AsyncIterator[Sim]:
    sim = Sim(sim_urls, SimAdmin(sim_urls["bybit"]), SimAdmin(sim_urls["binance"]))
    yield sim
    await sim.bybit.aclose()
    await sim.binance.aclose()


def venue_settings(**http: Any) -> VenueSettings:
    return VenueSettings(http=HttpSettings(**http))


async def outcomes(calls: list[Any]) -> dict[str, int]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    counts: dict[str, int] = {}
    for result in results:
        kind = type(result).__name__ if isinstance(result, BaseException) else "ok"
        counts[kind] = counts.get(kind, 0) + 1
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, ExchangeError)
    ]
    assert not unexpected, unexpected
    return counts


async def test_binance_200_concurrent_requests_under_a_reduced_budget_get_no_429(
    own_sim: Sim,
) -> None:
    """The simulator enforces 100 weight a minute instead of 6,000. The client asks for
    ``exchangeInfo.rateLimits`` first (rest-api.md: "The /api/v3/exchangeInfo rateLimits
    array contains objects related to the exchange's RAW_REQUESTS, REQUEST_WEIGHT, and
    ORDERS rate limits"), so 200 concurrent requests over 20 connections spend at most
    the budget and the rest are refused locally, never sent: no 429, no 418."""
    await own_sim.binance.set_limits(True, weight_limit=100, ban_seconds=5)
    venue = create_venue(
        Exchange.BINANCE,
        own_sim.urls["binance"],
        settings=venue_settings(
            max_connections=20,
            limits_refresh_s=300.0,
            max_rate_limit_wait_s=2.0,
            retry=RetryPolicy(max_attempts=1),
        ),
    )
    try:
        counts = await outcomes([venue.http.call(PING) for _ in range(200)])
    finally:
        await venue.aclose()
    stats = await own_sim.binance.stats()
    assert stats["limit_answers"] == {}, stats["limit_answers"]
    assert 0 < counts["ok"] <= 100 - 20  # exchangeInfo itself weighs 20
    assert counts["ok"] + counts.get("RateLimited", 0) == 200


async def test_binance_unknown_limit_one_429_then_nothing_until_retry_after(
    own_sim: Sim,
) -> None:
    """The client believes the documented 6,000; the simulator enforces 30. The first 429
    holds every request until its Retry-After (the end of the minute window) and lowers the
    budget to what the exchange accepted: one 429 in the window, no 418."""
    await own_sim.binance.set_limits(True, weight_limit=30, ban_seconds=5)
    venue = create_venue(
        Exchange.BINANCE,
        own_sim.urls["binance"],
        settings=venue_settings(max_rate_limit_wait_s=1.0, retry=RetryPolicy(max_attempts=1)),
    )
    refused: list[RateLimited] = []
    try:
        for _ in range(60):
            try:
                await venue.http.call(PING)
            except RateLimited as exc:
                refused.append(exc)
        budget = venue.http._weight.budget  # type: ignore[attr-defined]
    finally:
        await venue.aclose()
    stats = await own_sim.binance.stats()
    assert stats["limit_answers"].get("429") == 1 or (
        # a minute boundary between the 429 and the end of the loop opens a new window
        stats["limit_answers"].get("429") == 2 and len(stats["limit_events"]) == 2
    )
    assert "418" not in stats["limit_answers"]
    assert len(refused) >= 60 - 30 - 1
    assert not any(isinstance(exc, IpBannedError) for exc in refused)
    assert budget <= 30 * 0.9


async def test_bybit_per_uid_limit_reported_in_headers_is_kept_under_concurrency(
    own_sim: Sim,
) -> None:
    """The simulator limits order queries to 5 a second per UID (documented 50); the first
    answer's X-Bapi-Limit / X-Bapi-Limit-Status teach the client (rate-limit_rate-limit.mdx),
    so 25 concurrent queries for the key wait their turn: no 10006, no 403."""
    await own_sim.bybit.set_limits(True, uid_limits={"/v5/order/realtime": 5})
    account = await own_sim.bybit.create_account()
    await own_sim.bybit.fund(account, "USDT", Decimal(1000))
    key, secret = await own_sim.bybit.create_api_key(account)
    signer = LocalSigner(key, secret)
    venue = create_venue(
        Exchange.BYBIT,
        own_sim.urls["bybit"],
        settings=venue_settings(max_connections=20, retry=RetryPolicy(max_attempts=1)),
    )
    params = {"category": "spot", "orderLinkId": "none"}
    try:
        await venue.http.call(BYBIT_ORDER_QUERY, params, signer)
        counts = await outcomes(
            [venue.http.call(BYBIT_ORDER_QUERY, params, signer) for _ in range(25)]
        )
    finally:
        await venue.aclose()
    stats = await own_sim.bybit.stats()
    assert stats["limit_answers"] == {}, stats["limit_answers"]
    assert counts == {"ok": 25}
