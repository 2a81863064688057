"""Build venues: one per exchange per process, shared by every user."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from marketbot.contracts import Exchange
from marketbot.exchanges.base import BaseVenue
from marketbot.exchanges.binance import constants as binance_constants
from marketbot.exchanges.binance.http import BinanceHttp
from marketbot.exchanges.binance.stream import BinanceUserStreams
from marketbot.exchanges.binance.venue import BinanceVenue
from marketbot.exchanges.bybit import constants as bybit_constants
from marketbot.exchanges.bybit.http import BybitHttp
from marketbot.exchanges.bybit.stream import BybitUserStreams
from marketbot.exchanges.bybit.venue import BybitVenue
from marketbot.exchanges.http import HttpSettings
from marketbot.exchanges.userstreams import UserStreams
from marketbot.runtime.clock import Clock, SystemClock


class Environment(StrEnum):
    MAINNET = "mainnet"
    TESTNET = "testnet"
    DEMO = "demo"


BASE_URLS: dict[Exchange, dict[Environment, str]] = {
    Exchange.BYBIT: {
        Environment.MAINNET: bybit_constants.MAINNET_URL,
        Environment.TESTNET: bybit_constants.TESTNET_URL,
        Environment.DEMO: bybit_constants.DEMO_URL,
    },
    Exchange.BINANCE: {
        Environment.MAINNET: binance_constants.MAINNET_URL,
        Environment.TESTNET: binance_constants.TESTNET_URL,
        Environment.DEMO: binance_constants.DEMO_URL,
    },
}


def base_url(exchange: Exchange, environment: Environment | str) -> str:
    """A documented base URL, or ``environment`` itself when it is a URL (e.g. the simulator)."""
    if isinstance(environment, str) and environment.startswith(("http://", "https://")):
        return environment.rstrip("/")
    return BASE_URLS[exchange][Environment(environment)]


@dataclass(frozen=True, slots=True)
class VenueSettings:
    """Everything tunable about a venue client; ``http`` holds timeouts, limits, retries."""

    http: HttpSettings = field(default_factory=HttpSettings)
    market_ttl_s: float = 2.0
    """Market-data cache lifetime (tickers, klines): 1-5 s is sensible."""
    instrument_ttl_s: float = 300.0


@dataclass(frozen=True, slots=True)
class _Builder:
    http: Callable[..., BybitHttp | BinanceHttp]
    venue: Callable[..., BaseVenue]


_BUILDERS: dict[Exchange, _Builder] = {
    Exchange.BYBIT: _Builder(BybitHttp, BybitVenue),
    Exchange.BINANCE: _Builder(BinanceHttp, BinanceVenue),
}


def create_venue(
    exchange: Exchange,
    base_url_or_env: str | Environment = Environment.MAINNET,
    *,
    clock: Clock | None = None,
    settings: VenueSettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    rng: random.Random | None = None,
) -> BaseVenue:
    """One venue (one pooled HTTP client); create once per process and share it."""
    settings = settings or VenueSettings()
    builder = _BUILDERS[exchange]
    http = builder.http(
        base_url(exchange, base_url_or_env),
        clock=clock or SystemClock(),
        settings=settings.http,
        transport=transport,
        rng=rng,
    )
    return builder.venue(
        http,
        market_ttl_s=settings.market_ttl_s,
        instrument_ttl_s=settings.instrument_ttl_s,
    )


_STREAMS: dict[Exchange, Callable[..., UserStreams]] = {
    Exchange.BYBIT: BybitUserStreams,
    Exchange.BINANCE: BinanceUserStreams,
}


def create_user_streams(
    exchange: Exchange, base_url_or_env: str | Environment = Environment.MAINNET, **kwargs: Any
) -> UserStreams:
    """The private (and, where exits are watched, public) streams of one exchange for one
    process; ``kwargs`` are ``UserStreams``' (``on_report``, ``on_connected``, ``settings``,
    ``clock``, ``replica``, ``egress_ip``, ``offset_ms``)."""
    return _STREAMS[exchange](base_url(exchange, base_url_or_env), **kwargs)
