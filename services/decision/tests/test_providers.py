"""Providers: parsing of the documented payloads, TTL cache, timeouts, stale fallback, and
the ticker's automatic fallback from Bybit to Binance (real venue clients, mocked wire)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from marketbot.contracts import Exchange
from marketbot.decision.adapters.cache import ProviderError, ReadStatus
from marketbot.decision.adapters.market import MarketContextService
from marketbot.decision.adapters.providers import (
    BtcDominanceProvider,
    ExchangeTickerProvider,
    FearGreedProvider,
    ReaderSettings,
    Top100Provider,
    decimal_json,
    parse_fear_greed,
    parse_global,
    parse_top100,
)
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import HttpSettings
from marketbot.exchanges.retry import RetryPolicy
from marketbot.runtime.clock import ManualClock

# alternative.me, https://alternative.me/crypto/fear-and-greed-index/ (API section)
FNG = b"""{
  "name": "Fear and Greed Index",
  "data": [
    {"value": "40", "value_classification": "Fear", "timestamp": "1551157200",
     "time_until_update": "68499"}
  ],
  "metadata": {"error": null}
}"""

# CoinGecko /api/v3/global (documentation example)
GLOBAL = b"""{"data": {"active_cryptocurrencies": 13690, "upcoming_icos": 0, "ongoing_icos": 49,
  "ended_icos": 3376, "markets": 1046,
  "total_market_cap": {"btc": 39003738.08471593, "usd": 2721226850772.6313},
  "total_volume": {"btc": 993675.225562481, "usd": 69327091133.54107},
  "market_cap_percentage": {"btc": 50.44662625860115, "eth": 14.900318995784347,
    "usdt": 3.8983050426461675},
  "market_cap_change_percentage_24h_usd": 1.721795060602718, "updated_at": 1712512855}}"""

# CoinGecko /api/v3/coins/markets (documentation example row, then 99 more like it)
BITCOIN_ROW: dict[str, Any] = json.loads(
    """{"id": "bitcoin", "symbol": "btc", "name": "Bitcoin",
  "image": "https://assets.coingecko.com/coins/images/1/large/bitcoin.png?1696501400",
  "current_price": 70187, "market_cap": 1381651251183, "market_cap_rank": 1,
  "fully_diluted_valuation": 1474623675796, "total_volume": 20154184933, "high_24h": 70215,
  "low_24h": 68060, "price_change_24h": 2126.88, "price_change_percentage_24h": 3.12502,
  "market_cap_change_24h": 44287678051, "market_cap_change_percentage_24h": 3.31157,
  "circulating_supply": 19675987, "total_supply": 21000000, "max_supply": 21000000,
  "ath": 73738, "ath_change_percentage": -4.77063, "ath_date": "2024-03-14T07:10:36.635Z",
  "atl": 67.81, "atl_change_percentage": 103455.83335, "atl_date": "2013-07-06T00:00:00.000Z",
  "roi": null, "last_updated": "2024-04-07T16:49:31.736Z"}"""
)


def markets_payload(changes: list[str | None]) -> bytes:
    rows = []
    for i, change in enumerate(changes):
        row = dict(BITCOIN_ROW) if i == 0 else {**BITCOIN_ROW, "id": f"coin-{i}", "symbol": f"c{i}"}
        row["price_change_percentage_24h"] = None if change is None else f"@{change}@"
        rows.append(row)
    # numbers in the wire format, not strings: splice them in unquoted
    return json.dumps(rows).replace('"@', "").replace('@"', "").encode()


# Bybit V5 GET /v5/market/tickers, category=spot (reference/bybit-v5/market_tickers.mdx)
BYBIT_TICKER = {
    "retCode": 0,
    "retMsg": "OK",
    "result": {
        "category": "spot",
        "list": [
            {
                "symbol": "BTCUSDT",
                "bid1Price": "20517.96",
                "bid1Size": "2",
                "ask1Price": "20527.77",
                "ask1Size": "1.862172",
                "lastPrice": "20533.13",
                "prevPrice24h": "20393.48",
                "price24hPcnt": "0.0068",
                "highPrice24h": "21128.12",
                "lowPrice24h": "20318.89",
                "turnover24h": "243765620.65899866",
                "volume24h": "11801.27771",
                "usdIndexPrice": "20784.12009279",
            }
        ],
    },
    "retExtInfo": {},
    "time": 1673859087947,
}

# Binance GET /api/v3/ticker/24hr (reference/binance-spot/rest-api.md), symbol adapted
BINANCE_TICKER = {
    "symbol": "BTCUSDT",
    "priceChange": "-94.99999800",
    "priceChangePercent": "-95.960",
    "weightedAvgPrice": "0.29628482",
    "prevClosePrice": "0.10002000",
    "lastPrice": "4.00000200",
    "lastQty": "200.00000000",
    "bidPrice": "4.00000000",
    "bidQty": "100.00000000",
    "askPrice": "4.00000200",
    "askQty": "100.00000000",
    "openPrice": "99.00000000",
    "highPrice": "100.00000000",
    "lowPrice": "0.10000000",
    "volume": "8913.30000000",
    "quoteVolume": "15.30000000",
    "openTime": 1499783499040,
    "closeTime": 1499869899040,
    "firstId": 28385,
    "lastId": 28460,
    "count": 76,
}

FAST = ReaderSettings(ttl_s=60, timeout_s=0.2, max_stale_s=600)


# ---- parsing ------------------------------------------------------------------------------


def test_fear_greed_parses_the_documented_payload() -> None:
    fng = parse_fear_greed(decimal_json(FNG))
    assert (fng.value, fng.label) == (40, "Fear")


def test_global_parses_dominance_exactly() -> None:
    market = parse_global(decimal_json(GLOBAL))
    assert market.btc_dominance == Decimal("50.4466")
    assert market.market_cap_change_24h == Decimal("1.7218")


def test_top100_breadth_and_median() -> None:
    changes = ["3.12502", "-1.5", "0.25", "2", None, "-0.75"]
    top = parse_top100(decimal_json(markets_payload(changes)))
    assert top.counted == 5  # a coin without a 24 h change is left out
    assert top.up_share == Decimal("0.6")
    assert top.median_change == Decimal("0.25")
    assert top.btc_change_24h == Decimal("3.1250")


def test_top100_median_of_an_even_count() -> None:
    top = parse_top100(decimal_json(markets_payload(["1", "2", "-3", "5"])))
    assert top.median_change == Decimal("1.5")
    assert top.up_share == Decimal("0.75")


@pytest.mark.parametrize(
    ("parser", "payload"),
    [
        (parse_fear_greed, b'{"data": []}'),
        (parse_fear_greed, b'{"data": [{"value": "101"}]}'),
        (parse_global, b'{"data": {"market_cap_percentage": {}}}'),
        (parse_top100, b'{"error": "rate limited"}'),
        (parse_top100, b"[]"),
    ],
)
def test_unusable_payloads_are_provider_errors(
    parser: Callable[[Any], Any], payload: bytes
) -> None:
    with pytest.raises(ProviderError):
        parser(decimal_json(payload))


# ---- HTTP providers on a mocked wire -------------------------------------------------------


class Wire:
    """An httpx MockTransport routing by path; counts requests; can be slow or down."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {
            "/fng/": FNG,
            "/api/v3/global": GLOBAL,
            "/api/v3/coins/markets": markets_payload(["1", "-1", "2", "3"]),
        }
        self.status = 200
        self.delay_s = 0.0
        self.calls: dict[str, int] = {}

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls[request.url.path] = self.calls.get(request.url.path, 0) + 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "down"})
        return httpx.Response(200, content=self.routes[request.url.path])

    def client(self, base: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base, transport=httpx.MockTransport(self.handle))


