"""Bybit V5 (spot, unified account) as the reference pages under bybit-v5/ describe it."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from hashlib import sha256
from typing import Any

import orjson

from marketbot.sim.app import ExchangeApp, ServerClock
from marketbot.sim.asgi import JSON_UTF8, Request, Response
from marketbot.sim.bybit_ws import BybitPrivateSession, BybitPublicSession
from marketbot.sim.engine import ZERO, Account, ApiKey, Exchange, Fill, Order, OrderList, Status
from marketbot.sim.instruments import Instrument, floor_to, fraction_digits, plain
from marketbot.sim.limits import Ban, SlidingWindow
from marketbot.sim.prices import PriceBook

# retMsg texts are the descriptions of reference/bybit-v5/error.mdx (10006: rate-limit page).
MESSAGES: dict[int, str] = {
    10001: "Request parameter error",
    10002: "The request time exceeds the time window range.",
    10003: (
        "API key is invalid. Check whether the key and domain are matched, there are 4 env: "
        "mainnet, testnet, mainnet-demo, testnet-demo"
    ),
    10004: "Error sign, please check your signature generation algorithm.",
    10005: "Permission denied, please check your API key permissions.",
    10006: "Too many visits!",
    10010: "Unmatched IP, please check your API key's bound IP addresses.",
    10016: "Server error.",
    -2015: "Your api key has expired",
    170116: "Invalid orderType.",
    170115: "Invalid timeInForce.",
    170117: "Invalid side.",
    170121: "Invalid symbol.",
    170124: "Order amount too large.",
    170131: "Balance insufficient",
    170134: "Order price decimal too long.",
    170136: "Order quantity lower than the minimum.",
    170137: "Order volume decimal too long",
    170140: "Order value exceeded lower limit",
    170141: "Duplicate clientOrderId",
    170148: "Market order amount decimal too long",
    170213: "Order does not exist.",
}

# Per-UID per-endpoint limits per second (rate-limit_rate-limit.mdx, spot column).
UID_LIMITS: dict[str, int] = {
    "/v5/order/create": 20,
    "/v5/order/cancel": 20,
    "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/account/wallet-balance": 50,
    "/v5/account/info": 50,
    "/v5/position/list": 50,
    "/v5/user/query-api": 10,
    "/v5/execution/list": 50,
}
EXECUTION_WINDOW_MS = 7 * 86_400_000  # execution.mdx: 7 days by default and at most
EXEC_ID_BASE = 2_100_000_000_000_000_000  # spot execIds are decimal strings (ccxt fixtures)

IP_LIMIT = 600
IP_WINDOW_MS = 5_000
IP_BAN_SECONDS = 600  # "wait for at least 10 minutes"
KLINE_INTERVALS = {
    "1": 60_000,
    "3": 180_000,
    "5": 300_000,
    "15": 900_000,
    "30": 1_800_000,
    "60": 3_600_000,
    "120": 7_200_000,
    "240": 14_400_000,
    "360": 21_600_000,
    "720": 43_200_000,
    "D": 86_400_000,
    "W": 604_800_000,
    "M": 2_592_000_000,
}
ORDER_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
STATUS_NAMES = {
    Status.NEW: "New",
    Status.PARTIALLY_FILLED: "PartiallyFilled",
    Status.FILLED: "Filled",
    Status.CANCELED: "Cancelled",
    Status.REJECTED: "Rejected",
    Status.UNTRIGGERED: "Untriggered",
    Status.TRIGGERED: "Triggered",
    Status.DEACTIVATED: "Deactivated",
}
OPEN_NAMES = frozenset({"New", "PartiallyFilled", "Untriggered"})


class BybitError(Exception):
    def __init__(self, code: int, message: str | None = None, http_status: int = 200) -> None:
        super().__init__(code)
        self.code = code
        self.message = message if message is not None else MESSAGES.get(code, "")
        self.http_status = http_status


def _empty(name: str) -> BybitError:
    return BybitError(170105, f"Parameter '{name}' was empty.")


def _invalid(name: str) -> BybitError:
    return BybitError(170130, f"Data sent for paramter '{name}' is not valid.")


Private = Callable[[Request, Account, ApiKey], Any]


class BybitApp(ExchangeApp):
    venue = "bybit"
    api_key_header = b"x-bapi-api-key"
    key_length = 18
    secret_length = 36

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
            order_id_start=1_780_000_000_000_000_001,
            uid_start=100_000_001,
        )
        super().__init__(exchange=exchange, prices=prices, clock=clock, seed=seed)
        self.instruments = instruments
        exchange.on_status_change = self._on_status_change
        self.public: dict[str, Callable[[Request], Any]] = {
            "/v5/market/time": self.market_time,
            "/v5/market/tickers": self.tickers,
            "/v5/market/kline": self.kline,
            "/v5/market/instruments-info": self.instruments_info,
        }
        self.private: dict[tuple[str, str], tuple[Private, bool]] = {
            ("POST", "/v5/order/create"): (self.order_create, True),
            ("POST", "/v5/order/cancel"): (self.order_cancel, True),
            ("GET", "/v5/order/realtime"): (self.order_realtime, False),
            ("GET", "/v5/order/history"): (self.order_history, False),
            ("GET", "/v5/account/wallet-balance"): (self.wallet_balance, False),
            ("GET", "/v5/account/info"): (self.account_info, False),
            ("GET", "/v5/position/list"): (self.position_list, False),
            ("GET", "/v5/user/query-api"): (self.query_api, False),
            ("GET", "/v5/execution/list"): (self.execution_list, False),
        }
        self.stream_routes["/v5/private"] = lambda c: BybitPrivateSession(c, self)
        self.stream_routes["/v5/public/spot"] = lambda c: BybitPublicSession(c, self)
        # After the engine's own listener (orders trigger first), the public ticker.
        prices.subscribe(lambda symbol, _price: self.streams.on_price(symbol))
        self.ip_ban_seconds = IP_BAN_SECONDS
        self.ip_limit = IP_LIMIT
        self.uid_limits = dict(UID_LIMITS)
        self.reset_limits()

    def stream_settings(self) -> dict[str, Any]:
        # websocket_wss-authentication.mdx: "if there is no "ping-pong" and no stream data
        # sent from server end, the connection will be cut off after 10 minutes"; "ticker
        # scans every 30s"; "Do not build over 500 connections in 5 minutes" (IP Limits).
        return {"idle_s": 600.0, "scan_s": 30.0, "connection_limit": (500, 300.0)}

    # limits ------------------------------------------------------------------------------

    def reset_limits(self) -> None:
        self.streams.reset_limits()
        self.ip_window = SlidingWindow(IP_WINDOW_MS)
        self.uid_window = SlidingWindow(1_000)
        self.ip_bans: dict[str, Ban] = {}

    def configure_limits(self, body: dict[str, Any]) -> dict[str, Any]:
        if "enabled" in body:
            self.limits_enabled = bool(body["enabled"])
        if body.get("ban_seconds") is not None:
            self.ip_ban_seconds = int(body["ban_seconds"])
        if body.get("ip_limit") is not None:
            self.ip_limit = int(body["ip_limit"])
        if body.get("uid_limits"):
            self.uid_limits.update({str(k): int(v) for k, v in body["uid_limits"].items()})
        if body.get("clear", True):
            self.reset_limits()
        return {
            "enabled": self.limits_enabled,
            "ban_seconds": self.ip_ban_seconds,
            "ip_limit": self.ip_limit,
            "uid_limits": dict(self.uid_limits),
        }

    def _ip_gate(self, ip: str, now: int) -> Response | None:
        ban = self.ip_bans.get(ip)
        if ban is not None and ban.until_ms > now:
            return Response(403, b"access too frequent", content_type=b"text/plain")
        allowed, _, _ = self.ip_window.hit(ip, now, self.ip_limit)
        if allowed:
            return None
        self.ip_bans[ip] = Ban(until_ms=now + self.ip_ban_seconds * 1000, offences=1)
        return Response(403, b"access too frequent", content_type=b"text/plain")

    # dispatch ----------------------------------------------------------------------------

    def envelope(
        self, result: Any, *, code: int = 0, message: str = "OK", now: int | None = None
    ) -> bytes:
        return orjson.dumps(
            {
                "retCode": code,
                "retMsg": message,
                "result": result,
                "retExtInfo": {},
                "time": now if now is not None else self.clock.now_ms(),
            }
        )

    def error(self, exc: BybitError, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        body = self.envelope({}, code=exc.code, message=exc.message)
        return Response(exc.http_status, body, headers, content_type=JSON_UTF8)

    def server_error(self, status: int) -> Response:
        return Response(status, self.envelope({}, code=10016, message=MESSAGES[10016]))

    def timeout_error(self) -> Response:
        # retCode 10000 "Server Timeout" (reference/bybit-v5/error.mdx)
        return Response(200, self.envelope({}, code=10000, message="Server Timeout"))

    def handle(self, request: Request) -> Response:
        # the gateway's view: limits and the signed timestamp as of arrival
        now = request.received_ms or self.clock.now_ms()
        if self.limits_enabled:
            blocked = self._ip_gate(request.client_ip, now)
            if blocked is not None:
                return blocked
        path = request.path
        public = self.public.get(path)
        if public is not None and request.method == "GET":
            try:
                return Response(200, self.envelope(public(request)), content_type=JSON_UTF8)
            except BybitError as exc:
                return self.error(exc)
        route = self.private.get((request.method, path))
        if route is None:
            return Response(404, b"", content_type=b"text/plain")
        handler, needs_trade = route
        headers: list[tuple[bytes, bytes]] = []
        try:
            key, account = self._authenticate(request, now, needs_trade)
            if self.limits_enabled:
                limit = self.uid_limits.get(path, 50)
                allowed, remaining, reset = self.uid_window.hit((account.uid, path), now, limit)
                headers = [
                    (b"x-bapi-limit", str(limit).encode()),
                    (b"x-bapi-limit-status", str(remaining).encode()),
                    (b"x-bapi-limit-reset-timestamp", str(reset).encode()),
                ]
                if not allowed:
                    self.count_limit_answer("10006", now)
                    raise BybitError(10006)
            result = handler(request, account, key)
        except BybitError as exc:
            return self.error(exc, headers)
        message = "" if path == "/v5/user/query-api" else "OK"
        return Response(200, self.envelope(result, message=message), headers, JSON_UTF8)

    def _authenticate(
        self, request: Request, now: int, needs_trade: bool
    ) -> tuple[ApiKey, Account]:
        api_key = request.header(b"x-bapi-api-key")
        if not api_key:
            raise BybitError(10003, http_status=401)
        timestamp = request.header(b"x-bapi-timestamp")
        signature = request.header(b"x-bapi-sign")
        recv_window = request.header(b"x-bapi-recv-window") or "5000"
        if not timestamp:
            raise BybitError(10002)
        try:
            ts = int(timestamp)
            window = int(recv_window)
        except ValueError:
            raise BybitError(10002) from None
        if not now - window <= ts < now + 1000:
            raise BybitError(10002)
        key = self.exchange.keys.get(api_key)
        if key is None:
            raise BybitError(10003, http_status=401)
        if not signature:
            raise BybitError(10004)
        payload = request.body if request.method == "POST" else request.query
        expected = hmac.new(
            key.secret_bytes,
            timestamp.encode() + api_key.encode() + recv_window.encode() + payload,
            sha256,
        ).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BybitError(10004)
        if not key.allows_ip(request.client_ip):
            raise BybitError(10010)
        if key.expires_at_ms is not None and key.expires_at_ms <= now:
            raise BybitError(-2015, http_status=401)
        if needs_trade and not key.trade:
            raise BybitError(10005)
        return key, self.exchange.accounts[key.account_id]

    # market ------------------------------------------------------------------------------

    def market_time(self, request: Request) -> dict[str, Any]:
        now_ns = time.time_ns() + self.clock.offset_ms * 1_000_000
        return {"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)}

    def _spot_symbol(self, params: dict[str, str], *, required: bool) -> Instrument | None:
        symbol = params.get("symbol")
        if not symbol:
            if required:
                raise BybitError(10001)
            return None
        inst = self.instruments.get(symbol)
        if inst is None:
            raise BybitError(10001)
        return inst

    def tickers(self, request: Request) -> dict[str, Any]:
        params = request.query_params()
        category = params.get("category")
        if category is None:
            raise BybitError(10001)
        if category != "spot":
            return {"category": category, "list": []}
        inst = self._spot_symbol(params, required=False)
        chosen = [inst] if inst else list(self.instruments.values())
        rows = []
        rows = [self.ticker_row(item) for item in chosen]
        return {"category": "spot", "list": rows}

    def ticker_row(self, item: Instrument) -> dict[str, str]:
        """One spot ticker (market_tickers.mdx), also the public stream's ticker data."""
        price = self.prices.price(item.symbol)
        open_24h, high, low = self.prices.stats(item.symbol)
        tick = item.bybit.tick_size
        change = (price - open_24h) / open_24h
        return {
            "symbol": item.symbol,
            "bid1Price": plain(price - tick),
            "bid1Size": "2",
            "ask1Price": plain(price + tick),
            "ask1Size": "1.862172",
            "lastPrice": plain(price),
            "prevPrice24h": plain(open_24h),
            "price24hPcnt": plain(change.quantize(Decimal("0.0001"))),
            "highPrice24h": plain(high),
            "lowPrice24h": plain(low),
            "turnover24h": "243765620.65899866",
            "volume24h": plain((Decimal("243765620.65899866") / price).quantize(tick)),
            "usdIndexPrice": plain(price),
        }

    def kline(self, request: Request) -> dict[str, Any]:
        params = request.query_params()
        category = params.get("category", "linear")
        inst = self._spot_symbol(params, required=True)
        assert inst is not None
        interval = KLINE_INTERVALS.get(params.get("interval", ""))
        if interval is None:
            raise BybitError(10001)
        limit = int(params.get("limit") or 200)
        if not 1 <= limit <= 1000:
            raise BybitError(10001)
        end = min(int(params.get("end") or self.clock.now_ms()), self.clock.now_ms())
        start = int(params.get("start") or 0)
        candles = self.prices.candles(inst.symbol, interval, end, limit)
        rows = [
            [
                str(c.open_time),
                plain(c.open),
                plain(c.high),
                plain(c.low),
                plain(c.close),
                plain(c.volume),
                plain(c.turnover),
            ]
            for c in reversed(candles)
            if c.open_time >= start
        ]
        return {"symbol": inst.symbol, "category": category, "list": rows}

    def instruments_info(self, request: Request) -> dict[str, Any]:
        params = request.query_params()
        category = params.get("category")
        if not category:
            raise BybitError(10001)
        if category != "spot":
            return {"category": category, "list": [], "nextPageCursor": ""}
        inst = self._spot_symbol(params, required=False)
        chosen = [inst] if inst else list(self.instruments.values())
        rows = []
        for item in chosen:
            lot = item.bybit
            rows.append(
                {
                    "symbolId": item.bybit_symbol_id,
                    "symbol": item.symbol,
                    "baseCoin": item.base,
                    "quoteCoin": item.quote,
                    "innovation": "0",
                    "status": "Trading",
                    "marginTrading": "utaOnly",
                    "stTag": "0",
                    "lotSizeFilter": {
                        "basePrecision": plain(lot.base_precision),
                        "quotePrecision": plain(lot.quote_precision),
                        "minOrderQty": plain(lot.min_order_qty),
                        "maxOrderQty": plain(lot.max_order_qty),
                        "minOrderAmt": plain(lot.min_order_amt),
                        "maxOrderAmt": plain(lot.max_order_amt),
                        "maxLimitOrderQty": plain(lot.max_limit_order_qty),
                        "maxMarketOrderQty": plain(lot.max_market_order_qty),
                        "postOnlyMaxLimitOrderSize": plain(lot.max_limit_order_qty * 5),
                    },
                    "priceFilter": {"tickSize": plain(lot.tick_size)},
                    "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
                    "symbolType": "",
                }
            )
        return {"category": "spot", "list": rows}

    # trading -----------------------------------------------------------------------------

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = orjson.loads(request.body) if request.body else {}
        except orjson.JSONDecodeError:
            raise BybitError(10001) from None
        if not isinstance(body, dict):
            raise BybitError(10001)
        return body

    @staticmethod
    def _decimal(body: dict[str, Any], name: str, *, required: bool) -> Decimal | None:
        raw = body.get(name)
        if raw is None or raw == "":
            if required:
                raise _empty(name)
            return None
        if not isinstance(raw, str | int | float):
            raise _invalid(name)
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            raise _invalid(name) from None
        if not value.is_finite() or value <= 0:
            raise _invalid(name)
        return value

    def order_create(self, request: Request, account: Account, key: ApiKey) -> dict[str, Any]:
        body = self._body(request)
        category = body.get("category")
        if not category:
            raise _empty("category")
        if category != "spot":
            raise BybitError(10001)
        symbol = body.get("symbol")
        if not symbol:
            raise _empty("symbol")
        inst = self.instruments.get(str(symbol))
        if inst is None:
            raise BybitError(170121)
        side = body.get("side")
        if side not in ("Buy", "Sell"):
            raise BybitError(170117) if side else _empty("side")
        order_type = body.get("orderType")
        if order_type not in ("Market", "Limit"):
            raise BybitError(170116)
        qty = self._decimal(body, "qty", required=True)
        assert qty is not None
        market = order_type == "Market"
        tif = body.get("timeInForce") or ("IOC" if market else "GTC")
        if tif not in ("GTC", "IOC", "FOK", "PostOnly"):
            raise BybitError(170115)
        if market:
            tif = "IOC"
        link_id = body.get("orderLinkId") or ""
        if link_id and (not isinstance(link_id, str) or not ORDER_LINK_ID.match(link_id)):
            raise _invalid("orderLinkId")
        if link_id and (account.account_id, link_id) in self.exchange.by_client:
            raise BybitError(170141)
        lot = inst.bybit
        price = ZERO
        if not market:
            limit_price = self._decimal(body, "price", required=True)
            assert limit_price is not None
            if fraction_digits(limit_price) > fraction_digits(lot.tick_size) or (
                limit_price % lot.tick_size
            ):
                raise BybitError(170134)
            price = limit_price
        unit = body.get("marketUnit") or ("quoteCoin" if side == "Buy" else "baseCoin")
        if unit not in ("baseCoin", "quoteCoin"):
            raise _invalid("marketUnit")
        by_quote = market and unit == "quoteCoin"
        current = self.prices.price(inst.symbol)
        if by_quote:
            if fraction_digits(qty) > fraction_digits(lot.quote_precision):
                raise BybitError(170148)
            value = qty
            base_qty = qty / current
        else:
            if fraction_digits(qty) > fraction_digits(lot.base_precision):
                raise BybitError(170137)
            base_qty = qty
            value = qty * (current if market else price)
        if base_qty < lot.min_order_qty:
            raise BybitError(170136)
        if value < lot.min_order_amt:
            raise BybitError(170140)
        max_qty = lot.max_market_order_qty if market else lot.max_limit_order_qty
        if base_qty > max_qty:
            raise BybitError(170124)
        take_profit = self._decimal(body, "takeProfit", required=False)
        stop_loss = self._decimal(body, "stopLoss", required=False)
        if market and (take_profit is not None or stop_loss is not None):
            # order_create-order.mdx, takeProfit row: "Spot Limit order supports take profit,
            # stop loss"; Bybit answers a spot Market order with TP/SL with 170130
            # "Data sent for paramter '' is not valid." (bybit-exchange/pybit#200).
            raise _invalid("")
        trigger_price = self._decimal(body, "triggerPrice", required=False)
        order_filter = body.get("orderFilter") or "Order"
        if order_filter not in ("Order", "tpslOrder", "StopOrder"):
            raise _invalid("orderFilter")
        if order_filter != "Order" and trigger_price is None:
            raise _empty("triggerPrice")
        now = self.clock.now_ms()
        order = Order(
            account_id=account.account_id,
            order_id=self.exchange.next_order_id(),
            client_id=link_id,
            symbol=inst.symbol,
            side="BUY" if side == "Buy" else "SELL",
            type=order_type,
            market=market,
            qty=ZERO if by_quote else qty,
            quote_qty=qty if by_quote else ZERO,
            price=price,
            stop_price=trigger_price or ZERO,
            trigger_dir=0,
            time_in_force=tif,
            created_ms=now,
            extra={
                "marketUnit": unit if market else "",
                "orderFilter": order_filter,
                "basePrice": plain(current),
                "stopOrderType": "" if order_filter == "Order" else order_filter,
            },
        )
        if trigger_price is not None and order_filter != "Order":
            order.trigger_dir = 1 if trigger_price > current else -1
            order.extra["triggerDirection"] = 1 if order.trigger_dir > 0 else 2
        if take_profit is not None:
            order.extra["takeProfit"] = take_profit
        if stop_loss is not None:
            order.extra["stopLoss"] = stop_loss
        for name in ("tpLimitPrice", "slLimitPrice", "tpOrderType", "slOrderType"):
            if body.get(name):
                order.extra[name] = str(body[name])
        if not self.exchange.can_afford(order, current, lot.base_precision):
            raise BybitError(170131)
        if tif == "PostOnly" and not market and self.exchange._crosses(order, current):
            order.extra["rejectReason"] = "EC_PostOnlyWillTakeLiquidity"
            self.exchange.orders.append(order)
            self.exchange.by_id[order.order_id] = order
            if link_id:
                self.exchange.by_client[(account.account_id, link_id)] = order
            order.status = Status.CANCELED
            order.updated_ms = now
        else:
            self.exchange.accept(order, lot.base_precision)
        return {"orderId": order.order_id, "orderLinkId": order.client_id}

    def _on_status_change(self, order: Order, previous: Status) -> None:
        if order.status != Status.FILLED:
            return
        take_profit = order.extra.get("takeProfit")
        stop_loss = order.extra.get("stopLoss")
        if take_profit is None and stop_loss is None:
            return
        inst = self.instruments[order.symbol]
        qty = order.executed_qty
        if order.side == "BUY" and order.fee_asset == inst.base:
            qty -= order.fee
        qty = floor_to(qty, inst.bybit.base_precision)
        if qty <= 0:
            return
        side = "SELL" if order.side == "BUY" else "BUY"
        legs: list[Order] = []
        now = self.clock.now_ms()
        for kind, trigger, rising in (
            ("TakeProfit", take_profit, order.side == "BUY"),
            ("StopLoss", stop_loss, order.side != "BUY"),
        ):
            if trigger is None:
                continue
            prefix = "tp" if kind == "TakeProfit" else "sl"
            limit_price = order.extra.get(f"{prefix}LimitPrice")
            is_limit = order.extra.get(f"{prefix}OrderType") == "Limit" and limit_price
            legs.append(
                Order(
                    account_id=order.account_id,
                    order_id=self.exchange.next_order_id(),
                    client_id="",
                    symbol=order.symbol,
                    side=side,
                    type="Limit" if is_limit else "Market",
                    market=not is_limit,
                    qty=qty,
                    quote_qty=ZERO,
                    price=Decimal(str(limit_price)) if is_limit else ZERO,
                    stop_price=trigger,
                    trigger_dir=1 if rising else -1,
                    time_in_force="GTC" if is_limit else "IOC",
                    created_ms=now,
                    extra={
                        "marketUnit": "baseCoin" if not is_limit else "",
                        "orderFilter": "tpslOrder",
                        "stopOrderType": kind,
                        "parentOrderLinkId": order.client_id,
                        "parentOrderId": order.order_id,
                        "triggerDirection": 1 if rising else 2,
                        "basePrice": plain(self.prices.price(order.symbol)),
                    },
                )
            )
        order_list = OrderList(
            list_id=self.exchange.next_list_id(),
            list_client_id="",
            symbol=order.symbol,
            orders=legs,
            created_ms=now,
        )
        order.extra["children"] = [leg.order_id for leg in legs]
        self.exchange.accept_list(order_list, inst.bybit.base_precision)

    def _find(self, account: Account, params: dict[str, Any]) -> Order | None:
        order_id = params.get("orderId")
        if order_id:
            order = self.exchange.by_id.get(str(order_id))
            return order if order is not None and order.account_id == account.account_id else None
        link_id = params.get("orderLinkId")
        if link_id:
            return self.exchange.by_client.get((account.account_id, str(link_id)))
        return None

    def order_cancel(self, request: Request, account: Account, key: ApiKey) -> dict[str, Any]:
        body = self._body(request)
        if body.get("category") != "spot":
            raise BybitError(10001)
        if not body.get("symbol"):
            raise _empty("symbol")
        if not body.get("orderId") and not body.get("orderLinkId"):
            raise BybitError(10001)
        order_filter = body.get("orderFilter") or "Order"
        if order_filter not in ("Order", "tpslOrder", "StopOrder"):
            raise _invalid("orderFilter")
        order = self._find(account, body)
        if (
            order is None
            or order.symbol != body["symbol"]
            or not order.is_open
            # order_cancel-order.mdx, orderFilter row: "If not passed, `Order` by default":
            # a TP/SL or conditional order is cancelled only when the request names its kind.
            or order.extra.get("orderFilter", "Order") != order_filter
        ):
            raise BybitError(170213)
        deactivate = order.status == Status.UNTRIGGERED
        order.extra["cancelType"] = "CancelByUser"
        self.exchange.cancel(order, status=Status.DEACTIVATED if deactivate else Status.CANCELED)
        return {"orderId": order.order_id, "orderLinkId": order.client_id}

    def _query(self, request: Request, account: Account, *, history: bool) -> dict[str, Any]:
        params = request.query_params()
        if params.get("category") != "spot":
            if not params.get("category"):
                raise _empty("category")
            return {"category": params["category"], "list": [], "nextPageCursor": ""}
        try:
            limit = int(params.get("limit") or 20)
            offset = int(params.get("cursor") or 0)
        except ValueError:
            raise BybitError(10001) from None
        if not 1 <= limit <= 50:
            raise BybitError(10001)
        by_key = params.get("orderId") or params.get("orderLinkId")
        if by_key:
            found = self._find(account, params)
            candidates = [found] if found is not None else []
        else:
            candidates = [
                o for o in reversed(self.exchange.orders) if o.account_id == account.account_id
            ]
        symbol = params.get("symbol")
        order_filter = params.get("orderFilter")
        status_filter = params.get("orderStatus")
        open_only = params.get("openOnly", "0")
        rows = []
        for order in candidates:
            if symbol and order.symbol != symbol:
                continue
            if order_filter and order.extra.get("orderFilter", "Order") != order_filter:
                continue
            view = self.order_view(order)
            if status_filter and view["orderStatus"] != status_filter:
                continue
            if not history and not by_key:
                is_open = view["orderStatus"] in OPEN_NAMES
                if (open_only == "0") != is_open:
                    continue
            rows.append(view)
        page = rows[offset : offset + limit]
        cursor = str(offset + limit) if offset + limit < len(rows) else ""
        return {"category": "spot", "list": page, "nextPageCursor": cursor}

    def order_realtime(self, request: Request, account: Account, key: ApiKey) -> dict[str, Any]:
        return self._query(request, account, history=False)

    def order_history(self, request: Request, account: Account, key: ApiKey) -> dict[str, Any]:
        return self._query(request, account, history=True)

    def status_name(self, order: Order) -> str:
        if order.status == Status.EXPIRED:
            # enum.mdx: "Deactivated: UTA: Spot tp/sl order, conditional order, OCO order are
            # cancelled before they are triggered"; once triggered it is a market order,
            # whose unfilled remainder ends like any other's.
            triggered = bool(order.extra.get("triggered"))
            if (order.stop_price and not triggered) or order.extra.get("ended_by"):
                return "Deactivated"
            if order.executed_qty > 0:
                # enum.mdx orderStatus: "PartiallyFilledCanceled: Only spot has this order
                # status" (an IOC / market order whose remainder was cancelled).
                return "PartiallyFilledCanceled"
            return "Cancelled"
        return STATUS_NAMES[order.status]

    def order_view(self, order: Order) -> dict[str, Any]:
        extra = order.extra
        executed = order.executed_qty
        leaves = ZERO if not order.is_open else max(ZERO, order.qty - executed)
        avg = plain(order.cum_quote / executed) if executed else ""
        stop_type = extra.get("stopOrderType") or ""
        oco_trigger = ""
        if extra.get("orderFilter") == "tpslOrder" and extra.get("triggered"):
            oco_trigger = "OcoTriggerByTp" if stop_type == "TakeProfit" else "OcoTriggerByBySl"
        cancel_type = extra.get("cancelType", "UNKNOWN")
        ended_by = extra.get("ended_by")
        if ended_by is not None:
            cancel_type = (
                "CancelByOCOSlCanceledByTpTriggered"
                if stop_type == "StopLoss"
                else "CancelByOCOTpCanceledBySlTriggered"
            )
        tp = extra.get("takeProfit")
        sl = extra.get("stopLoss")
        return {
            "orderId": order.order_id,
            "orderLinkId": order.client_id,
            "parentOrderLinkId": extra.get("parentOrderLinkId", ""),
            "blockTradeId": "",
            "symbol": order.symbol,
            "price": plain(order.price),
            "qty": plain(order.quote_qty if order.quote_qty and not executed else order.qty),
            "side": "Buy" if order.side == "BUY" else "Sell",
            "isLeverage": "0",
            "positionIdx": 0,
            "orderStatus": self.status_name(order),
            "cancelType": cancel_type,
            "rejectReason": extra.get("rejectReason", "EC_NoError"),
            "avgPrice": avg,
            "leavesQty": plain(leaves),
            "leavesValue": plain(leaves * order.price) if order.price else "0",
            "cumExecQty": plain(executed),
            "cumExecValue": plain(order.cum_quote),
            "cumExecFee": plain(order.fee),
            "timeInForce": order.time_in_force,
            "orderType": order.type,
            "stopOrderType": stop_type,
            "orderIv": "",
            "marketUnit": extra.get("marketUnit", ""),
            "triggerPrice": plain(order.stop_price),
            "takeProfit": plain(tp) if tp is not None else "0",
            "stopLoss": plain(sl) if sl is not None else "0",
            "ocoTriggerBy": oco_trigger,
            "tpTriggerBy": "LastPrice" if tp is not None else "",
            "slTriggerBy": "LastPrice" if sl is not None else "",
            "triggerDirection": extra.get("triggerDirection", 0),
            "triggerBy": "LastPrice" if order.stop_price else "",
            "lastPriceOnCreated": "",
            "basePrice": extra.get("basePrice", ""),
            "reduceOnly": False,
            "closeOnTrigger": False,
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "tpLimitPrice": extra.get("tpLimitPrice", ""),
            "slLimitPrice": extra.get("slLimitPrice", ""),
            "placeType": "",
            "slippageToleranceType": "UNKNOWN",
            "slippageTolerance": "",
            "createdTime": str(order.created_ms),
            "updatedTime": str(order.updated_ms),
            "extraFees": "",
            "cumFeeDetail": {order.fee_asset: plain(order.fee)} if order.fee_asset else {},
            "rpiTakerAccess": False,
        }

    # executions --------------------------------------------------------------------------

    def execution_list(self, request: Request, account: Account, key: ApiKey) -> dict[str, Any]:
        """``GET /v5/execution/list`` (docs/v5/order/execution.mdx): the account's executions,
        newest first. orderId > orderLinkId > symbol > baseCoin: with an order id the symbol
        and base coin are ignored. The time window is at most 7 days (default: the last 7)."""
        params = request.query_params()
        category = params.get("category")
        if not category:
            raise _empty("category")
        if category not in ("spot", "linear", "inverse", "option"):
            raise BybitError(10001)
        try:
            limit = int(params.get("limit") or 50)
            offset = int(params.get("cursor") or 0)
            start = int(params["startTime"]) if params.get("startTime") else None
            end = int(params["endTime"]) if params.get("endTime") else None
        except ValueError:
            raise BybitError(10001) from None
        if not 1 <= limit <= 100:
            raise BybitError(10001)
        if category != "spot":
            return {"nextPageCursor": "", "category": category, "list": []}
        if start is None and end is None:
            end = self.clock.now_ms()
            start = end - EXECUTION_WINDOW_MS
        elif end is None:
            assert start is not None
            end = start + EXECUTION_WINDOW_MS
        elif start is None:
            start = end - EXECUTION_WINDOW_MS
        if end - start > EXECUTION_WINDOW_MS:
            raise BybitError(10001)
        wanted: Order | None = None
        by_order = bool(params.get("orderId") or params.get("orderLinkId"))
        if by_order:
            wanted = self._find(account, params)
            if wanted is None:
                return {"nextPageCursor": "", "category": "spot", "list": []}
        symbol = params.get("symbol")
        base_coin = params.get("baseCoin")
        exec_type = params.get("execType")
        rows = []
        for trade in reversed(self.exchange.trades):
            if trade.account_id != account.account_id or not start <= trade.time_ms <= end:
                continue
            if wanted is not None and trade.order_id != wanted.order_id:
                continue
            if not by_order and symbol and trade.symbol != symbol:
                continue
            inst = self.instruments[trade.symbol]
            if not by_order and not symbol and base_coin and inst.base != base_coin:
                continue
            if exec_type and exec_type != "Trade":
                continue
            rows.append(trade)
        page = rows[offset : offset + limit]
        cursor = str(offset + limit) if offset + limit < len(rows) else ""
        return {
            "nextPageCursor": cursor,
            "category": "spot",
            "list": [self.execution_view(t) for t in page],
        }

    def execution_view(self, trade: Fill) -> dict[str, Any]:
        """One execution, with the fields of execution.mdx (spot: no ``createType``)."""
        order = self.exchange.by_id[trade.order_id]
        done = sum((f.qty for f in order.fills if f.trade_id <= trade.trade_id), ZERO)
        leaves = max(ZERO, order.qty - done) if order.qty else ZERO
        return {
            "symbol": trade.symbol,
            "orderId": trade.order_id,
            "orderLinkId": order.client_id,
            "side": "Buy" if trade.side == "BUY" else "Sell",
            "orderPrice": plain(order.price),
            "orderQty": plain(order.qty if order.qty else order.quote_qty),
            "leavesQty": plain(leaves),
            "orderType": order.type,
            "stopOrderType": order.extra.get("stopOrderType") or "",
            "execFee": plain(trade.commission),
            "execId": str(EXEC_ID_BASE + trade.trade_id),
            "execPrice": plain(trade.price),
            "execQty": plain(trade.qty),
            "execType": "Trade",
            "execValue": plain(trade.price * trade.qty),
            "execTime": str(trade.time_ms),
            "feeCurrency": trade.commission_asset,
            "isMaker": trade.is_maker,
            "feeRate": plain(trade.fee_rate),
            "tradeIv": "",
            "markIv": "",
            "markPrice": "",
            "indexPrice": "",
            "underlyingPrice": "",
            "blockTradeId": "",
            "closedSize": "",
            "seq": trade.trade_id,
            "marketUnit": order.extra.get("marketUnit", ""),
            "extraFees": "",
        }

    # account -----------------------------------------------------------------------------

    def wallet_balance(self, request: Request, account: Account, key: ApiKey) -> dict[str, Any]:
        params = request.query_params()
        account_type = params.get("accountType")
        if not account_type:
            raise _empty("accountType")
        if account_type != "UNIFIED":
            raise BybitError(10001)
        wanted = {c for c in params.get("coin", "").split(",") if c}
        return {"list": [self.wallet_view(account, wanted)]}

    def wallet_view(self, account: Account, wanted: set[str] | None = None) -> dict[str, Any]:
        """One UNIFIED account as wallet-balance's ``list`` item and the wallet topic's data."""
        coins = []
        total = ZERO
        for asset in sorted(set(account.free) | set(account.locked)):
            free = account.available(asset)
            locked = account.locked.get(asset, ZERO)
            balance = free + locked
            if wanted and asset not in wanted:
                continue
            if not wanted and balance == 0:
                continue
            usd = balance * self._usd_price(asset)
            total += usd
            coins.append(
                {
                    "availableToBorrow": "",
                    "bonus": "0",
                    "accruedInterest": "0",
                    "availableToWithdraw": "",
                    "totalOrderIM": "0",
                    "equity": plain(balance),
                    "totalPositionMM": "0",
                    "usdValue": plain(usd.quantize(Decimal("0.00000001"))),
                    "spotHedgingQty": "0",
                    "unrealisedPnl": "0",
                    "collateralSwitch": True,
                    "borrowAmount": "0",
                    "totalPositionIM": "0",
                    "walletBalance": plain(balance),
                    "cumRealisedPnl": "0",
                    "locked": plain(locked),
                    "marginCollateral": True,
                    "coin": asset,
                    "spotBorrow": "0",
                }
            )
        total_text = plain(total.quantize(Decimal("0.00000001")))
        return {
            "totalEquity": total_text,
            "accountIMRate": "0",
            "accountIMRateByMp": "0",
            "totalMarginBalance": total_text,
            "totalInitialMargin": "0",
            "totalInitialMarginByMp": "0",
            "accountType": "UNIFIED",
            "totalAvailableBalance": total_text,
            "accountMMRate": "0",
            "accountMMRateByMp": "0",
            "totalPerpUPL": "0",
            "totalWalletBalance": total_text,
            "accountLTV": "0",
            "totalMaintenanceMargin": "0",
            "totalMaintenanceMarginByMp": "0",
            "coin": coins,
        }

    def _usd_price(self, asset: str) -> Decimal:
        if asset in ("USDT", "USDC", "USD"):
            return Decimal(1)
        symbol = f"{asset}USDT"
        return self.prices.price(symbol) if symbol in self.instruments else ZERO

    def account_info(self, request: Request, account: Account, key: ApiKey) -> dict[str, Any]:
        return {
            "marginMode": "REGULAR_MARGIN",
            "updatedTime": str(account.created_ms),
            "unifiedMarginStatus": 5,
            "dcpStatus": "OFF",
            "timeWindow": 0,
            "smpGroup": 0,
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
        }

    def position_list(self, request: Request, account: Account, key: ApiKey) -> dict[str, Any]:
        """Derivative positions (position_position.mdx). The simulator trades spot only, so
        every account's list is empty; the parameters are checked as documented."""
        params = request.query_params()
        category = params.get("category")
        if not category:
            raise _empty("category")
        if category not in ("linear", "inverse", "option"):
            raise BybitError(10001)
        if category == "linear" and not (params.get("symbol") or params.get("settleCoin")):
            raise BybitError(10001)
        return {"category": category, "nextPageCursor": "", "list": []}

    def query_api(self, request: Request, account: Account, key: ApiKey) -> dict[str, Any]:
        def iso(ms: int) -> str:
            return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        now = self.clock.now_ms()
        if key.expires_at_ms is not None:
            deadline_day = max(0, (key.expires_at_ms - now) // 86_400_000)
            expired_at = iso(key.expires_at_ms)
        else:
            deadline_day, expired_at = -2, "1970-01-01T00:00:00Z"
        return {
            "id": str(key.key_id),
            "note": "marketbot-sim",
            "apiKey": key.api_key,
            "readOnly": 0 if key.trade else 1,
            "secret": "",
            "permissions": _permissions(key),
            "ips": list(key.ips),
            "type": 1,
            "deadlineDay": deadline_day,
            "expiredAt": expired_at,
            "createdAt": iso(key.created_ms),
            "unified": 0,
            "uta": 1,
            "userID": account.uid,
            "inviterID": 0,
            "vipLevel": "No VIP",
            "mktMakerLevel": "0",
            "affiliateID": 0,
            "rsaPublicKey": "",
            "isMaster": True,
            "parentUid": "0",
            "kycLevel": "LEVEL_1",
            "kycRegion": "",
            "userIDInt64": "0",
            "inviterIDInt64": "0",
            "affiliateIDInt64": "0",
        }


_PERMISSION_GROUPS = (
    "ContractTrade",
    "Spot",
    "Wallet",
    "Options",
    "Derivatives",
    "CopyTrading",
    "BlockTrade",
    "Exchange",
    "NFT",
    "Affiliate",
    "Earn",
    "FiatP2P",
    "FiatConvertBroker",
    "FiatGlobalPay",
    "FiatBitPay",
    "BitCard",
    "ByXPost",
)


def _permissions(key: ApiKey) -> dict[str, list[str]]:
    """user_apikey-info.mdx "permissions": every group, as the real answer lists them."""
    groups: dict[str, list[str]] = {group: [] for group in _PERMISSION_GROUPS}
    if key.trade:
        groups["Spot"].append("SpotTrade")
    if key.withdraw:
        groups["Wallet"].append("Withdraw")
    for permission in key.extra:
        group, _, name = permission.partition(".")
        groups.setdefault(group, []).append(name)
    return groups
