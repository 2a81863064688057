"""Mark prices for open positions: the exchanges' public tickers (no key, no signature),
through the same venue clients the executors use (``marketbot.exchanges``), each cached for
its ``market_ttl_s`` (2 s) so many users watching one symbol cost one request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from decimal import Decimal

from marketbot.contracts import Exchange
from marketbot.exchanges.base import BaseVenue
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import HttpSettings
from marketbot.runtime.clock import Clock
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.gateway.marks")


class MarkPrices:
    def __init__(self, venues: dict[Exchange, BaseVenue], timeout_s: float = 2.0) -> None:
        self._venues = venues
        self._timeout_s = timeout_s

    @classmethod
    def from_urls(cls, urls: dict[str, str], clock: Clock, timeout_s: float = 2.0) -> MarkPrices:
        settings = VenueSettings(
            http=HttpSettings(connect_timeout_s=timeout_s, read_timeout_s=timeout_s),
            market_ttl_s=2.0,
        )
        venues = {
            Exchange(name): create_venue(Exchange(name), url, clock=clock, settings=settings)
            for name, url in urls.items()
        }
        return cls(venues, timeout_s)

    async def _one(self, exchange: Exchange, symbol: str) -> Decimal | None:
        venue = self._venues.get(exchange)
        if venue is None:
            return None
        try:
            return await asyncio.wait_for(venue.price(symbol), timeout=self._timeout_s)
        except Exception as exc:
            log.info(
                "mark price unavailable", exchange=exchange.value, symbol=symbol, error=repr(exc)
            )
            return None

    async def prices(
        self, pairs: Iterable[tuple[Exchange, str]]
    ) -> dict[tuple[Exchange, str], Decimal | None]:
        wanted = list(dict.fromkeys(pairs))
        found = await asyncio.gather(*(self._one(e, s) for e, s in wanted))
        return dict(zip(wanted, found, strict=True))

    async def aclose(self) -> None:
        for venue in self._venues.values():
            with contextlib.suppress(Exception):
                await venue.aclose()
