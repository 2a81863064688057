"""alternative.me and CoinGecko shapes (exchange-facts.md), with settable values."""

from __future__ import annotations


async def test_fear_and_greed(local):
    await local.market_admin.set_market_data(fear_greed=72)
    body = (await local.http.get(f"{local.urls['market']}/fng/?limit=1")).json()
    row = body["data"][0]
    assert set(row) == {"value", "value_classification", "timestamp", "time_until_update"}
    assert (row["value"], row["value_classification"]) == ("72", "Greed")
    await local.market_admin.set_market_data(fear_greed=10)
    body = (await local.http.get(f"{local.urls['market']}/fng/?limit=1")).json()
    assert body["data"][0]["value_classification"] == "Extreme Fear"


async def test_global_and_markets(local):
    await local.market_admin.set_market_data(btc_dominance=61.5, changes_24h={"bitcoin": -4.2})
    base = local.urls["market"]
    body = (await local.http.get(f"{base}/api/v3/global")).json()
    assert body["data"]["market_cap_percentage"]["btc"] == 61.5
    rows = (
        await local.http.get(
            f"{base}/api/v3/coins/markets?vs_currency=usd&order=market_cap_desc&per_page=100&page=1"
        )
    ).json()
    assert len(rows) == 100
    assert rows[0]["id"] == "bitcoin"
    assert rows[0]["price_change_percentage_24h"] == -4.2
    assert [r["market_cap_rank"] for r in rows[:3]] == [1, 2, 3]
    btc = await local.bybit_admin.price("BTCUSDT")
    assert rows[0]["current_price"] == float(btc)


async def test_admin_prefix_never_collides(local):
    for base in local.urls.values():
        health = (await local.http.get(f"{base}/__admin/health")).json()
        assert health["ok"] is True


async def test_prices_step_deterministically(local):
    from marketbot.sim.instruments import default_instruments
    from marketbot.sim.prices import PriceBook

    one, two = PriceBook(default_instruments(), 5), PriceBook(default_instruments(), 5)
    one.step(10)
    two.step(10)
    assert [one.price(s) for s in one.symbols()] == [two.price(s) for s in two.symbols()]
    before = await local.binance_admin.prices()
    after = await local.binance_admin.step_prices(3)
    assert before != after
