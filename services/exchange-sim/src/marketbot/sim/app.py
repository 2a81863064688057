"""What the Bybit and Binance apps share: request dispatch, faults, server clock, admin API."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from decimal import Decimal, InvalidOperation
from typing import Any

from marketbot.sim.asgi import (
    ADMIN_PREFIX,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    drop_connection,
    json_response,
    lifespan,
    read_body,
    request_from,
    send_response,
)
from marketbot.sim.engine import Exchange, Order
from marketbot.sim.faults import Faults
from marketbot.sim.prices import PriceBook
from marketbot.sim.ws import SessionFactory, StreamHub


class ServerClock:
    """Exchange server time in ms; an admin-settable offset simulates a drifting server."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


class AdminError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_decimal(value: Any, name: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise AdminError(f"{name} must be a decimal string") from exc
    if not result.is_finite():
        raise AdminError(f"{name} must be finite")
    return result


class BaseApp(ABC):
    """A raw ASGI app. Subclasses implement ``handle`` (sync, the hot path) and ``server_error``."""

    venue = "base"
    api_key_header = b""
    """The header naming the API key of a signed request (for the request log)."""
    # uvicorn's WebSocket keepalive for this port (server.py): ping frame interval and how
    # long the client has to answer, or None for no server pings.
    ws_ping_interval_s: float | None = None
    ws_ping_timeout_s: float | None = None

    def __init__(self, *, prices: PriceBook, clock: ServerClock, seed: int) -> None:
        self.prices = prices
        self.clock = clock
        self.faults = Faults(seed)
        self.limits_enabled = True
        self._late: set[asyncio.Task[None]] = set()
        self.reset_stats()

    # ground truth about what the clients did -------------------------------------------

    LIMIT_STATUSES = (403, 418, 429)

    def reset_stats(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.limit_answers: Counter[str] = Counter()
        self.limit_events: deque[tuple[int, str]] = deque(maxlen=100_000)
        self.late_executions = 0
        self.request_log: deque[tuple[int, str, str, str]] = deque(maxlen=1_000_000)
        """Every non-admin request as it arrived: (server ms, method, path, API key or "")."""

    def count_limit_answer(self, what: str, now_ms: int) -> None:
        """One rate-limit answer (HTTP 429/418/403, or a venue code such as Bybit's 10006)."""
        self.limit_answers[what] += 1
        self.limit_events.append((now_ms, what))

    def _count(self, response: Response, now_ms: int) -> None:
        self.statuses[response.status] += 1
        if response.status in self.LIMIT_STATUSES:
            self.count_limit_answer(str(response.status), now_ms)

    def stats(self) -> dict[str, Any]:
        return {
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "limit_answers": dict(self.limit_answers),
            "limit_events": [[at, what] for at, what in self.limit_events],
            "late_executions": self.late_executions,
            "late_pending": len(self._late),
        }

    def account_of(self, api_key: str) -> str:
        """The account an API key belongs to ("" when unknown or unsigned)."""
        del api_key
        return ""

    def requests_view(self, params: dict[str, str]) -> dict[str, Any]:
        """The request log since ``since_ms`` (server time), optionally of one account:
        ``requests`` [[ms, method, path, account]] and ``counts`` per "METHOD path"."""
        since = int(params.get("since_ms", "0") or 0)
        wanted = params.get("account_id")
        rows = []
        counts: Counter[str] = Counter()
        for at, method, path, api_key in self.request_log:
            if at < since:
                continue
            account = self.account_of(api_key) if api_key else ""
            if wanted is not None and account != wanted:
                continue
            rows.append([at, method, path, account])
            counts[f"{method} {path}"] += 1
        return {"requests": rows, "counts": dict(counts), "total": len(rows)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan(receive, send)
            elif scope["type"] == "websocket":
                await self.websocket(scope, receive, send)
            return
        request = request_from(scope, await read_body(receive))
        if request.path.startswith(ADMIN_PREFIX):
            await send_response(send, self._admin(request))
            return
        request.received_ms = self.clock.now_ms()
        self.request_log.append(
            (
                request.received_ms,
                request.method,
                request.path,
                (request.header(self.api_key_header) or "") if self.api_key_header else "",
            )
        )
        decision = self.faults.decide(request.method, request.path)
        action = decision.action
        if action == "executed_late":
            # Answer "timed out, status unknown" now; the request (already admitted: its
            # signed timestamp was good on arrival and when forwarded) executes later. Binance:
            # "If a response from the Matching Engine takes longer than this, the API responds
            # with ... -1007 TIMEOUT. This does not always mean that the request failed in the
            # Matching Engine" (rest-api.md, General API Information); its recvWindow checks
            # happen on receipt and before forwarding, not at execution (Timing security).
            await send_response(send, self.timeout_error())
            task = asyncio.create_task(self._execute_late(request, decision.execute_after_ms))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            return
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        if action == "drop":
            await drop_connection(send)
            return
        if action == "http_5xx":
            await send_response(send, self.server_error(decision.status))
            return
        response = self.handle(request)
        self._count(response, request.received_ms)
        if action == "executed_5xx":
            response = self.server_error(decision.status)
        elif action == "executed_drop":
            await drop_connection(send)
            return
        elif action == "executed_slow":
            await asyncio.sleep(decision.answer_after_ms / 1000)
        await send_response(send, response)

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """No WebSocket on this port: refuse the handshake (HTTP 403)."""
        await receive()
        await send({"type": "websocket.close", "code": 1008})

    async def _execute_late(self, request: Request, after_ms: int) -> None:
        await asyncio.sleep(after_ms / 1000)
        response = self.handle(request)
        self._count(response, request.received_ms or self.clock.now_ms())
        if response.status < 400:
            self.late_executions += 1

    @abstractmethod
    def handle(self, request: Request) -> Response:
        """Each exchange's app implements this."""

    @abstractmethod
    def server_error(self, status: int) -> Response:
        """Each exchange's app implements this."""

    def timeout_error(self) -> Response:
        """The venue's "timed out; execution status unknown" answer (default: a 504)."""
        return self.server_error(504)

    # admin -------------------------------------------------------------------------------

    def _admin(self, request: Request) -> Response:
        try:
            payload = request.json() if request.method in ("POST", "PUT") else {}
            if not isinstance(payload, dict):
                raise AdminError("expected a JSON object")
            result = self.admin(request.method, request.path[len(ADMIN_PREFIX) :], request, payload)
        except AdminError as exc:
            return json_response(exc.status, {"error": str(exc)})
        except (KeyError, ValueError, TypeError) as exc:
            return json_response(400, {"error": f"{type(exc).__name__}: {exc}"})
        if result is None:
            return json_response(404, {"error": f"no admin route {request.method} {request.path}"})
        return json_response(200, result)

    def admin(
        self, method: str, route: str, request: Request, body: dict[str, Any]
    ) -> dict[str, Any] | list[Any] | None:
        match method, route:
            case "GET", "health":
                return {"ok": True, "venue": self.venue}
            case "GET", "prices":
                return {"prices": {s: str(self.prices.price(s)) for s in self.prices.symbols()}}
            case "POST", "prices":
                symbol = str(body["symbol"])
                if symbol not in self.prices.symbols():
                    raise AdminError(f"unknown symbol {symbol}", 404)
                self.prices.set(symbol, parse_decimal(body["price"], "price"))
                return {"symbol": symbol, "price": str(self.prices.price(symbol))}
            case "POST", "prices/step":
                steps = int(body.get("steps", 1))
                if not 0 <= steps <= 100_000:
                    raise AdminError("steps must be within [0, 100000]")
                self.prices.step(steps)
                return {"prices": {s: str(self.prices.price(s)) for s in self.prices.symbols()}}
            case "GET", "faults":
                return {"faults": [f.as_dict() for f in self.faults.rules]}
            case "POST", "faults":
                fault = self.faults.add(
                    str(body["kind"]),
                    rate=None if body.get("rate") is None else float(body["rate"]),
                    next_n=None if body.get("next_n") is None else int(body["next_n"]),
                    latency_ms=None if body.get("latency_ms") is None else int(body["latency_ms"]),
                    path=body.get("path"),
                    status=int(body.get("status", 503)),
                    method=None if body.get("method") is None else str(body["method"]).upper(),
                )
                return {"fault": fault.as_dict()}
            case "DELETE", "faults":
                self.faults.clear()
                return {"faults": []}
            case "GET", "stats":
                return self.stats()
            case "DELETE", "stats":
                self.reset_stats()
                return self.stats()
            case "POST", "clock/now":
                return {"server_time": self.clock.now_ms()}
            case "GET", "requests":
                return self.requests_view(request.query_params())
            case "POST", "clock":
                self.clock.offset_ms = int(body.get("offset_ms", 0))
                return {"offset_ms": self.clock.offset_ms, "server_time": self.clock.now_ms()}
        return None


class ExchangeApp(BaseApp):
    """An exchange venue: accounts, keys, orders, limits on top of the shared admin routes."""

    key_length = 64
    secret_length = 64

    def __init__(
        self, *, exchange: Exchange, prices: PriceBook, clock: ServerClock, seed: int
    ) -> None:
        super().__init__(prices=prices, clock=clock, seed=seed)
        self.exchange = exchange
        # The private streams: path -> session factory (each venue registers its own).
        self.streams = StreamHub(**self.stream_settings())
        self.streams.limits_on = lambda: self.limits_enabled
        self.stream_routes: dict[str, SessionFactory] = {}
        exchange.order_listeners.append(self.streams.on_order)
        exchange.list_listeners.append(self.streams.on_list)
        exchange.funds_listeners.append(self.streams.on_funds)

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        factory = self.stream_routes.get(scope.get("path", ""))
        if factory is None:
            await super().websocket(scope, receive, send)
            return
        await self.streams.serve(scope, receive, send, factory)

    def stream_settings(self) -> dict[str, Any]:
        """The venue's stream expiries and connection limit (``StreamHub`` arguments)."""
        return {}

    @abstractmethod
    def reset_limits(self) -> None:
        """Each exchange's app implements this."""

    @abstractmethod
    def configure_limits(self, body: dict[str, Any]) -> dict[str, Any]:
        """Each exchange's app implements this."""

    @abstractmethod
    def order_view(self, order: Order) -> dict[str, Any]:
        """Each exchange's app implements this."""

    def admin(
        self, method: str, route: str, request: Request, body: dict[str, Any]
    ) -> dict[str, Any] | list[Any] | None:
        exchange = self.exchange
        match method, route:
            case "POST", "accounts":
                account = exchange.create_account(body.get("account_id"))
                return {"account_id": account.account_id, "uid": account.uid}
            case "POST", "keys":
                account_id = str(body["account_id"])
                if account_id not in exchange.accounts:
                    raise AdminError(f"unknown account {account_id}", 404)
                ips = body.get("ips")
                key = exchange.create_key(
                    account_id,
                    key_length=self.key_length,
                    secret_length=self.secret_length,
                    read=bool(body.get("read", True)),
                    trade=bool(body.get("trade", True)),
                    withdraw=bool(body.get("withdraw", False)),
                    ips=[str(ip) for ip in ips] if ips else None,
                    expires_at_ms=body.get("expires_at_ms"),
                    api_key=body.get("api_key"),
                    secret=body.get("api_secret"),
                    extra=tuple(str(p) for p in body.get("extra_permissions") or ()),
                )
                return {"api_key": key.api_key, "api_secret": key.secret}
            case "POST", "keys/permissions":
                # The account holder edits the key on the exchange (e.g. adds margin).
                edited = exchange.keys.get(str(body.get("api_key")))
                if edited is None:
                    raise AdminError("unknown api key", 404)
                edited.extra = tuple(str(p) for p in body.get("extra_permissions") or ())
                if "withdraw" in body:
                    edited.withdraw = bool(body["withdraw"])
                return {"api_key": edited.api_key, "extra_permissions": list(edited.extra)}
            case "POST", "fund":
                account_id = str(body["account_id"])
                if account_id not in exchange.accounts:
                    raise AdminError(f"unknown account {account_id}", 404)
                exchange.fund(
                    account_id, str(body["asset"]), parse_decimal(body["amount"], "amount")
                )
                return self._balances(account_id)
            case "GET", "balances":
                account_id = request.query_params().get("account_id", "")
                if account_id not in exchange.accounts:
                    raise AdminError(f"unknown account {account_id}", 404)
                return self._balances(account_id)
            case "GET", "orders":
                wanted = request.query_params().get("account_id")
                return {
                    "orders": [
                        self.admin_order(o)
                        for o in exchange.orders
                        if wanted is None or o.account_id == wanted
                    ]
                }
            case "POST", "limits":
                return self.configure_limits(body)
            case "POST", "liquidity":
                symbol = str(body["symbol"])
                if symbol not in exchange.instruments:
                    raise AdminError(f"unknown symbol {symbol}", 404)
                if body.get("max_qty") is None:
                    exchange.liquidity.pop(symbol, None)
                else:
                    exchange.liquidity[symbol] = parse_decimal(body["max_qty"], "max_qty")
                return {"liquidity": {s: str(q) for s, q in exchange.liquidity.items()}}
            case "POST", "triggers":
                # Hold triggered orders unexecuted (TRIGGERED) until released.
                if body.get("hold"):
                    exchange.hold_triggers = True
                    return {"hold": True, "released": 0}
                return {"hold": False, "released": exchange.release_triggers()}
            case "GET", "streams":
                return self.streams.describe()
            case "POST", "streams/expiry":
                # Shorten (or restore) the documented expiries for a test.
                return self.streams.configure(body)
            case "POST", "streams/shutdown":
                return {"shut": self.streams.shutdown()}
            case "POST", "streams/disconnect":
                # Cut the private-stream connections of one account (all when omitted), now
                # or after each has sent ``after_events`` more events; ``mode`` "drop" closes
                # the TCP connection without a close frame, "close" sends close 1001,
                # "stall" keeps it open and silent (only a heartbeat notices).
                after = int(body.get("after_events", 0))
                mode = str(body.get("mode", "drop"))
                if after < 0 or mode not in ("drop", "close", "stall"):
                    raise AdminError(
                        "after_events must be >= 0 and mode 'drop', 'close' or 'stall'"
                    )
                wanted = body.get("account_id")
                cut = self.streams.cut(None if wanted is None else str(wanted), after, mode)
                return {"cut": cut}
            case "POST", "reset":
                self.streams.cut(None, 0, "close")
                self.streams.reset()
                exchange.reset()
                self.faults.clear()
                self.reset_limits()
                self.reset_stats()
                self.clock.offset_ms = 0
                if body.get("prices", True):
                    self.prices.reset()
                return {"ok": True}
        return super().admin(method, route, request, body)

    def account_of(self, api_key: str) -> str:
        key = self.exchange.keys.get(api_key)
        return key.account_id if key is not None else ""

    def _balances(self, account_id: str) -> dict[str, Any]:
        account = self.exchange.accounts[account_id]
        assets = sorted(set(account.free) | set(account.locked))
        return {
            "account_id": account_id,
            "balances": {
                a: {
                    "free": format(account.available(a), "f"),
                    "locked": format(account.locked.get(a, Decimal(0)), "f"),
                }
                for a in assets
            },
        }

    def admin_order(self, order: Order) -> dict[str, Any]:
        """The ground-truth view of an order, venue-neutral field names plus the venue's view."""
        return {
            "venue": self.venue,
            "account_id": order.account_id,
            "order_id": order.order_id,
            "client_order_id": order.client_id,
            "symbol": order.symbol,
            "side": order.side,
            "type": order.type,
            "status": order.status.value,
            "qty": str(order.qty),
            "quote_qty": str(order.quote_qty),
            "price": str(order.price),
            "stop_price": str(order.stop_price),
            "executed_qty": str(order.executed_qty),
            "cum_quote": str(order.cum_quote),
            "fee": str(order.fee),
            "fee_asset": order.fee_asset,
            "order_list_id": order.list_id,
            "created_ms": order.created_ms,
            "updated_ms": order.updated_ms,
            "native": self.order_view(order),
        }
