"""Market-data APIs for the decision step: alternative.me Fear & Greed and CoinGecko."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from marketbot.sim.app import AdminError, BaseApp, ServerClock
from marketbot.sim.asgi import Request, Response, json_response
from marketbot.sim.prices import PriceBook

TOP_COINS = [
    ("bitcoin", "btc", "Bitcoin", "BTCUSDT"),
    ("ethereum", "eth", "Ethereum", "ETHUSDT"),
    ("tether", "usdt", "Tether", None),
    ("ripple", "xrp", "XRP", "XRPUSDT"),
    ("binancecoin", "bnb", "BNB", None),
    ("solana", "sol", "Solana", "SOLUSDT"),
    ("usd-coin", "usdc", "USDC", None),
    ("dogecoin", "doge", "Dogecoin", "DOGEUSDT"),
    ("cardano", "ada", "Cardano", "ADAUSDT"),
    ("tron", "trx", "TRON", None),
]


def classify(value: int) -> str:
    """alternative.me's bands for the index value."""
    if value <= 24:
        return "Extreme Fear"
    if value <= 46:
        return "Fear"
    if value <= 54:
        return "Neutral"
    if value <= 75:
        return "Greed"
    return "Extreme Greed"


@dataclass(slots=True)
class Coin:
    id: str
    symbol: str
    name: str
    pair: str | None
    price: float
    market_cap: float
    change_24h: float


@dataclass(slots=True)
class MarketData:
    fear_greed: int = 55
    classification: str | None = None
    btc_dominance: float = 54.2
    eth_dominance: float = 12.1
    market_cap_change_24h: float = 1.25
    coins: list[Coin] = field(default_factory=list)


