"""What the private and public streams report, venue-neutral.

Each venue's stream dialect (``bybit/stream.py``, ``binance/stream.py``) turns its pushed
records into these; nothing outside libs/exchanges reads a venue's field names.

* ``OrderReport``: an order's state as the exchange pushed it (Bybit ``order``, Binance
  ``executionReport``), with the trade the same message carries (Binance: one trade per
  TRADE report; Bybit's ``order`` record carries none).
* ``TradeReport``: one trade on its own (Bybit ``execution``).
* ``BalanceReport``: absolute balances of the assets the message names (Bybit ``wallet``
  gives every coin; Binance ``outboundAccountPosition`` "the assets that were possibly
  changed").
* ``PriceReport``: a symbol's last price (Bybit public ``tickers.{symbol}``).
* ``StreamTerminated``: the exchange ended one account's subscription (Binance
  ``eventStreamTerminated``): its events stop until it is subscribed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from marketbot.contracts import Exchange
from marketbot.exchanges.venue import Balance, Fill, OrderState


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderReport:
    exchange: Exchange
    user_id: str
    state: OrderState
    """``fills`` holds the trade this message carries (at most one), not the order's all."""
    event_ms: int | None
    """When the exchange produced it (the trade time for a trade, else the event time)."""
    received_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeReport:
    exchange: Exchange
    user_id: str
    symbol: str
    client_order_id: str
    fill: Fill
    """``exchange_order_id`` and ``trade_id`` are always set."""
    event_ms: int | None
    received_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceReport:
    exchange: Exchange
    user_id: str
    balances: tuple[Balance, ...]
    complete: bool
    """True when the message lists every asset of the account (an asset not in it is 0)."""
    event_ms: int | None
    received_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceReport:
    exchange: Exchange
    symbol: str
    price: Decimal
    event_ms: int | None
    received_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamTerminated:
    exchange: Exchange
    user_id: str
    received_ms: int


Report = OrderReport | TradeReport | BalanceReport | PriceReport | StreamTerminated
