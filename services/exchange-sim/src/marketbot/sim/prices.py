"""Deterministic simulated prices: a seeded random walk per symbol, settable and steppable."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from marketbot.sim.instruments import Instrument

PriceListener = Callable[[str, Decimal], None]

INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 2_592_000_000,
}


@dataclass(slots=True)
class Candle:
    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    turnover: Decimal
    trades: int


@dataclass(slots=True)
class _Track:
    price: Decimal
    open_24h: Decimal
    high: Decimal
    low: Decimal
    rng: random.Random


class PriceBook:
    """Current price of every symbol; listeners hear every change (orders trigger on them)."""

    def __init__(self, instruments: dict[str, Instrument], seed: int) -> None:
        self._instruments = instruments
        self._seed = seed
        self._listeners: list[PriceListener] = []
        self._tracks: dict[str, _Track] = {}
        self.reset()

    def reset(self) -> None:
        self._tracks = {
            symbol: _Track(
                price=inst.initial_price,
                open_24h=inst.initial_price,
                high=inst.initial_price,
                low=inst.initial_price,
                rng=random.Random(f"{self._seed}:{symbol}"),
            )
            for symbol, inst in self._instruments.items()
        }

    def subscribe(self, listener: PriceListener) -> None:
        self._listeners.append(listener)

    def symbols(self) -> list[str]:
        return list(self._tracks)

    def price(self, symbol: str) -> Decimal:
        return self._tracks[symbol].price

    def stats(self, symbol: str) -> tuple[Decimal, Decimal, Decimal]:
        """(price 24h ago, 24h high, 24h low)."""
        track = self._tracks[symbol]
        return track.open_24h, track.high, track.low

    def set(self, symbol: str, price: Decimal) -> None:
        if price <= 0:
            raise ValueError("price must be positive")
        self._move(symbol, self._round(symbol, price))

    def step(self, steps: int = 1) -> None:
        for _ in range(steps):
            for symbol, track in self._tracks.items():
                inst = self._instruments[symbol]
                factor = math.exp(track.rng.gauss(0.0, inst.volatility))
                moved = self._round(symbol, track.price * Decimal(repr(factor)))
                self._move(symbol, max(moved, inst.price_tick))

    def _round(self, symbol: str, price: Decimal) -> Decimal:
        tick = self._instruments[symbol].price_tick
        return (price / tick).quantize(Decimal(1), rounding=ROUND_HALF_UP) * tick

    def _move(self, symbol: str, price: Decimal) -> None:
        track = self._tracks[symbol]
        track.price = price
        track.high = max(track.high, price)
        track.low = min(track.low, price)
        for listener in self._listeners:
            listener(symbol, price)

    def candles(self, symbol: str, interval_ms: int, now_ms: int, count: int) -> list[Candle]:
        """``count`` candles ending with the one open at ``now_ms``, oldest first.

        The history is derived deterministically from the seed and the current price, so the
        latest close always equals the current price.
        """
        inst = self._instruments[symbol]
        tick = inst.price_tick
        last_open = now_ms - now_ms % interval_ms
        close = self._tracks[symbol].price
        scale = inst.volatility * math.sqrt(max(1.0, interval_ms / 60_000))
        result: list[Candle] = []
        for k in range(count):
            open_time = last_open - k * interval_ms
            rng = random.Random(f"{self._seed}:{symbol}:{interval_ms}:{open_time}")
            change = rng.gauss(0.0, scale)
            open_ = close / Decimal(repr(math.exp(change)))
            wick_up = Decimal(repr(1 + abs(rng.gauss(0.0, scale / 2))))
            wick_down = Decimal(repr(1 - min(0.5, abs(rng.gauss(0.0, scale / 2)))))
            high = max(open_, close) * wick_up
            low = min(open_, close) * wick_down
            volume = Decimal(repr(round(rng.uniform(50, 500) * 100_000 / float(close), 4)))
            q = self._quantize
            candle = Candle(
                open_time=open_time,
                open=q(open_, tick),
                high=q(high, tick),
                low=q(low, tick),
                close=q(close, tick),
                volume=volume,
                turnover=(volume * close).quantize(Decimal("0.0001")),
                trades=rng.randint(100, 5000),
            )
            result.append(candle)
            close = candle.open
        result.reverse()
        return result

    @staticmethod
    def _quantize(value: Decimal, tick: Decimal) -> Decimal:
        return max(tick, (value / tick).quantize(Decimal(1), rounding=ROUND_HALF_UP) * tick)
