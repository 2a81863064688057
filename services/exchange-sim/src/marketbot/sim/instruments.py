"""The simulated symbols and their trading rules, shaped like the venues publish them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

D = Decimal


@dataclass(frozen=True, slots=True)
class BybitLot:
    """Bybit spot ``lotSizeFilter`` and ``priceFilter`` (reference: market_instrument.mdx)."""

    base_precision: Decimal
    quote_precision: Decimal
    min_order_qty: Decimal
    max_order_qty: Decimal
    min_order_amt: Decimal
    max_order_amt: Decimal
    max_limit_order_qty: Decimal
    max_market_order_qty: Decimal
    tick_size: Decimal


@dataclass(frozen=True, slots=True)
class BinanceFilters:
    """Binance symbol filters (reference: filters.md)."""

    min_price: Decimal
    max_price: Decimal
    tick_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    step_size: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    max_notional: Decimal
    legacy_min_notional: bool  # publish MIN_NOTIONAL instead of NOTIONAL


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    base: str
    quote: str
    initial_price: Decimal
    volatility: float  # standard deviation of one random-walk step (log return)
    bybit_symbol_id: int
    bybit: BybitLot
    binance: BinanceFilters

    @property
    def price_tick(self) -> Decimal:
        """The finest tick either venue quotes; the simulated price lives on it."""
        return min(self.bybit.tick_size, self.binance.tick_size)


def _instrument(
    symbol: str,
    base: str,
    price: str,
    *,
    symbol_id: int,
    bybit_tick: str,
    base_precision: str,
    min_qty: str,
    max_limit_qty: str,
    max_market_qty: str,
    binance_tick: str,
    step: str,
    binance_min_qty: str,
    binance_max_qty: str,
    market_max_qty: str,
    legacy_min_notional: bool = False,
) -> Instrument:
    return Instrument(
        symbol=symbol,
        base=base,
        quote="USDT",
        initial_price=D(price),
        volatility=0.002,
        bybit_symbol_id=symbol_id,
        bybit=BybitLot(
            base_precision=D(base_precision),
            quote_precision=D("0.0000001"),
            min_order_qty=D(min_qty),
            max_order_qty=D(max_limit_qty),
            min_order_amt=D("5"),
            max_order_amt=D("8000000"),
            max_limit_order_qty=D(max_limit_qty),
            max_market_order_qty=D(max_market_qty),
            tick_size=D(bybit_tick),
        ),
        binance=BinanceFilters(
            min_price=D(binance_tick),
            max_price=D("1000000"),
            tick_size=D(binance_tick),
            min_qty=D(binance_min_qty),
            max_qty=D(binance_max_qty),
            step_size=D(step),
            market_max_qty=D(market_max_qty),
            min_notional=D("5"),
            max_notional=D("9000000"),
            legacy_min_notional=legacy_min_notional,
        ),
    )


def default_instruments() -> dict[str, Instrument]:
    items = [
        _instrument(
            "BTCUSDT",
            "BTC",
            "65000.00",
            symbol_id=9,
            bybit_tick="0.1",
            base_precision="0.000001",
            min_qty="0.000011",
            max_limit_qty="83",
            max_market_qty="41.5",
            binance_tick="0.01",
            step="0.00001",
            binance_min_qty="0.00001",
            binance_max_qty="9000",
            market_max_qty="120",
        ),
        _instrument(
            "ETHUSDT",
            "ETH",
            "3200.00",
            symbol_id=11,
            bybit_tick="0.01",
            base_precision="0.00001",
            min_qty="0.00029",
            max_limit_qty="1229",
            max_market_qty="614.5",
            binance_tick="0.01",
            step="0.0001",
            binance_min_qty="0.0001",
            binance_max_qty="9000",
            market_max_qty="2500",
        ),
        _instrument(
            "SOLUSDT",
            "SOL",
            "150.00",
            symbol_id=288,
            bybit_tick="0.01",
            base_precision="0.001",
            min_qty="0.011",
            max_limit_qty="29000",
            max_market_qty="14500",
            binance_tick="0.01",
            step="0.001",
            binance_min_qty="0.001",
            binance_max_qty="9000",
            market_max_qty="40000",
        ),
        _instrument(
            "XRPUSDT",
            "XRP",
            "0.6000",
            symbol_id=30,
            bybit_tick="0.0001",
            base_precision="0.01",
            min_qty="1.1",
            max_limit_qty="1800000",
            max_market_qty="900000",
            binance_tick="0.0001",
            step="0.1",
            binance_min_qty="0.1",
            binance_max_qty="9222449",
            market_max_qty="2000000",
            legacy_min_notional=True,
        ),
        _instrument(
            "DOGEUSDT",
            "DOGE",
            "0.15000",
            symbol_id=37,
            bybit_tick="0.00001",
            base_precision="0.1",
            min_qty="4.1",
            max_limit_qty="7700000",
            max_market_qty="3850000",
            binance_tick="0.00001",
            step="1",
            binance_min_qty="1",
            binance_max_qty="9000000",
            market_max_qty="6000000",
        ),
        _instrument(
            "ADAUSDT",
            "ADA",
            "0.4500",
            symbol_id=40,
            bybit_tick="0.0001",
            base_precision="0.01",
            min_qty="1.51",
            max_limit_qty="2800000",
            max_market_qty="1400000",
            binance_tick="0.0001",
            step="0.1",
            binance_min_qty="0.1",
            binance_max_qty="9000000",
            market_max_qty="3000000",
        ),
    ]
    return {i.symbol: i for i in items}


def decimals(step: Decimal) -> int:
    """Number of fractional digits of a step such as 0.001 (-> 3) or 1 (-> 0)."""
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def fraction_digits(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def is_multiple(value: Decimal, step: Decimal) -> bool:
    if step == 0:
        return True
    return value % step == 0


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    if step == 0:
        return value
    return (value // step) * step


def plain(value: Decimal) -> str:
    """Decimal as a plain string without exponent or trailing zeros (Bybit style)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def fixed8(value: Decimal) -> str:
    """Decimal with eight fractional digits (Binance style)."""
    return f"{value:.8f}"