async def test_the_fear_greed_value_is_cached_for_its_ttl() -> None:
    wire, clock = Wire(), ManualClock()
    provider = FearGreedProvider(
        wire.client("https://api.alternative.me"), clock=clock, settings=FAST
    )
    first = await provider.read("BTCUSDT", None)
    second = await provider.read("ETHUSDT", None)
    assert first.status is ReadStatus.FRESH
    assert second.status is ReadStatus.CACHED
    assert first.value == {"fear_greed": 40, "fear_greed_label": "Fear"}
    assert wire.calls == {"/fng/": 1}
    clock.advance(61)
    assert (await provider.read("BTCUSDT", None)).status is ReadStatus.FRESH
    assert wire.calls == {"/fng/": 2}


async def test_a_timeout_serves_the_stale_value_then_nothing() -> None:
    wire, clock = Wire(), ManualClock()
    provider = Top100Provider(wire.client("https://api.coingecko.com"), clock=clock, settings=FAST)
    assert (await provider.read("BTCUSDT", None)).status is ReadStatus.FRESH
    clock.advance(120)  # past the TTL
    wire.delay_s = 1.0  # past the 0.2 s timeout
    stale = await provider.read("BTCUSDT", None)
    assert stale.status is ReadStatus.STALE
    assert stale.value is not None
    assert stale.value["top100_up_share"] == Decimal("0.75")
    assert stale.error is not None
    assert "timeout" in stale.error
    clock.advance(600)  # past max_stale
    missing = await provider.read("BTCUSDT", None)
    assert missing.status is ReadStatus.MISSING
    assert missing.value is None


