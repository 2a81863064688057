"""An independent client (ccxt) signs, places, queries and cancels against the real CLI process.

ccxt is used only here, as proof the simulator speaks the venues' protocol, not our dialect.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import ccxt


def _bybit(base: str, key: str, secret: str) -> Any:
    exchange = ccxt.bybit({"apiKey": key, "secret": secret, "enableRateLimit": False})
    exchange.urls["api"] = {name: base for name in exchange.urls["api"]}
    exchange.options["fetchMarkets"] = {"types": ["spot"]}
    exchange.has["fetchCurrencies"] = False
    return exchange


def _binance(base: str, key: str, secret: str) -> Any:
    exchange = ccxt.binance({"apiKey": key, "secret": secret, "enableRateLimit": False})
    exchange.urls["api"] = {
        name: (f"{base}/sapi/v1" if name == "sapi" else f"{base}/api/v3")
        for name in exchange.urls["api"]
    }
    exchange.options["fetchMarkets"] = {"types": ["spot"]}
    exchange.options["fetchMargins"] = False
    exchange.has["fetchCurrencies"] = False
    return exchange


async def test_ccxt_trades_on_bybit(sim):
    account = await sim.bybit_admin.create_account()
    key, secret = await sim.bybit_admin.create_api_key(account)
    await sim.bybit_admin.fund(account, "USDT", Decimal("5000"))
    exchange = _bybit(sim.bybit_url, key, secret)

    def scenario() -> dict[str, Any]:
        exchange.load_markets()
        ticker = exchange.fetch_ticker("BTC/USDT")
        price = ticker["last"] * 0.8
        order = exchange.create_order(
            "BTC/USDT", "limit", "buy", 0.001, price, {"clientOrderId": "ccxt-bybit-1"}
        )
        fetched = exchange.fetch_open_order(order["id"], "BTC/USDT")
        cancelled = exchange.cancel_order(order["id"], "BTC/USDT")
        eth = exchange.fetch_ticker("ETH/USDT")["last"]
        market = exchange.create_order("ETH/USDT", "market", "buy", 0.01, eth)
        closed = exchange.fetch_closed_order(market["id"], "ETH/USDT")
        balance = exchange.fetch_balance()
        return {
            "order": order,
            "fetched": fetched,
            "cancelled": cancelled,
            "closed": closed,
            "balance": balance,
        }

    result = await asyncio.to_thread(scenario)
    assert result["fetched"]["status"] == "open"
    assert result["fetched"]["clientOrderId"] == "ccxt-bybit-1"
    assert result["closed"]["status"] == "closed"
    assert result["closed"]["filled"] > 0
    assert result["balance"]["total"]["ETH"] > 0
    statuses = {o["client_order_id"]: o["status"] for o in await sim.bybit_admin.orders(account)}
    assert statuses["ccxt-bybit-1"] == "CANCELED"


async def test_ccxt_trades_on_binance(sim):
    account = await sim.binance_admin.create_account()
    key, secret = await sim.binance_admin.create_api_key(account)
    await sim.binance_admin.fund(account, "USDT", Decimal("5000"))
    exchange = _binance(sim.binance_url, key, secret)

    def scenario() -> dict[str, Any]:
        exchange.load_markets()
        price = exchange.fetch_ticker("ETH/USDT")["last"] * 0.8
        order = exchange.create_order(
            "ETH/USDT", "limit", "buy", 0.01, price, {"newClientOrderId": "ccxt-bn-1"}
        )
        fetched = exchange.fetch_order(order["id"], "ETH/USDT")
        opened = exchange.fetch_open_orders("ETH/USDT")
        cancelled = exchange.cancel_order(order["id"], "ETH/USDT")
        market = exchange.create_order("BTC/USDT", "market", "buy", 0.001)
        balance = exchange.fetch_balance()
        return {
            "fetched": fetched,
            "opened": opened,
            "cancelled": cancelled,
            "market": market,
            "balance": balance,
        }

    result = await asyncio.to_thread(scenario)
    assert result["fetched"]["status"] == "open"
    assert result["fetched"]["clientOrderId"] == "ccxt-bn-1"
    assert [o["id"] for o in result["opened"]] == [result["fetched"]["id"]]
    assert result["cancelled"]["status"] == "canceled"
    assert result["market"]["status"] == "closed"
    assert result["market"]["fee"]["currency"] == "BTC"
    assert result["balance"]["total"]["BTC"] > 0
