"""One venue client per exchange, created on first use and shared by every verification."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from marketbot.contracts import Exchange
from marketbot.exchanges.factory import VenueSettings, create_venue
from marketbot.exchanges.http import HttpSettings
from marketbot.exchanges.venue import Venue
from marketbot.runtime.clock import Clock


class VenueProvider(Protocol):
    def venue(self, exchange: Exchange) -> Venue: ...


class VenuePool:
    def __init__(
        self, urls: Mapping[Exchange, str], clock: Clock, *, http: HttpSettings | None = None
    ) -> None:
        self._urls = dict(urls)
        self._clock = clock
        self._settings = VenueSettings(http=http or HttpSettings())
        self._venues: dict[Exchange, Venue] = {}

    def venue(self, exchange: Exchange) -> Venue:
        venue = self._venues.get(exchange)
        if venue is None:
            venue = create_venue(
                exchange,
                self._urls.get(exchange, "mainnet"),
                clock=self._clock,
                settings=self._settings,
            )
            self._venues[exchange] = venue
        return venue

    async def aclose(self) -> None:
        for venue in self._venues.values():
            await venue.aclose()
        self._venues.clear()
