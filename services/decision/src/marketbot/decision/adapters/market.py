"""The market context of a decision: every provider read concurrently, merged."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from marketbot.contracts import Exchange, MarketContext
from marketbot.decision.adapters.cache import ReadStatus
from marketbot.decision.adapters.providers import MarketDataProvider


class MarketContextService:
    def __init__(self, providers: Sequence[MarketDataProvider]) -> None:
        self.providers = tuple(providers)

    async def context_for(self, symbol: str, exchange: Exchange | None) -> MarketContext:
        readings = await asyncio.gather(*(p.read(symbol, exchange) for p in self.providers))
        fields: dict[str, Any] = {}
        stale: list[str] = []
        missing: list[str] = []
        errors: list[str] = []
        for provider, reading in zip(self.providers, readings, strict=True):
            if reading.value is not None:
                fields.update(reading.value)
            if reading.status is ReadStatus.STALE:
                stale.append(provider.name)
            elif reading.status is ReadStatus.MISSING:
                missing.append(provider.name)
            if reading.error and reading.status in (ReadStatus.STALE, ReadStatus.MISSING):
                errors.append(reading.error[:300])
        return MarketContext(
            **fields, stale=tuple(stale), missing=tuple(missing), errors=tuple(errors)
        )
