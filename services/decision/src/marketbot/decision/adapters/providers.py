"""Market-data providers behind one interface: each fills some fields of ``MarketContext``.

Payload formats (../shared/exchange-facts.md):
- alternative.me ``GET /fng/?limit=1`` -> ``{"data": [{"value": "72",
  "value_classification": "Greed", ...}]}``
- CoinGecko ``GET /api/v3/global`` -> ``data.market_cap_percentage.btc`` (and
  ``data.market_cap_change_percentage_24h_usd``)
- CoinGecko ``GET /api/v3/coins/markets?vs_currency=usd&order=market_cap_desc&per_page=100
  &page=1`` -> a list of coins with ``price_change_percentage_24h``
- exchange tickers through the ``Venue`` protocol of ``marketbot.exchanges``, primary first,
  the other exchange on failure.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import httpx

from marketbot.contracts import Exchange
from marketbot.decision import metrics
from marketbot.decision.adapters.cache import CachedReader, ProviderError, Reading, error_kind
from marketbot.exchanges.venue import Venue
from marketbot.runtime.clock import Clock
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.decision.providers")

ContextFields = dict[str, Any]
"""Fields of ``MarketContext`` a provider fills in."""


class MarketDataProvider(Protocol):
    """One source of market context. ``read`` never raises: it degrades to a missing value."""

    @property
    def name(self) -> str: ...

    async def read(self, symbol: str, exchange: Exchange | None) -> Reading[ContextFields]: ...


@dataclass(frozen=True, slots=True)
class ReaderSettings:
    ttl_s: float
    timeout_s: float
    max_stale_s: float


def decimal_json(content: bytes) -> Any:
    """JSON with every non-integer number as an exact Decimal (never a binary float)."""
    try:
        return json.loads(content, parse_float=Decimal)
    except ValueError as exc:
        raise ProviderError(f"not JSON: {exc}") from exc


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ProviderError(f"{what} is missing")
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError as exc:
            raise ProviderError(f"{what} is not a number: {value!r}") from exc
    raise ProviderError(f"{what} is not a number: {value!r}")


# ---- pure parsers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FearGreed:
    value: int
    label: str | None

    def fields(self) -> ContextFields:
        return {"fear_greed": self.value, "fear_greed_label": self.label}


def parse_fear_greed(payload: Any) -> FearGreed:
    try:
        row = payload["data"][0]
    except (KeyError, IndexError, TypeError) as exc:
        raise ProviderError("fng: no data[0]") from exc
    value = int(_decimal(row.get("value"), "fng value"))
    if not 0 <= value <= 100:
        raise ProviderError(f"fng value out of range: {value}")
    label = row.get("value_classification")
    return FearGreed(value, str(label) if label else None)


@dataclass(frozen=True, slots=True)
class GlobalMarket:
    btc_dominance: Decimal
    market_cap_change_24h: Decimal | None

    def fields(self) -> ContextFields:
        return {
            "btc_dominance": self.btc_dominance,
            "market_cap_change_24h": self.market_cap_change_24h,
        }


def parse_global(payload: Any) -> GlobalMarket:
    try:
        data = payload["data"]
        dominance = _decimal(data["market_cap_percentage"]["btc"], "btc dominance")
    except (KeyError, TypeError) as exc:
        raise ProviderError("global: no data.market_cap_percentage.btc") from exc
    change = data.get("market_cap_change_percentage_24h_usd")
    return GlobalMarket(
        dominance.quantize(Decimal("0.0001")),
        None
        if change is None
        else _decimal(change, "market cap change").quantize(Decimal("0.0001")),
    )


@dataclass(frozen=True, slots=True)
class Top100:
    up_share: Decimal
    median_change: Decimal
    btc_change_24h: Decimal | None
    counted: int

    def fields(self) -> ContextFields:
        return {
            "top100_up_share": self.up_share,
            "top100_median_change": self.median_change,
            "btc_change_24h": self.btc_change_24h,
        }


def parse_top100(payload: Any) -> Top100:
    if not isinstance(payload, list):
        raise ProviderError("coins/markets: expected a list")
    changes: list[Decimal] = []
    btc: Decimal | None = None
    for row in payload[:100]:
        if not isinstance(row, dict) or row.get("price_change_percentage_24h") is None:
            continue
        change = _decimal(row["price_change_percentage_24h"], "price_change_percentage_24h")
        changes.append(change)
        if row.get("id") == "bitcoin":
            btc = change
    if not changes:
        raise ProviderError("coins/markets: no 24 h changes")
    up = sum(1 for c in changes if c > 0)
    four = Decimal("0.0001")
    return Top100(
        up_share=(Decimal(up) / Decimal(len(changes))).quantize(four),
        median_change=Decimal(statistics.median(changes)).quantize(four),
        btc_change_24h=None if btc is None else btc.quantize(four),
        counted=len(changes),
    )


# ---- providers ----------------------------------------------------------------------------


async def _get_json(client: httpx.AsyncClient, path: str, params: Mapping[str, str]) -> Any:
    response = await client.get(path, params=params)
    if response.status_code != 200:
        raise ProviderError(f"GET {path}: HTTP {response.status_code}")
    return decimal_json(response.content)


class FearGreedProvider:
    """alternative.me Fear & Greed; the index changes once a day, so a long TTL."""

    name = "fear_greed"

    def __init__(
        self, client: httpx.AsyncClient, *, clock: Clock, settings: ReaderSettings
    ) -> None:
        self._client = client
        self.reader: CachedReader[FearGreed] = CachedReader(
            self.name,
            clock=clock,
            ttl_s=settings.ttl_s,
            timeout_s=settings.timeout_s,
            max_stale_s=settings.max_stale_s,
        )

    async def fetch(self) -> FearGreed:
        return parse_fear_greed(await _get_json(self._client, "/fng/", {"limit": "1"}))

    async def read(self, symbol: str, exchange: Exchange | None) -> Reading[ContextFields]:
        return _as_fields(await self.reader.read("fng", self.fetch))


class BtcDominanceProvider:
    """CoinGecko ``/api/v3/global``: BTC dominance and the total market-cap change."""

    name = "btc_dominance"

    def __init__(
        self, client: httpx.AsyncClient, *, clock: Clock, settings: ReaderSettings
    ) -> None:
        self._client = client
        self.reader: CachedReader[GlobalMarket] = CachedReader(
            self.name,
            clock=clock,
            ttl_s=settings.ttl_s,
            timeout_s=settings.timeout_s,
            max_stale_s=settings.max_stale_s,
        )

    async def fetch(self) -> GlobalMarket:
        return parse_global(await _get_json(self._client, "/api/v3/global", {}))

    async def read(self, symbol: str, exchange: Exchange | None) -> Reading[ContextFields]:
        return _as_fields(await self.reader.read("global", self.fetch))


TOP100_PARAMS = {
    "vs_currency": "usd",
    "order": "market_cap_desc",
    "per_page": "100",
    "page": "1",
}


class Top100Provider:
    """CoinGecko ``/api/v3/coins/markets``: breadth (share up) and median 24 h change."""

    name = "top100"

    def __init__(
        self, client: httpx.AsyncClient, *, clock: Clock, settings: ReaderSettings
    ) -> None:
        self._client = client
        self.reader: CachedReader[Top100] = CachedReader(
            self.name,
            clock=clock,
            ttl_s=settings.ttl_s,
            timeout_s=settings.timeout_s,
            max_stale_s=settings.max_stale_s,
        )

    async def fetch(self) -> Top100:
        return parse_top100(await _get_json(self._client, "/api/v3/coins/markets", TOP100_PARAMS))

    async def read(self, symbol: str, exchange: Exchange | None) -> Reading[ContextFields]:
        return _as_fields(await self.reader.read("top100", self.fetch))


@dataclass(frozen=True, slots=True)
class VenueTicker:
    exchange: Exchange
    last_price: Decimal
    change_percent_24h: Decimal | None

    def fields(self) -> ContextFields:
        return {
            "ticker_price": self.last_price,
            "ticker_exchange": self.exchange,
            "ticker_change_24h": self.change_percent_24h,
        }


class ExchangeTickerProvider:
    """The symbol's ticker from the primary exchange, the other one when it fails.

    The order is ``exchanges`` (primary first), except that a signal naming an exchange puts
    that exchange first. Each venue attempt has its own timeout; the reader's timeout bounds
    the whole read.
    """

    name = "ticker"

    def __init__(
        self,
        venues: Mapping[Exchange, Venue],
        exchanges: Sequence[Exchange],
        *,
        clock: Clock,
        settings: ReaderSettings,
        venue_timeout_s: float,
    ) -> None:
        unknown = [e for e in exchanges if e not in venues]
        if unknown:
            raise ValueError(f"no venue for {unknown}")
        self._venues = venues
        self.exchanges = tuple(exchanges)
        self.venue_timeout_s = venue_timeout_s
        self.reader: CachedReader[VenueTicker] = CachedReader(
            self.name,
            clock=clock,
            ttl_s=settings.ttl_s,
            timeout_s=settings.timeout_s,
            max_stale_s=settings.max_stale_s,
        )

    def order_for(self, exchange: Exchange | None) -> tuple[Exchange, ...]:
        if exchange is None or exchange not in self.exchanges:
            return self.exchanges
        return (exchange, *(e for e in self.exchanges if e is not exchange))

    async def fetch(self, symbol: str, order: Sequence[Exchange]) -> VenueTicker:
        failures: list[str] = []
        for exchange in order:
            try:
                ticker = await asyncio.wait_for(
                    self._venues[exchange].ticker(symbol), timeout=self.venue_timeout_s
                )
            except Exception as exc:
                kind = error_kind(exc)
                metrics.PROVIDER_ERRORS.labels(f"ticker_{exchange.value}", kind).inc()
                metrics.TICKER_FALLBACKS.labels(exchange.value).inc()
                failures.append(f"{exchange.value}: {kind}")
                log.warning(
                    "ticker failed; trying the next exchange",
                    exchange=exchange.value,
                    symbol=symbol,
                    error=str(exc) or kind,
                )
                continue
            return VenueTicker(exchange, ticker.last_price, ticker.change_percent_24h)
        raise ProviderError("no exchange answered: " + ", ".join(failures))

    async def read(self, symbol: str, exchange: Exchange | None) -> Reading[ContextFields]:
        order = self.order_for(exchange)
        return _as_fields(
            await self.reader.read((symbol, order), lambda: self.fetch(symbol, order))
        )


class _HasFields(Protocol):
    def fields(self) -> ContextFields: ...


def _as_fields(reading: Reading[Any]) -> Reading[ContextFields]:
    value: _HasFields | None = reading.value
    return Reading(
        None if value is None else value.fields(), reading.status, reading.age_s, reading.error
    )