class MarketDataApp(BaseApp):
    venue = "market"

    def __init__(self, *, prices: PriceBook, clock: ServerClock, seed: int) -> None:
        super().__init__(prices=prices, clock=clock, seed=seed)
        self.seed = seed
        self.data = self._initial()

    def _initial(self) -> MarketData:
        rng = random.Random(f"{self.seed}:coingecko")
        coins = []
        cap = 1.3e12
        for rank in range(100):
            if rank < len(TOP_COINS):
                coin_id, symbol, name, pair = TOP_COINS[rank]
            else:
                coin_id, symbol, name, pair = (
                    f"simcoin-{rank + 1}",
                    f"sim{rank + 1}",
                    f"SimCoin {rank + 1}",
                    None,
                )
            price = float(self.prices.price(pair)) if pair else round(rng.uniform(0.05, 80), 4)
            if symbol in ("usdt", "usdc"):
                price = 1.0
            coins.append(
                Coin(coin_id, symbol, name, pair, price, cap, round(rng.gauss(0.0, 3.0), 5))
            )
            cap *= 0.93 if rank else 0.3
        return MarketData(coins=coins)

    def server_error(self, status: int) -> Response:
        return json_response(status, {"error": "Internal Server Error"})

    def handle(self, request: Request) -> Response:
        if request.method != "GET":
            return Response(404, b"", content_type=b"text/plain")
        path = request.path
        if path in ("/fng/", "/fng"):
            return json_response(200, self.fng(request.query_params()))
        if path == "/api/v3/global":
            return json_response(200, self.global_())
        if path == "/api/v3/coins/markets":
            params = request.query_params()
            if not params.get("vs_currency"):
                return json_response(400, {"error": "Missing parameter vs_currency"})
            return json_response(200, self.coins_markets(params))
        if path == "/api/v3/ping":
            return json_response(200, {"gecko_says": "(V3) To the Moon!"})
        return Response(404, b"", content_type=b"text/plain")

    def fng(self, params: dict[str, str]) -> dict[str, Any]:
        now_s = self.clock.now_ms() // 1000
        day_start = now_s - now_s % 86_400
        try:
            limit = int(params.get("limit") or 1)
        except ValueError:
            limit = 1
        limit = max(1, min(limit, 100))
        rows = []
        for day in range(limit):
            value = (
                self.data.fear_greed if day == 0 else max(0, min(100, self.data.fear_greed - day))
            )
            label = (
                self.data.classification
                if day == 0 and self.data.classification
                else classify(value)
            )
            row = {
                "value": str(value),
                "value_classification": label,
                "timestamp": str(day_start - day * 86_400),
            }
            if day == 0:
                row["time_until_update"] = str(day_start + 86_400 - now_s)
            rows.append(row)
        return {"name": "Fear and Greed Index", "data": rows, "metadata": {"error": None}}

    def global_(self) -> dict[str, Any]:
        total_cap = self.data.coins[0].market_cap / (self.data.btc_dominance / 100)
        return {
            "data": {
                "active_cryptocurrencies": 17_380,
                "upcoming_icos": 0,
                "ongoing_icos": 49,
                "ended_icos": 3376,
                "markets": 1_254,
                "total_market_cap": {"usd": total_cap, "btc": total_cap / self.data.coins[0].price},
                "total_volume": {
                    "usd": total_cap * 0.04,
                    "btc": total_cap * 0.04 / self.data.coins[0].price,
                },
                "market_cap_percentage": {
                    "btc": self.data.btc_dominance,
                    "eth": self.data.eth_dominance,
                },
                "market_cap_change_percentage_24h_usd": self.data.market_cap_change_24h,
                "updated_at": self.clock.now_ms() // 1000,
            }
        }

    def coins_markets(self, params: dict[str, str]) -> list[dict[str, Any]]:
        try:
            per_page = max(1, min(int(params.get("per_page") or 100), 250))
            page = max(1, int(params.get("page") or 1))
        except ValueError:
            per_page, page = 100, 1
        ids = {i for i in params.get("ids", "").split(",") if i}
        coins = [c for c in self.data.coins if not ids or c.id in ids]
        chosen = coins[(page - 1) * per_page : page * per_page]
        rows = []
        for rank, coin in enumerate(chosen, start=(page - 1) * per_page + 1):
            price = float(self.prices.price(coin.pair)) if coin.pair else coin.price
            change = coin.change_24h
            before = price / (1 + change / 100)
            rows.append(
                {
                    "id": coin.id,
                    "symbol": coin.symbol,
                    "name": coin.name,
                    "image": f"https://coin-images.coingecko.com/coins/images/1/large/{coin.id}.png",
                    "current_price": price,
                    "market_cap": round(coin.market_cap),
                    "market_cap_rank": rank,
                    "fully_diluted_valuation": round(coin.market_cap * 1.05),
                    "total_volume": round(coin.market_cap * 0.04),
                    "high_24h": max(price, before) * 1.01,
                    "low_24h": min(price, before) * 0.99,
                    "price_change_24h": price - before,
                    "price_change_percentage_24h": change,
                    "market_cap_change_24h": coin.market_cap * change / 100,
                    "market_cap_change_percentage_24h": change,
                    "circulating_supply": coin.market_cap / price,
                    "total_supply": coin.market_cap / price,
                    "max_supply": None,
                    "ath": price * 1.5,
                    "ath_change_percentage": -33.3,
                    "ath_date": "2024-03-14T07:10:36.635Z",
                    "atl": price * 0.01,
                    "atl_change_percentage": 9900.0,
                    "atl_date": "2015-10-20T00:00:00.000Z",
                    "roi": None,
                    "last_updated": "2026-01-01T00:00:00.000Z",
                }
            )
        return rows

    def admin(
        self, method: str, route: str, request: Request, body: dict[str, Any]
    ) -> dict[str, Any] | list[Any] | None:
        match method, route:
            case "GET", "market-data":
                return self._snapshot()
            case "POST", "market-data":
                if body.get("fear_greed") is not None:
                    value = int(body["fear_greed"])
                    if not 0 <= value <= 100:
                        raise AdminError("fear_greed must be within [0, 100]")
                    self.data.fear_greed = value
                    self.data.classification = body.get("classification")
                elif body.get("classification") is not None:
                    self.data.classification = str(body["classification"])
                if body.get("btc_dominance") is not None:
                    self.data.btc_dominance = float(body["btc_dominance"])
                if body.get("eth_dominance") is not None:
                    self.data.eth_dominance = float(body["eth_dominance"])
                if body.get("market_cap_change_24h") is not None:
                    self.data.market_cap_change_24h = float(body["market_cap_change_24h"])
                changes = body.get("changes_24h") or {}
                by_key = {c.id: c for c in self.data.coins} | {c.symbol: c for c in self.data.coins}
                for name, change in changes.items():
                    coin = by_key.get(str(name).lower()) or by_key.get(str(name))
                    if coin is None:
                        raise AdminError(f"unknown coin {name}", 404)
                    coin.change_24h = float(change)
                if body.get("all_changes_24h") is not None:
                    for coin in self.data.coins:
                        coin.change_24h = float(body["all_changes_24h"])
                return self._snapshot()
            case "POST", "reset":
                self.faults.clear()
                self.data = self._initial()
                return {"ok": True}
            case "POST", "limits":
                return {"enabled": False}
        return super().admin(method, route, request, body)

    def _snapshot(self) -> dict[str, Any]:
        return {
            "fear_greed": self.data.fear_greed,
            "classification": self.data.classification or classify(self.data.fear_greed),
            "btc_dominance": self.data.btc_dominance,
            "eth_dominance": self.data.eth_dominance,
            "market_cap_change_24h": self.data.market_cap_change_24h,
            "changes_24h": {c.id: c.change_24h for c in self.data.coins},
        }
