"""Each venue's pushed records become venue-neutral reports (libs/exchanges/reports.py).

The records are the docs' own examples: Binance user-data-stream.md "Order Update" (the
``executionReport`` at lines 79-118) and "Account Update"; Bybit websocket_private_order.mdx,
websocket_private_execution.mdx (the example at lines 95-131) and websocket_private_wallet.
mdx, with ``category`` set to spot where the example is a derivative (the dialect reads spot
only).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marketbot.contracts import Exchange, Side
from marketbot.exchanges.binance import stream as binance
from marketbot.exchanges.bybit import stream as bybit
from marketbot.exchanges.reports import (
    BalanceReport,
    OrderReport,
    PriceReport,
    StreamTerminated,
    TradeReport,
)
from marketbot.exchanges.streams import StreamEvent
from marketbot.exchanges.venue import OrderStatus

BINANCE_NEW: dict[str, Any] = {
    "e": "executionReport",
    "E": 1499405658658,
    "s": "ETHBTC",
    "c": "mUvoqJxFIILMdfAW5iGSOW",
    "S": "BUY",
    "o": "LIMIT",
    "f": "GTC",
    "q": "1.00000000",
    "p": "0.10264410",
    "P": "0.00000000",
    "F": "0.00000000",
    "g": -1,
    "C": "",
    "x": "NEW",
    "X": "NEW",
    "r": "NONE",
    "i": 4293153,
    "l": "0.00000000",
    "z": "0.00000000",
    "L": "0.00000000",
    "n": "0",
    "N": None,
    "T": 1499405658657,
    "t": -1,
    "v": 3,
    "I": 8641984,
    "w": True,
    "m": False,
    "M": False,
    "O": 1499405658657,
    "Z": "0.00000000",
    "Y": "0.00000000",
    "Q": "0.00000000",
    "W": 1499405658657,
    "V": "NONE",
}


def event(exchange: Exchange, topic: str, data: dict[str, Any]) -> StreamEvent:
    return StreamEvent(exchange, "u1", topic, data, received_ms=1_499_405_658_700)


def test_binance_execution_reports_new_trade_and_cancel():
    (new,) = binance.reports(event(Exchange.BINANCE, "executionReport", BINANCE_NEW))
    assert isinstance(new, OrderReport)
    state = new.state
    assert (state.exchange_order_id, state.client_order_id, state.symbol) == (
        "4293153",
        "mUvoqJxFIILMdfAW5iGSOW",
        "ETHBTC",
    )
    assert (state.side, state.status, state.quantity) == (Side.BUY, OrderStatus.NEW, 1)
    assert state.fills == ()
    assert new.event_ms == 1499405658657
    # A TRADE report carries its one trade (l at L, commission n in N, trade t at T); "Z
    # divided by z" is the average price (the note under the example).
    trade = {
        **BINANCE_NEW,
        "x": "TRADE",
        "X": "FILLED",
        "l": "1.00000000",
        "z": "1.00000000",
        "L": "0.10264410",
        "Z": "0.10264410",
        "n": "0.00100000",
        "N": "ETH",
        "t": 77,
        "m": True,
    }
    (filled,) = binance.reports(event(Exchange.BINANCE, "executionReport", trade))
    assert isinstance(filled, OrderReport)
    assert filled.state.status is OrderStatus.FILLED
    assert filled.state.average_price == Decimal("0.10264410")
    (fill,) = filled.state.fills
    assert (fill.quantity, fill.price, fill.fee, fill.fee_asset, fill.trade_id) == (
        Decimal(1),
        Decimal("0.10264410"),
        Decimal("0.001"),
        "ETH",
        "77",
    )
    assert fill.is_maker is True
    # On a cancel "C" is the order's own id ("the ID of the order being canceled").
    cancel = {**BINANCE_NEW, "x": "CANCELED", "X": "CANCELED", "c": "cancel-req", "C": "own"}
    (cancelled,) = binance.reports(event(Exchange.BINANCE, "executionReport", cancel))
    assert isinstance(cancelled, OrderReport)
    assert cancelled.state.client_order_id == "own"


def test_binance_account_position_and_stream_terminated():
    account = {
        "e": "outboundAccountPosition",
        "E": 1564034571105,
        "u": 1564034571073,
        "B": [{"a": "ETH", "f": "10000.000000", "l": "0.000000"}],
    }
    (report,) = binance.reports(event(Exchange.BINANCE, "outboundAccountPosition", account))
    assert isinstance(report, BalanceReport)
    assert report.complete is False  # "the assets that were possibly changed"
    assert [(b.asset, b.free, b.locked) for b in report.balances] == [
        ("ETH", Decimal(10000), Decimal(0))
    ]
    ended = {"e": "eventStreamTerminated", "E": 1728973001334}
    (terminated,) = binance.reports(event(Exchange.BINANCE, "eventStreamTerminated", ended))
    assert isinstance(terminated, StreamTerminated)


def test_bybit_order_execution_and_wallet_records():
    order = {
        "category": "spot",
        "symbol": "ETHUSDT",
        "orderId": "5cf98598-39a7-459e-97bf-76ca765ee020",
        "side": "Sell",
        "orderType": "Market",
        "price": "72.5",
        "qty": "1",
        "timeInForce": "IOC",
        "orderStatus": "Filled",
        "orderLinkId": "tp-1",
        "cumExecQty": "1",
        "cumExecValue": "75",
        "avgPrice": "75",
        "cumExecFee": "0.358635",
        "createdTime": "1672364262444",
        "updatedTime": "1672364262457",
        "rejectReason": "EC_NoError",
    }
    (report,) = bybit.reports(event(Exchange.BYBIT, "order", order))
    assert isinstance(report, OrderReport)
    assert (report.state.status, report.state.filled_quantity) == (OrderStatus.FILLED, 1)
    assert report.state.client_order_id == "tp-1"
    assert report.event_ms == 1672364262457
    assert bybit.reports(event(Exchange.BYBIT, "order", {**order, "category": "option"})) == []
    execution = {
        "category": "spot",
        "symbol": "BTCUSDT",
        "execFee": "26.3725275",
        "execId": "0ab1bdf7-4219-438b-b30a-32ec863018f7",
        "execPrice": "95900.1",
        "execQty": "0.5",
        "execType": "Trade",
        "orderId": "9aac161b-8ed6-450d-9cab-c5cc67c21784",
        "orderLinkId": "",
        "side": "Sell",
        "execTime": "1746270400353",
        "isMaker": False,
        "feeCurrency": "USDT",
    }
    (trade,) = bybit.reports(event(Exchange.BYBIT, "execution", execution))
    assert isinstance(trade, TradeReport)
    assert trade.fill.exchange_order_id == "9aac161b-8ed6-450d-9cab-c5cc67c21784"
    assert (trade.fill.quantity, trade.fill.fee, trade.fill.fee_asset) == (
        Decimal("0.5"),
        Decimal("26.3725275"),
        "USDT",
    )
    wallet = {
        "accountType": "UNIFIED",
        "coin": [{"coin": "BTC", "walletBalance": "0.00102964", "locked": "0"}],
    }
    (balances,) = bybit.reports(event(Exchange.BYBIT, "wallet", wallet))
    assert isinstance(balances, BalanceReport)
    assert balances.complete is True
    assert [(b.asset, b.free) for b in balances.balances] == [("BTC", Decimal("0.00102964"))]


def test_bybit_public_ticker_is_a_price():
    ticker = {"symbol": "BTCUSDT", "lastPrice": "21109.77", "ts": 1673853746003}
    (price,) = bybit.price_reports(event(Exchange.BYBIT, "tickers", ticker))
    assert isinstance(price, PriceReport)
    assert (price.symbol, price.price, price.event_ms) == (
        "BTCUSDT",
        Decimal("21109.77"),
        1673853746003,
    )
