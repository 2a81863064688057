"""Binance Spot REST as reference/binance-spot/ (rest-api, errors, filters) describes it."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from hashlib import sha256
from typing import Any
from urllib.parse import parse_qsl

import orjson

from marketbot.sim.app import ExchangeApp, ServerClock
from marketbot.sim.asgi import Request, Response
from marketbot.sim.binance_ws import BinanceUserDataSession
from marketbot.sim.engine import ZERO, Account, ApiKey, Exchange, Order, OrderList, Status
from marketbot.sim.instruments import Instrument, fixed8, floor_to, fraction_digits
from marketbot.sim.limits import Ban, FixedWindow
from marketbot.sim.prices import INTERVAL_MS, PriceBook

WEIGHT_LIMIT = 6000
ORDERS_10S = 100
ORDERS_1D = 200_000
BAN_BASE_SECONDS = 120  # "from 2 minutes to 3 days"
BAN_MAX_SECONDS = 3 * 86_400
VIOLATIONS_BEFORE_BAN = 3
CLIENT_ID = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
API_KEY = re.compile(r"^[A-Za-z0-9]{64}$")
ORDER_TYPES = (
    "LIMIT",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
    "LIMIT_MAKER",
)
LIMIT_KINDS = {"LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"}
STOP_KINDS = {"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"}
STATUS_NAMES = {
    Status.NEW: "NEW",
    Status.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    Status.FILLED: "FILLED",
    Status.CANCELED: "CANCELED",
    Status.REJECTED: "REJECTED",
    Status.EXPIRED: "EXPIRED",
    Status.UNTRIGGERED: "NEW",
    Status.TRIGGERED: "NEW",  # Binance names no such state: working until it fills
    Status.DEACTIVATED: "EXPIRED",
}
HTTP_FOR_CODE = {-2014: 401, -2015: 401}


class BinanceError(Exception):
    def __init__(self, code: int, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or HTTP_FOR_CODE.get(code, 400)


def mandatory(name: str) -> BinanceError:
    return BinanceError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def rejected(message: str) -> BinanceError:
    return BinanceError(-2010, message)


def filter_failure(name: str) -> BinanceError:
    return BinanceError(-1013, f"Filter failure: {name}")


INVALID_KEY = "Invalid API-key, IP, or permissions for action."
OUTSIDE_WINDOW = "Timestamp for this request is outside of the recvWindow."
AHEAD = "Timestamp for this request was 1000ms ahead of the server's time."

Handler = Callable[[dict[str, str], Account | None, ApiKey | None], Any]


class Route:
    __slots__ = ("handler", "order_count", "security", "weight")

    def __init__(
        self,
        handler: Handler,
        weight: Callable[[dict[str, str]], int],
        security: str,
        order_count: int = 0,
    ) -> None:
        self.handler = handler
        self.weight = weight
        self.security = security  # NONE | TRADE | USER_DATA
        self.order_count = order_count


def fixed(value: int) -> Callable[[dict[str, str]], int]:
    return lambda _params: value


class BinanceApp(ExchangeApp):
    venue = "binance"
    api_key_header = b"x-mbx-apikey"
    key_length = 64
    secret_length = 64
    # web-socket-api.md: "The WebSocket server will send a ping frame every 20 seconds" and
    # disconnects "if [it] does not receive a pong frame back ... within a minute".
    ws_ping_interval_s: float | None = 20.0
    ws_ping_timeout_s: float | None = 60.0

    def __init__(
        self,
        *,
        instruments: dict[str, Instrument],
        prices: PriceBook,
        clock: ServerClock,
        seed: int,
        fee_rate: Decimal,
    ) -> None:
        exchange = Exchange(
            instruments=instruments,
            prices=prices,
            now_ms=clock.now_ms,
            fee_rate=fee_rate,
            order_id_start=1_000_001,
            uid_start=354_937_868,
        )
        super().__init__(exchange=exchange, prices=prices, clock=clock, seed=seed)
        self.instruments = instruments
        self.stream_routes["/ws-api/v3"] = lambda c: BinanceUserDataSession(c, self)
        self.ban_base_seconds = BAN_BASE_SECONDS
        self.weight_limit = WEIGHT_LIMIT
        self.orders_10s = ORDERS_10S
        self.orders_1d = ORDERS_1D
        self.reset_limits()

        def by_symbol(one: int, many: int) -> Callable[[dict[str, str]], int]:
            return lambda params: one if params.get("symbol") else many

        self.routes: dict[tuple[str, str], Route] = {
            ("GET", "/api/v3/ping"): Route(self.ping, fixed(1), "NONE"),
            ("GET", "/api/v3/time"): Route(self.time, fixed(1), "NONE"),
            ("GET", "/api/v3/exchangeInfo"): Route(self.exchange_info, fixed(20), "NONE"),
            ("GET", "/api/v3/klines"): Route(self.klines, fixed(2), "NONE"),
            ("GET", "/api/v3/ticker/price"): Route(self.ticker_price, by_symbol(2, 4), "NONE"),
            ("GET", "/api/v3/ticker/24hr"): Route(self.ticker_24hr, by_symbol(2, 80), "NONE"),
            ("GET", "/api/v3/ticker/bookTicker"): Route(self.book_ticker, by_symbol(2, 4), "NONE"),
            ("POST", "/api/v3/order"): Route(self.order_create, fixed(1), "TRADE", 1),
            # rest-api.md "Test new order": weight 1, 20 with computeCommissionRates.
            ("POST", "/api/v3/order/test"): Route(self.order_test, _test_weight, "TRADE"),
            # rest-api.md "New OCO - Deprecated": weight 1, unfilled order count 2.
            ("POST", "/api/v3/order/oco"): Route(self.oco_legacy_create, fixed(1), "TRADE", 2),
            # rest-api.md "Order book": weight by limit.
            ("GET", "/api/v3/depth"): Route(self.depth, _depth_weight, "NONE"),
            # rest-api.md "Account trade list": weight 20, 5 with orderId.
            ("GET", "/api/v3/myTrades"): Route(self.my_trades, _my_trades_weight, "USER_DATA"),
            ("DELETE", "/api/v3/order"): Route(self.order_cancel, fixed(1), "TRADE"),
            ("GET", "/api/v3/order"): Route(self.order_query, fixed(4), "USER_DATA"),
            ("GET", "/api/v3/openOrders"): Route(self.open_orders, by_symbol(6, 80), "USER_DATA"),
            ("GET", "/api/v3/allOrders"): Route(self.all_orders, fixed(20), "USER_DATA"),
            ("POST", "/api/v3/orderList/oco"): Route(self.oco_create, fixed(1), "TRADE", 2),
            ("DELETE", "/api/v3/orderList"): Route(self.order_list_cancel, fixed(1), "TRADE"),
            ("GET", "/api/v3/orderList"): Route(self.order_list_query, fixed(4), "USER_DATA"),
            # rest-api.md "Query Open Order lists": weight 6, recvWindow and timestamp only.
            ("GET", "/api/v3/openOrderList"): Route(self.open_order_lists, fixed(6), "USER_DATA"),
            ("GET", "/api/v3/account"): Route(self.account, fixed(20), "USER_DATA"),
            ("GET", "/api/v3/rateLimit/order"): Route(self.order_rate, fixed(40), "USER_DATA"),
            ("GET", "/sapi/v1/account/apiRestrictions"): Route(
                self.api_restrictions, fixed(1), "USER_DATA"
            ),
        }

    # limits ------------------------------------------------------------------------------

    def stream_settings(self) -> dict[str, Any]:
        # web-socket-api.md: "A single connection to the API is only valid for 24 hours";
        # "There is a limit of 300 connections per attempt every 5 minutes" per IP address.
        return {"lifetime_s": 86_400.0, "scan_s": 30.0, "connection_limit": (300, 300.0)}

    def reset_limits(self) -> None:
        self.streams.reset_limits()
        self.weights = FixedWindow(60_000)
        self.violations = FixedWindow(60_000)
        self.orders_window_10s = FixedWindow(10_000)
        self.orders_window_1d = FixedWindow(86_400_000)
        self.bans: dict[str, Ban] = {}
        self.offences: dict[str, int] = {}

    def configure_limits(self, body: dict[str, Any]) -> dict[str, Any]:
        if "enabled" in body:
            self.limits_enabled = bool(body["enabled"])
        if body.get("ban_seconds") is not None:
            self.ban_base_seconds = int(body["ban_seconds"])
        if body.get("weight_limit") is not None:
            self.weight_limit = int(body["weight_limit"])
        if body.get("orders_10s") is not None:
            self.orders_10s = int(body["orders_10s"])
        if body.get("orders_1d") is not None:
            self.orders_1d = int(body["orders_1d"])
        if body.get("clear", True):
            self.reset_limits()
        return {
            "enabled": self.limits_enabled,
            "ban_seconds": self.ban_base_seconds,
            "weight_limit": self.weight_limit,
            "orders_10s": self.orders_10s,
            "orders_1d": self.orders_1d,
        }

    def rate_limits(self) -> list[dict[str, Any]]:
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.weight_limit,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "SECOND",
                "intervalNum": 10,
                "limit": self.orders_10s,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "DAY",
                "intervalNum": 1,
                "limit": self.orders_1d,
            },
            {
                "rateLimitType": "RAW_REQUESTS",
                "interval": "MINUTE",
                "intervalNum": 5,
                "limit": 61000,
            },
        ]

    def _weigh(self, ip: str, weight: int, now: int) -> tuple[Response | None, int]:
        """Count the request's weight; answer 429 / 418 when over the limit."""
        ban = self.bans.get(ip)
        if ban is not None and ban.until_ms > now:
            used = self.weights.used(ip, now)
            return self._banned(ban, now), used
        used = self.weights.add(ip, now, weight)
        if not self.limits_enabled or used <= self.weight_limit:
            return None, used
        strikes = self.violations.add(ip, now, 1)
        if strikes > VIOLATIONS_BEFORE_BAN:
            offences = self.offences.get(ip, 0) + 1
            self.offences[ip] = offences
            seconds = min(BAN_MAX_SECONDS, self.ban_base_seconds * 2 ** (offences - 1))
            ban = Ban(until_ms=now + seconds * 1000, offences=offences)
            self.bans[ip] = ban
            return self._banned(ban, now), used
        message = (
            f"Too much request weight used; current limit is {self.weight_limit} request weight "
            "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
        )
        retry = self.weights.seconds_left(now)
        return self._error_response(
            BinanceError(-1003, message, 429), [(b"retry-after", str(retry).encode())]
        ), used

    def _banned(self, ban: Ban, now: int) -> Response:
        message = (
            f"Way too much request weight used; IP banned until {ban.until_ms}. "
            "Please use WebSocket Streams for live updates to avoid bans."
        )
        retry = max(1, -(-(ban.until_ms - now) // 1000))
        return self._error_response(
            BinanceError(-1003, message, 418), [(b"retry-after", str(retry).encode())]
        )

    # dispatch ----------------------------------------------------------------------------

    def _error_response(
        self, exc: BinanceError, headers: list[tuple[bytes, bytes]] | None = None
    ) -> Response:
        return Response(
            exc.http_status, orjson.dumps({"code": exc.code, "msg": exc.message}), headers
        )

    def server_error(self, status: int) -> Response:
        return self._error_response(
            BinanceError(
                -1001, "Internal error; unable to process your request. Please try again.", status
            )
        )

    def timeout_error(self) -> Response:
        # -1007 TIMEOUT: "Send status unknown; execution status unknown" (errors.md), with a
        # 5XX: "the execution status is UNKNOWN and could have been a success" (rest-api.md)
        return self._error_response(
            BinanceError(
                -1007,
                "Timeout waiting for response from backend server. "
                "Send status unknown; execution status unknown.",
                504,
            )
        )

    def handle(self, request: Request) -> Response:
        route = self.routes.get((request.method, request.path))
        if route is None:
            return _not_found(request)
        # the gateway's view: weight and the signed timestamp as of arrival
        now = request.received_ms or self.clock.now_ms()
        query = request.query.decode("latin-1")
        body = request.body.decode("latin-1") if request.method != "GET" else ""
        params = dict(parse_qsl(body, keep_blank_values=True)) if body else {}
        if query:
            params.update(parse_qsl(query, keep_blank_values=True))
        weight = route.weight(params)
        sapi = request.path.startswith("/sapi/")
        limited, used = (None, 0) if sapi else self._weigh(request.client_ip, weight, now)
        headers = [] if sapi else [(b"x-mbx-used-weight-1m", str(used).encode())]
        if limited is not None:
            limited.headers.extend(headers)
            return limited
        account: Account | None = None
        key: ApiKey | None = None
        try:
            if route.security != "NONE":
                key, account = self._authenticate(request, params, query, body, now, route)
            if route.order_count and account is not None:
                headers.extend(self._count_orders(account, route.order_count, now))
            result = route.handler(params, account, key)
        except BinanceError as exc:
            if isinstance(exc, _TooManyOrdersError):
                headers.append((b"retry-after", str(exc.retry_after).encode()))
            return self._error_response(exc, headers)
        return Response(200, orjson.dumps(result), headers)

    def _count_orders(self, account: Account, count: int, now: int) -> list[tuple[bytes, bytes]]:
        in_10s = self.orders_window_10s.add(account.uid, now, count)
        in_1d = self.orders_window_1d.add(account.uid, now, count)
        if self.limits_enabled:
            for used, limit, window, text in (
                (in_10s, self.orders_10s, self.orders_window_10s, "10 SECOND"),
                (in_1d, self.orders_1d, self.orders_window_1d, "1 DAY"),
            ):
                if used > limit:
                    retry = window.seconds_left(now)
                    raise _TooManyOrdersError(
                        f"Too many new orders; current limit is {limit} orders per {text}.", retry
                    )
        return [
            (b"x-mbx-order-count-10s", str(in_10s).encode()),
            (b"x-mbx-order-count-1d", str(in_1d).encode()),
        ]

    def _authenticate(
        self,
        request: Request,
        params: dict[str, str],
        query: str,
        body: str,
        now: int,
        route: Route,
    ) -> tuple[ApiKey, Account]:
        api_key = request.header(b"x-mbx-apikey")
        if not api_key or not API_KEY.match(api_key):
            raise BinanceError(-2014, "API-key format invalid.")
        timestamp = params.get("timestamp")
        if not timestamp:
            raise mandatory("timestamp")
        signature = params.get("signature")
        if not signature:
            raise mandatory("signature")
        try:
            ts = int(timestamp)
            recv_window = Decimal(params.get("recvWindow") or "5000")
        except (ValueError, InvalidOperation):
            raise mandatory("timestamp") from None
        if recv_window > 60000 or recv_window <= 0:
            raise BinanceError(-1130, "Data sent for parameter 'recvWindow' is not valid.")
        ts_ms = Decimal(ts) / 1000 if ts > 10**14 else Decimal(ts)  # microseconds or ms
        if ts_ms >= now + 1000:
            raise BinanceError(-1021, AHEAD)
        if now - ts_ms > recv_window:
            raise BinanceError(-1021, OUTSIDE_WINDOW)
        key = self.exchange.keys.get(api_key)
        if key is None:
            raise BinanceError(-2015, INVALID_KEY)
        payload = _without_signature(query) + _without_signature(body)
        expected = hmac.new(key.secret_bytes, payload.encode("latin-1"), sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        if not key.allows_ip(request.client_ip):
            raise BinanceError(-2015, INVALID_KEY)
        if key.expires_at_ms is not None and key.expires_at_ms <= now:
            raise BinanceError(-2015, INVALID_KEY)
        if route.security == "TRADE" and not key.trade:
            raise BinanceError(-2015, INVALID_KEY)
        if route.security == "USER_DATA" and not key.read:
            raise BinanceError(-2015, INVALID_KEY)
        return key, self.exchange.accounts[key.account_id]

    # market data -------------------------------------------------------------------------

    def ping(self, params: dict[str, str], account: Account | None, key: ApiKey | None) -> Any:
        return {}

    def time(self, params: dict[str, str], account: Account | None, key: ApiKey | None) -> Any:
        return {"serverTime": self.clock.now_ms()}

    def _symbols(self, params: dict[str, str]) -> list[Instrument]:
        symbol = params.get("symbol")
        symbols = params.get("symbols")
        if symbol:
            inst = self.instruments.get(symbol)
            if inst is None:
                raise BinanceError(-1121, "Invalid symbol.")
            return [inst]
        if symbols:
            try:
                names = orjson.loads(symbols)
            except orjson.JSONDecodeError:
                raise mandatory("symbols") from None
            result = []
            for name in names:
                inst = self.instruments.get(str(name))
                if inst is None:
                    raise BinanceError(-1121, "Invalid symbol.")
                result.append(inst)
            return result
        return list(self.instruments.values())

    def exchange_info(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        return {
            "timezone": "UTC",
            "serverTime": self.clock.now_ms(),
            "rateLimits": self.rate_limits(),
            "exchangeFilters": [],
            "symbols": [self._symbol_info(inst) for inst in self._symbols(params)],
        }

    @staticmethod
    def _symbol_info(inst: Instrument) -> dict[str, Any]:
        f = inst.binance
        if f.legacy_min_notional:
            notional: dict[str, Any] = {
                "filterType": "MIN_NOTIONAL",
                "minNotional": fixed8(f.min_notional),
                "applyToMarket": True,
                "avgPriceMins": 5,
            }
        else:
            notional = {
                "filterType": "NOTIONAL",
                "minNotional": fixed8(f.min_notional),
                "applyMinToMarket": True,
                "maxNotional": fixed8(f.max_notional),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            }
        return {
            "symbol": inst.symbol,
            "status": "TRADING",
            "baseAsset": inst.base,
            "baseAssetPrecision": 8,
            "quoteAsset": inst.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": [
                "LIMIT",
                "LIMIT_MAKER",
                "MARKET",
                "STOP_LOSS",
                "STOP_LOSS_LIMIT",
                "TAKE_PROFIT",
                "TAKE_PROFIT_LIMIT",
            ],
            "icebergAllowed": False,
            "ocoAllowed": True,
            "otoAllowed": False,
            "opoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "amendAllowed": False,
            "pegInstructionsAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fixed8(f.min_price),
                    "maxPrice": fixed8(f.max_price),
                    "tickSize": fixed8(f.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": fixed8(f.min_qty),
                    "maxQty": fixed8(f.max_qty),
                    "stepSize": fixed8(f.step_size),
                },
                notional,
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": fixed8(ZERO),
                    "maxQty": fixed8(f.market_max_qty),
                    "stepSize": fixed8(ZERO),
                },
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "NONE",
            "allowedSelfTradePreventionModes": ["NONE"],
        }

    def klines(self, params: dict[str, str], account: Account | None, key: ApiKey | None) -> Any:
        symbol = params.get("symbol")
        if not symbol:
            raise mandatory("symbol")
        inst = self.instruments.get(symbol)
        if inst is None:
            raise BinanceError(-1121, "Invalid symbol.")
        interval = INTERVAL_MS.get(params.get("interval", ""))
        if interval is None:
            raise BinanceError(-1120, "Invalid interval.")
        try:
            limit = int(params.get("limit") or 500)
            now = self.clock.now_ms()
            end = min(int(params.get("endTime") or now), now)
            start = int(params.get("startTime") or 0)
        except ValueError:
            raise mandatory("limit") from None
        limit = max(1, min(limit, 1000))
        if start and not params.get("endTime"):
            count = min(limit, max(1, (end - start) // interval + 1))
            candles = self.prices.candles(
                inst.symbol, interval, start + (count - 1) * interval, count
            )
        else:
            candles = self.prices.candles(inst.symbol, interval, end, limit)
        return [
            [
                c.open_time,
                fixed8(c.open),
                fixed8(c.high),
                fixed8(c.low),
                fixed8(c.close),
                fixed8(c.volume),
                c.open_time + interval - 1,
                fixed8(c.turnover),
                c.trades,
                fixed8(c.volume / 2),
                fixed8(c.turnover / 2),
                "0",
            ]
            for c in candles
            if c.open_time >= start
        ]

    def ticker_price(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        rows = [
            {"symbol": i.symbol, "price": fixed8(self.prices.price(i.symbol))}
            for i in self._symbols(params)
        ]
        return rows[0] if params.get("symbol") else rows

    def book_ticker(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        rows = []
        for inst in self._symbols(params):
            price = self.prices.price(inst.symbol)
            tick = inst.binance.tick_size
            rows.append(
                {
                    "symbol": inst.symbol,
                    "bidPrice": fixed8(price - tick),
                    "bidQty": "31.21000000",
                    "askPrice": fixed8(price + tick),
                    "askQty": "40.66000000",
                }
            )
        return rows[0] if params.get("symbol") else rows

    def ticker_24hr(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        now = self.clock.now_ms()
        rows = []
        for inst in self._symbols(params):
            price = self.prices.price(inst.symbol)
            open_24h, high, low = self.prices.stats(inst.symbol)
            tick = inst.binance.tick_size
            change = price - open_24h
            volume = (Decimal("250000000") / price).quantize(Decimal("0.00001"))
            rows.append(
                {
                    "symbol": inst.symbol,
                    "priceChange": fixed8(change),
                    "priceChangePercent": f"{change / open_24h * 100:.3f}",
                    "weightedAvgPrice": fixed8((open_24h + price) / 2),
                    "prevClosePrice": fixed8(open_24h),
                    "lastPrice": fixed8(price),
                    "lastQty": "0.01000000",
                    "bidPrice": fixed8(price - tick),
                    "bidQty": "31.21000000",
                    "askPrice": fixed8(price + tick),
                    "askQty": "40.66000000",
                    "openPrice": fixed8(open_24h),
                    "highPrice": fixed8(high),
                    "lowPrice": fixed8(low),
                    "volume": fixed8(volume),
                    "quoteVolume": fixed8(volume * price),
                    "openTime": now - 86_400_000,
                    "closeTime": now,
                    "firstId": 28385,
                    "lastId": 28460,
                    "count": 76,
                }
            )
        return rows[0] if params.get("symbol") else rows

    # trading -----------------------------------------------------------------------------

    @staticmethod
    def _decimal(params: dict[str, str], name: str, *, required: bool) -> Decimal | None:
        raw = params.get(name)
        if raw is None or raw == "":
            if required:
                raise mandatory(name)
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise mandatory(name) from None
        if not value.is_finite() or value < 0:
            raise mandatory(name)
        if fraction_digits(value) > 8:
            raise BinanceError(-1111, f"Parameter '{name}' has too much precision.")
        return value

    def _instrument(self, params: dict[str, str]) -> Instrument:
        symbol = params.get("symbol")
        if not symbol:
            raise mandatory("symbol")
        inst = self.instruments.get(symbol)
        if inst is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return inst

    @staticmethod
    def _check_price(inst: Instrument, price: Decimal) -> None:
        f = inst.binance
        if (
            (f.min_price and price < f.min_price)
            or (f.max_price and price > f.max_price)
            or (f.tick_size and price % f.tick_size)
        ):
            raise filter_failure("PRICE_FILTER")

    @staticmethod
    def _check_lot(inst: Instrument, qty: Decimal, market: bool) -> None:
        f = inst.binance
        if qty < f.min_qty or qty > f.max_qty or qty % f.step_size:
            raise filter_failure("LOT_SIZE")
        if market and qty > f.market_max_qty:
            raise filter_failure("MARKET_LOT_SIZE")

    @staticmethod
    def _check_notional(inst: Instrument, notional: Decimal, market: bool) -> None:
        f = inst.binance
        if f.legacy_min_notional:
            if notional < f.min_notional:
                raise filter_failure("MIN_NOTIONAL")
            return
        if notional < f.min_notional or (not market and notional > f.max_notional):
            raise filter_failure("NOTIONAL")

    def _client_id(
        self, account: Account, params: dict[str, str], name: str, *, engine: bool = True
    ) -> str:
        """``engine=False`` (``/api/v3/order/test``): the matching engine's duplicate check
        (-2010) is not reached, only the parameter rule."""
        client_id = params.get(name) or ""
        if client_id and not CLIENT_ID.match(client_id):
            raise BinanceError(
                -1100,
                f"Illegal characters found in parameter '{name}'; "
                "legal range is '^[a-zA-Z0-9-_]{1,36}$'.",
            )
        if (
            engine
            and client_id
            and self.exchange.open_with_client_id(account.account_id, client_id)
        ):
            raise rejected("Duplicate order sent.")
        return client_id or _generated_client_id(self.exchange.next_order_id())

    def order_create(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        assert account is not None
        inst = self._instrument(params)
        side = params.get("side")
        if not side:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        order_type = params.get("type")
        if not order_type:
            raise mandatory("type")
        if order_type not in ORDER_TYPES:
            raise BinanceError(-1116, "Invalid orderType.")
        order = self._build(params, account, inst, side, order_type, prefix="")
        current = self.prices.price(inst.symbol)
        if order.type == "LIMIT_MAKER" and self.exchange._crosses(order, current):
            raise rejected("Order would immediately match and take.")
        if order.trigger_dir and not _trigger_ahead(order, current):
            raise rejected("Order would trigger immediately.")
        if not self.exchange.can_afford(order, current, inst.binance.step_size):
            raise rejected("Account has insufficient balance for requested action.")
        self.exchange.accept(order, inst.binance.step_size)
        resp_type = params.get("newOrderRespType") or (
            "FULL" if order_type in ("MARKET", "LIMIT") else "ACK"
        )
        return self._order_response(order, resp_type)

    def _build(
        self,
        params: dict[str, str],
        account: Account,
        inst: Instrument,
        side: str,
        order_type: str,
        *,
        prefix: str,
        quantity: Decimal | None = None,
        client_id_name: str = "newClientOrderId",
        engine: bool = True,
    ) -> Order:
        def p(name: str) -> str:
            return prefix + name[0].upper() + name[1:] if prefix else name

        market_kind = order_type in ("MARKET", "STOP_LOSS", "TAKE_PROFIT")
        tif = params.get(p("timeInForce")) or ""
        if order_type in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
            if not tif:
                raise mandatory(p("timeInForce"))
            if tif not in ("GTC", "IOC", "FOK"):
                raise BinanceError(-1115, "Invalid timeInForce.")
        qty = (
            quantity if quantity is not None else self._decimal(params, "quantity", required=False)
        )
        quote_qty = ZERO
        if order_type == "MARKET":
            quote = self._decimal(params, "quoteOrderQty", required=False)
            if qty is None and quote is None:
                raise BinanceError(
                    -1102,
                    "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
                )
            if qty is None and quote is not None:
                quote_qty = quote
        elif qty is None:
            raise mandatory("quantity")
        price = ZERO
        if order_type in LIMIT_KINDS:
            limit_price = self._decimal(params, p("price"), required=True)
            assert limit_price is not None
            self._check_price(inst, limit_price)
            price = limit_price
        stop_price = ZERO
        if order_type in STOP_KINDS:
            stop = self._decimal(params, p("stopPrice"), required=True)
            assert stop is not None
            self._check_price(inst, stop)
            stop_price = stop
        current = self.prices.price(inst.symbol)
        if qty is not None:
            self._check_lot(inst, qty, market_kind)
            reference = price if price else (stop_price if stop_price else current)
            self._check_notional(inst, qty * reference, market_kind)
        else:
            self._check_notional(inst, quote_qty, True)
            if floor_to(quote_qty / current, inst.binance.step_size) < inst.binance.min_qty:
                raise filter_failure("LOT_SIZE")
        client_id = self._client_id(
            account, params, p(client_id_name) if prefix else client_id_name, engine=engine
        )
        trigger_dir = 0
        if stop_price:
            is_stop_loss = order_type.startswith("STOP_LOSS")
            # STOP_LOSS BUY and TAKE_PROFIT SELL trigger above the market; the others below.
            above = (side == "BUY") == is_stop_loss
            trigger_dir = 1 if above else -1
        return Order(
            account_id=account.account_id,
            order_id=self.exchange.next_order_id(),
            client_id=client_id,
            symbol=inst.symbol,
            side=side,
            type=order_type,
            market=market_kind,
            qty=qty or ZERO,
            quote_qty=quote_qty,
            price=price,
            stop_price=stop_price,
            trigger_dir=trigger_dir,
            time_in_force=tif if order_type != "MARKET" else "GTC",
            created_ms=self.clock.now_ms(),
        )

    def _order_response(self, order: Order, resp_type: str) -> dict[str, Any]:
        base: dict[str, Any] = {
            "symbol": order.symbol,
            "orderId": int(order.order_id),
            "orderListId": order.list_id,
            "clientOrderId": order.client_id,
            "transactTime": order.created_ms,
        }
        if resp_type == "ACK":
            return base
        base.update(self._result_fields(order))
        if resp_type == "FULL":
            base["fills"] = [
                {
                    "price": fixed8(f.price),
                    "qty": fixed8(f.qty),
                    "commission": fixed8(f.commission),
                    "commissionAsset": f.commission_asset,
                    "tradeId": f.trade_id,
                }
                for f in order.fills
            ]
        return base

    def _result_fields(self, order: Order) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "price": fixed8(order.price),
            "origQty": fixed8(order.qty),
            "executedQty": fixed8(order.executed_qty),
            "origQuoteOrderQty": fixed8(order.quote_qty),
            "cummulativeQuoteQty": fixed8(order.cum_quote),
            "status": STATUS_NAMES[order.status],
            "timeInForce": order.time_in_force,
            "type": order.type,
            "side": order.side,
        }
        if order.stop_price:
            fields["stopPrice"] = fixed8(order.stop_price)
        fields["workingTime"] = order.working_ms
        fields["selfTradePreventionMode"] = "NONE"
        return fields

    def order_view(self, order: Order) -> dict[str, Any]:
        view = {
            "symbol": order.symbol,
            "orderId": int(order.order_id),
            "orderListId": order.list_id,
            "clientOrderId": order.client_id,
            "price": fixed8(order.price),
            "origQty": fixed8(order.qty),
            "executedQty": fixed8(order.executed_qty),
            "cummulativeQuoteQty": fixed8(order.cum_quote),
            "status": STATUS_NAMES[order.status],
            "timeInForce": order.time_in_force,
            "type": order.type,
            "side": order.side,
            "stopPrice": fixed8(order.stop_price),
            "icebergQty": fixed8(ZERO),
            "time": order.created_ms,
            "updateTime": order.updated_ms,
            "isWorking": order.status != Status.UNTRIGGERED,
            "workingTime": order.working_ms,
            "origQuoteOrderQty": fixed8(order.quote_qty),
            "selfTradePreventionMode": "NONE",
        }
        return view

    def _find(self, account: Account, params: dict[str, str], inst: Instrument) -> Order | None:
        order_id = params.get("orderId")
        client_id = params.get("origClientOrderId")
        if not order_id and not client_id:
            raise BinanceError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        if order_id:
            order = self.exchange.by_id.get(order_id)
            if order is not None and client_id and order.client_id != client_id:
                return None
        else:
            assert client_id is not None
            order = self.exchange.by_client.get((account.account_id, client_id))
        if order is None or order.account_id != account.account_id or order.symbol != inst.symbol:
            return None
        return order

    def order_query(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        assert account is not None
        inst = self._instrument(params)
        order = self._find(account, params, inst)
        if order is None:
            raise BinanceError(-2013, "Order does not exist.")
        return self.order_view(order)

    def order_cancel(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        assert account is not None
        inst = self._instrument(params)
        order = self._find(account, params, inst)
        if order is None or not order.is_open:
            raise BinanceError(-2011, "Unknown order sent.")
        cancel_id = params.get("newClientOrderId") or _generated_client_id(
            self.exchange.next_order_id()
        )
        order_list = self.exchange.list_of.get(order.order_id)
        # The stream's CANCELED executionReport carries the cancel's id in "c" and the
        # order's in "C" (user-data-stream.md: "Original client order ID; This is the ID of
        # the order being canceled").
        order.extra["cancelClientOrderId"] = cancel_id
        self.exchange.cancel(order)
        if order_list is not None:
            return self._list_response(order_list, cancel_id=cancel_id)
        return self._cancel_report(order, cancel_id)

    def _cancel_report(self, order: Order, cancel_id: str) -> dict[str, Any]:
        report = {
            "symbol": order.symbol,
            "origClientOrderId": order.client_id,
            "orderId": int(order.order_id),
            "orderListId": order.list_id,
            "clientOrderId": cancel_id,
            "transactTime": self.clock.now_ms(),
        }
        report.update(self._result_fields(order))
        report.pop("workingTime", None)
        return report

    def open_orders(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        assert account is not None
        symbol = params.get("symbol")
        if symbol:
            self._instrument(params)
        return [
            self.order_view(o)
            for o in self.exchange.orders
            if o.account_id == account.account_id
            and o.is_open
            and (not symbol or o.symbol == symbol)
        ]

    def all_orders(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        assert account is not None
        inst = self._instrument(params)
        try:
            from_id = int(params.get("orderId") or 0)
            limit = max(1, min(int(params.get("limit") or 500), 1000))
            start = int(params.get("startTime") or 0)
            end = int(params.get("endTime") or 0)
        except ValueError:
            raise mandatory("orderId") from None
        rows = [
            o
            for o in self.exchange.orders
            if o.account_id == account.account_id
            and o.symbol == inst.symbol
            and int(o.order_id) >= from_id
            and o.created_ms >= start
            and (not end or o.created_ms <= end)
        ]
        rows = rows[:limit] if from_id else rows[-limit:]
        return [self.order_view(o) for o in rows]

    # order lists -------------------------------------------------------------------------

    def oco_create(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        assert account is not None
        inst = self._instrument(params)
        side = params.get("side")
        if not side:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        quantity = self._decimal(params, "quantity", required=True)
        above_type = params.get("aboveType")
        below_type = params.get("belowType")
        if not above_type:
            raise mandatory("aboveType")
        if not below_type:
            raise mandatory("belowType")
        allowed_above = {
            "STOP_LOSS_LIMIT",
            "STOP_LOSS",
            "LIMIT_MAKER",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        }
        allowed_below = {"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"}
        if above_type not in allowed_above or below_type not in allowed_below:
            raise BinanceError(-1116, "Invalid orderType.")
        stops = {"STOP_LOSS", "STOP_LOSS_LIMIT"}
        if (above_type in stops) == (below_type in stops):
            raise BinanceError(-1158, "Order type not supported in OCO.")
        list_client_id = params.get("listClientOrderId") or _generated_client_id(
            self.exchange.next_order_id()
        )
        lists = self.exchange.lists_by_client
        existing = lists.get((account.account_id, list_client_id))
        if existing is not None and not existing.done:
            raise rejected("Duplicate order sent.")
        below = self._build(
            params,
            account,
            inst,
            side,
            below_type,
            prefix="below",
            quantity=quantity,
            client_id_name="clientOrderId",
        )
        above = self._build(
            params,
            account,
            inst,
            side,
            above_type,
            prefix="above",
            quantity=quantity,
            client_id_name="clientOrderId",
        )
        current = self.prices.price(inst.symbol)
        above_level = above.price if above.type == "LIMIT_MAKER" else above.stop_price
        below_level = below.stop_price
        if not below_level < current < above_level:
            raise rejected("The relationship of the prices for the orders is not correct.")
        if above.type == "LIMIT_MAKER":
            above.trigger_dir = 0
        assert quantity is not None
        need_asset = inst.base if side == "SELL" else inst.quote
        need = quantity if side == "SELL" else quantity * max(above.price, below.price, current)
        if account.available(need_asset) < need:
            raise rejected("Account has insufficient balance for requested action.")
        now = self.clock.now_ms()
        order_list = OrderList(
            list_id=self.exchange.next_list_id(),
            list_client_id=list_client_id,
            symbol=inst.symbol,
            orders=[below, above],
            created_ms=now,
        )
        self.exchange.accept_list(order_list, inst.binance.step_size)
        resp_type = params.get("newOrderRespType") or "FULL"
        return self._list_response(order_list, resp_type=resp_type)

    def _list_response(
        self, order_list: OrderList, *, cancel_id: str | None = None, resp_type: str = "RESULT"
    ) -> dict[str, Any]:
        done = order_list.done
        reports: list[dict[str, Any]] = []
        for order in order_list.orders:
            if cancel_id is not None:
                reports.append(self._cancel_report(order, cancel_id))
            else:
                report = self._order_response(order, resp_type)
                reports.append(report)
        return {
            "orderListId": order_list.list_id,
            "contingencyType": "OCO",
            "listStatusType": "ALL_DONE" if done else "EXEC_STARTED",
            "listOrderStatus": "ALL_DONE" if done else "EXECUTING",
            "listClientOrderId": order_list.list_client_id,
            "transactionTime": order_list.updated_ms,
            "symbol": order_list.symbol,
            "orders": [
                {"symbol": o.symbol, "orderId": int(o.order_id), "clientOrderId": o.client_id}
                for o in order_list.orders
            ],
            "orderReports": reports,
        }

    def _find_list(self, account: Account, params: dict[str, str]) -> OrderList | None:
        list_id = params.get("orderListId")
        client_id = params.get("listClientOrderId") or params.get("origClientOrderId")
        if not list_id and not client_id:
            raise BinanceError(
                -1102,
                "Param 'orderListId' or 'listClientOrderId' must be sent, "
                "but both were empty/null!",
            )
        if list_id:
            try:
                found = self.exchange.lists.get(int(list_id))
            except ValueError:
                raise mandatory("orderListId") from None
        else:
            assert client_id is not None
            found = self.exchange.lists_by_client.get((account.account_id, client_id))
        if found is None or found.orders[0].account_id != account.account_id:
            return None
        return found

    def order_list_cancel(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        assert account is not None
        self._instrument(params)
        order_list = self._find_list(account, params)
        if order_list is None or order_list.done:
            raise BinanceError(-2011, "Unknown order sent.")
        cancel_id = params.get("newClientOrderId") or _generated_client_id(
            self.exchange.next_order_id()
        )
        self.exchange.cancel(order_list.orders[0])
        return self._list_response(order_list, cancel_id=cancel_id)

    def order_list_query(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        assert account is not None
        order_list = self._find_list(account, params)
        if order_list is None:
            # What Binance answers for an unknown list (binance/binance-spot-api-docs#43:
            # "Error code -2018 is returned when attempting to query an invalid OCO via
            # GET api/v3/orderList", message "Order list does not exist").
            raise BinanceError(-2018, "Order list does not exist.")
        response = self._list_response(order_list)
        response.pop("orderReports")
        return response

    def open_order_lists(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        """rest-api.md "Query Open Order lists": the account's lists still executing, every
        symbol, in the shape of "Query Order list" (no ``orderReports``)."""
        assert account is not None
        found = []
        for order_list in self.exchange.lists.values():
            if order_list.orders[0].account_id != account.account_id or order_list.done:
                continue
            response = self._list_response(order_list)
            response.pop("orderReports")
            found.append(response)
        return found

    # account -----------------------------------------------------------------------------

    def account(self, params: dict[str, str], account: Account | None, key: ApiKey | None) -> Any:
        assert account is not None
        rate = self.exchange.fee_rate
        omit_zero = params.get("omitZeroBalances") == "true"
        balances = []
        for asset in sorted(set(account.free) | set(account.locked)):
            free = account.available(asset)
            locked = account.locked.get(asset, ZERO)
            if omit_zero and not free and not locked:
                continue
            balances.append({"asset": asset, "free": fixed8(free), "locked": fixed8(locked)})
        commission = int(rate * 10_000)
        return {
            "makerCommission": commission,
            "takerCommission": commission,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": fixed8(rate),
                "taker": fixed8(rate),
                "buyer": fixed8(ZERO),
                "seller": fixed8(ZERO),
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.clock.now_ms(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": account.uid,
        }

    def order_rate(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        assert account is not None
        now = self.clock.now_ms()
        return [
            {
                "rateLimitType": "ORDERS",
                "interval": "SECOND",
                "intervalNum": 10,
                "limit": self.orders_10s,
                "count": self.orders_window_10s.used(account.uid, now),
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "DAY",
                "intervalNum": 1,
                "limit": self.orders_1d,
                "count": self.orders_window_1d.used(account.uid, now),
            },
        ]

    def api_restrictions(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        assert key is not None
        return {
            "ipRestrict": key.ip_bound,
            "createTime": key.created_ms,
            "enableInternalTransfer": "enableInternalTransfer" in key.extra,
            "enableFutures": "enableFutures" in key.extra,
            "enablePortfolioMarginTrading": "enablePortfolioMarginTrading" in key.extra,
            "enableVanillaOptions": "enableVanillaOptions" in key.extra,
            "permitsUniversalTransfer": "permitsUniversalTransfer" in key.extra,
            "enableReading": key.read,
            "enableSpotAndMarginTrading": key.trade,
            "enableWithdrawals": key.withdraw,
            "enableMargin": "enableMargin" in key.extra,
            "tradingAuthorityExpirationTime": key.expires_at_ms or 0,
        }

    # order test, order book, trade list, legacy OCO ------------------------------------

    def order_test(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        """``POST /api/v3/order/test``: validated like ``POST /api/v3/order`` (parameters and
        symbol filters), never sent to the matching engine, so nothing is placed or locked."""
        assert account is not None
        inst = self._instrument(params)
        side = params.get("side")
        if not side:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        order_type = params.get("type")
        if not order_type:
            raise mandatory("type")
        if order_type not in ORDER_TYPES:
            raise BinanceError(-1116, "Invalid orderType.")
        compute = params.get("computeCommissionRates", "false")
        if compute not in ("true", "false"):
            raise BinanceError(
                -1130, "Data sent for parameter 'computeCommissionRates' is not valid."
            )
        self._build(params, account, inst, side, order_type, prefix="", engine=False)
        if compute == "false":
            return {}
        rate = fixed8(self.exchange.fee_rate)
        return {
            "standardCommissionForOrder": {"maker": rate, "taker": rate},
            "specialCommissionForOrder": {"maker": fixed8(ZERO), "taker": fixed8(ZERO)},
            "taxCommissionForOrder": {"maker": fixed8(ZERO), "taker": fixed8(ZERO)},
            "discount": {
                "enabledForAccount": False,
                "enabledForSymbol": False,
                "discountAsset": "BNB",
                "discount": fixed8(ZERO),
            },
        }

    def depth(self, params: dict[str, str], account: Account | None, key: ApiKey | None) -> Any:
        """``GET /api/v3/depth``. The simulator keeps no order book: the levels are one tick
        apart around the simulated price (the best bid/ask match ``ticker/bookTicker``)."""
        inst = self._instrument(params)
        status = params.get("symbolStatus")
        if status is not None:
            if status not in ("TRADING", "HALT", "BREAK"):
                raise BinanceError(-1122, "Invalid symbolStatus.")
            if status != "TRADING":
                raise BinanceError(
                    -1220, "The symbol's status does not match the requested symbolStatus."
                )
        limit = _int_param(params, "limit", 100)
        if limit < 1:
            raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        limit = min(limit, 5000)  # "If limit > 5000, only 5000 entries will be returned."
        price = self.prices.price(inst.symbol)
        tick = inst.binance.tick_size
        bids: list[list[str]] = []
        asks: list[list[str]] = []
        for level in range(1, limit + 1):
            size = fixed8(Decimal(level) * Decimal("0.5"))
            if price - tick * level > 0:
                bids.append([fixed8(price - tick * level), size])
            asks.append([fixed8(price + tick * level), size])
        return {"lastUpdateId": self.clock.now_ms(), "bids": bids, "asks": asks}

    def my_trades(self, params: dict[str, str], account: Account | None, key: ApiKey | None) -> Any:
        """``GET /api/v3/myTrades``: the account's trades on one symbol, oldest first."""
        assert account is not None
        inst = self._instrument(params)
        given = frozenset(n for n in ("orderId", "startTime", "endTime", "fromId") if params.get(n))
        if given not in MY_TRADES_COMBINATIONS:
            raise BinanceError(-1128, "Combination of optional parameters invalid.")
        order_id = _int_param(params, "orderId", 0)
        start = _int_param(params, "startTime", 0)
        end = _int_param(params, "endTime", 0)
        from_id = _int_param(params, "fromId", 0)
        limit = max(1, min(_int_param(params, "limit", 500), 1000))
        if start and end and end - start > 86_400_000:
            raise BinanceError(-1127, "More than 24 hours between startTime and endTime.")
        rows = [
            t
            for t in self.exchange.trades
            if t.account_id == account.account_id
            and t.symbol == inst.symbol
            and (not order_id or t.order_id == str(order_id))
            and (not from_id or t.trade_id >= from_id)
            and (not start or t.time_ms >= start)
            and (not end or t.time_ms <= end)
        ]
        # General API information: with startTime (or fromId) the oldest items from there;
        # otherwise the most recent items; chronological order either way.
        rows = rows[:limit] if (start or from_id) else rows[-limit:]
        return [
            {
                "symbol": t.symbol,
                "id": t.trade_id,
                "orderId": int(t.order_id),
                "orderListId": t.list_id,
                "price": fixed8(t.price),
                "qty": fixed8(t.qty),
                "quoteQty": fixed8(t.price * t.qty),
                "commission": fixed8(t.commission),
                "commissionAsset": t.commission_asset,
                "time": t.time_ms,
                "isBuyer": t.side == "BUY",
                "isMaker": t.is_maker,
                "isBestMatch": True,
            }
            for t in rows
        ]

    def oco_legacy_create(
        self, params: dict[str, str], account: Account | None, key: ApiKey | None
    ) -> Any:
        """``POST /api/v3/order/oco`` (deprecated): a LIMIT_MAKER leg at ``price`` and a
        STOP_LOSS (STOP_LOSS_LIMIT with ``stopLimitPrice``) leg at ``stopPrice``.
        SELL: price > last price > stopPrice; BUY: price < last price < stopPrice."""
        assert account is not None
        inst = self._instrument(params)
        side = params.get("side")
        if not side:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        quantity = self._decimal(params, "quantity", required=True)
        price = self._decimal(params, "price", required=True)
        stop_price = self._decimal(params, "stopPrice", required=True)
        stop_limit = self._decimal(params, "stopLimitPrice", required=False)
        stop_tif = params.get("stopLimitTimeInForce") or ""
        if stop_limit is not None and not stop_tif:
            raise mandatory("stopLimitTimeInForce")
        assert quantity is not None
        assert price is not None
        assert stop_price is not None
        list_client_id = params.get("listClientOrderId") or _generated_client_id(
            self.exchange.next_order_id()
        )
        existing = self.exchange.lists_by_client.get((account.account_id, list_client_id))
        if existing is not None and not existing.done:
            raise rejected("Duplicate order sent.")
        legs = {
            "stopStopPrice": str(stop_price),
            "stopClientOrderId": params.get("stopClientOrderId", ""),
            "limitPrice": str(price),
            "limitClientOrderId": params.get("limitClientOrderId", ""),
        }
        if stop_limit is not None:
            legs.update({"stopPrice": str(stop_limit), "stopTimeInForce": stop_tif})
        stop_type = "STOP_LOSS_LIMIT" if stop_limit is not None else "STOP_LOSS"
        common = {"symbol": inst.symbol}
        stop = self._build(
            {**common, **legs},
            account,
            inst,
            side,
            stop_type,
            prefix="stop",
            quantity=quantity,
            client_id_name="clientOrderId",
        )
        limit = self._build(
            {**common, **legs},
            account,
            inst,
            side,
            "LIMIT_MAKER",
            prefix="limit",
            quantity=quantity,
            client_id_name="clientOrderId",
        )
        current = self.prices.price(inst.symbol)
        ordered = (
            (price > current > stop_price) if side == "SELL" else (price < current < stop_price)
        )
        if not ordered:
            raise rejected("The relationship of the prices for the orders is not correct.")
        need_asset = inst.base if side == "SELL" else inst.quote
        need = quantity if side == "SELL" else quantity * max(price, stop_limit or stop_price)
        if account.available(need_asset) < need:
            raise rejected("Account has insufficient balance for requested action.")
        order_list = OrderList(
            list_id=self.exchange.next_list_id(),
            list_client_id=list_client_id,
            symbol=inst.symbol,
            orders=[stop, limit],
            created_ms=self.clock.now_ms(),
        )
        self.exchange.accept_list(order_list, inst.binance.step_size)
        return self._list_response(order_list, resp_type=params.get("newOrderRespType") or "RESULT")


class _TooManyOrdersError(BinanceError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(-1015, message, 429)
        self.retry_after = retry_after


def _without_signature(part: str) -> str:
    if "signature=" not in part:
        return part
    return "&".join(p for p in part.split("&") if not p.startswith("signature="))


def _trigger_ahead(order: Order, price: Decimal) -> bool:
    return price < order.stop_price if order.trigger_dir > 0 else price > order.stop_price


def _generated_client_id(seed: str) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    number = int(seed) * 2_654_435_761 % (62**22)
    chars = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        chars.append(alphabet[digit])
    return "".join(chars)


# rest-api.md "Account trade list": the supported combinations of optional parameters.
MY_TRADES_COMBINATIONS = frozenset(
    {
        frozenset(),
        frozenset({"orderId"}),
        frozenset({"startTime"}),
        frozenset({"endTime"}),
        frozenset({"fromId"}),
        frozenset({"startTime", "endTime"}),
        frozenset({"orderId", "fromId"}),
    }
)
NOT_FOUND_HTML = b"<html><body><h2>404 Not found</h2></body></html>"


def _not_found(request: Request) -> Response:
    """An unknown endpoint. CHANGELOG.md (2023-12-04): HTTP 404; the HTML body
    ``<html><body><h2>404 Not found</h2></body></html>`` only when the Accept header has
    ``text/html``; otherwise no body (python-binance#1614 shows such a 404 from
    api.binance.com with ``Content-Length: 0``)."""
    if "text/html" in (request.header(b"accept") or ""):
        return Response(404, NOT_FOUND_HTML, content_type=b"text/html")
    return Response(404, b"", content_type=b"text/plain")


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        ) from None


def _test_weight(params: dict[str, str]) -> int:
    return 20 if params.get("computeCommissionRates") == "true" else 1


def _my_trades_weight(params: dict[str, str]) -> int:
    return 5 if params.get("orderId") else 20


def _depth_weight(params: dict[str, str]) -> int:
    try:
        limit = int(params.get("limit") or 100)
    except ValueError:
        return 5
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250