async def test_concurrent_reads_make_one_request() -> None:
    wire, clock = Wire(), ManualClock()
    wire.delay_s = 0.05
    provider = BtcDominanceProvider(
        wire.client("https://api.coingecko.com"), clock=clock, settings=FAST
    )
    readings = await asyncio.gather(*(provider.read("BTCUSDT", None) for _ in range(10)))
    assert wire.calls == {"/api/v3/global": 1}
    assert {r.value["btc_dominance"] for r in readings if r.value} == {Decimal("50.4466")}


async def test_a_provider_timeout_degrades_the_context_instead_of_failing() -> None:
    wire, clock = Wire(), ManualClock()
    wire.delay_s = 1.0
    fng = FearGreedProvider(wire.client("https://api.alternative.me"), clock=clock, settings=FAST)
    service = MarketContextService([fng])
    started = asyncio.get_running_loop().time()
    context = await service.context_for("BTCUSDT", None)
    assert asyncio.get_running_loop().time() - started < 0.9
    assert context.missing == ("fear_greed",)
    assert context.fear_greed is None
    assert "timeout" in context.errors[0]


async def test_http_errors_are_missing_inputs() -> None:
    wire, clock = Wire(), ManualClock()
    wire.status = 429
    cg = wire.client("https://api.coingecko.com")
    service = MarketContextService(
        [
            BtcDominanceProvider(cg, clock=clock, settings=FAST),
            Top100Provider(cg, clock=clock, settings=FAST),
        ]
    )
    context = await service.context_for("BTCUSDT", None)
    assert context.missing == ("btc_dominance", "top100")
    assert all("HTTP 429" in e for e in context.errors)


# ---- the exchange ticker with fallback (real venue clients) -------------------------------


class Exchanges:
    def __init__(self) -> None:
        self.bybit_down = False
        self.calls: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls.append(f"{host}{request.url.path}")
        if host == "bybit.test":
            if self.bybit_down:
                return httpx.Response(503, text="Service Unavailable")
            return httpx.Response(200, json=BYBIT_TICKER)
        return httpx.Response(200, json=BINANCE_TICKER)


def venues(exchanges: Exchanges, clock: ManualClock) -> dict[Exchange, Any]:
    transport = httpx.MockTransport(exchanges.handle)
    settings = VenueSettings(
        http=HttpSettings(retry=RetryPolicy(max_attempts=1)), market_ttl_s=0.001
    )
    return {
        Exchange.BYBIT: create_venue(
            Exchange.BYBIT, "http://bybit.test", clock=clock, settings=settings, transport=transport
        ),
        Exchange.BINANCE: create_venue(
            Exchange.BINANCE,
            "http://binance.test",
            clock=clock,
            settings=settings,
            transport=transport,
        ),
    }


async def test_the_ticker_comes_from_bybit_first() -> None:
    exchanges, clock = Exchanges(), ManualClock()
    provider = ExchangeTickerProvider(
        venues(exchanges, clock),
        (Exchange.BYBIT, Exchange.BINANCE),
        clock=clock,
        settings=FAST,
        venue_timeout_s=1.0,
    )
    reading = await provider.read("BTCUSDT", None)
    assert reading.value == {
        "ticker_price": Decimal("20533.13"),
        "ticker_exchange": Exchange.BYBIT,
        "ticker_change_24h": Decimal("0.68"),
    }
    assert all(c.startswith("bybit.test") for c in exchanges.calls)


async def test_bybit_down_falls_back_to_binance() -> None:
    exchanges, clock = Exchanges(), ManualClock()
    exchanges.bybit_down = True
    provider = ExchangeTickerProvider(
        venues(exchanges, clock),
        (Exchange.BYBIT, Exchange.BINANCE),
        clock=clock,
        settings=ReaderSettings(ttl_s=5, timeout_s=3, max_stale_s=60),
        venue_timeout_s=1.0,
    )
    reading = await provider.read("BTCUSDT", None)
    assert reading.status is ReadStatus.FRESH
    assert reading.value is not None
    assert reading.value["ticker_exchange"] is Exchange.BINANCE
    assert reading.value["ticker_price"] == Decimal("4.00000200")
    assert reading.value["ticker_change_24h"] == Decimal("-95.960")
    assert any(c.startswith("bybit.test") for c in exchanges.calls)


async def test_a_signal_for_binance_asks_binance_first() -> None:
    exchanges, clock = Exchanges(), ManualClock()
    provider = ExchangeTickerProvider(
        venues(exchanges, clock),
        (Exchange.BYBIT, Exchange.BINANCE),
        clock=clock,
        settings=FAST,
        venue_timeout_s=1.0,
    )
    assert provider.order_for(Exchange.BINANCE) == (Exchange.BINANCE, Exchange.BYBIT)
    reading = await provider.read("BTCUSDT", Exchange.BINANCE)
    assert reading.value is not None
    assert reading.value["ticker_exchange"] is Exchange.BINANCE
