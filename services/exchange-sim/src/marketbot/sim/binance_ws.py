"""Binance WebSocket API ``/ws-api/v3``: user data through ``userDataStream.subscribe.signature``.

web-socket-api.md: requests ``{"id", "method", "params"}``, responses ``{"id", "status",
"result"}`` or ``{"id", "status", "error": {"code", "msg"}}``; "You can have only one active
subscription for a given account on a given connection"; events ``{"subscriptionId",
"event"}`` ("Event format"). The events are user-data-stream.md's ``executionReport``,
``listStatus`` ("If the order is an order list, an event named ListStatus will be sent in
addition to the executionReport event") and ``outboundAccountPosition`` ("sent any time an
account balance has changed and contains the assets that were possibly changed by the event
that generated the balance change": one per engine step, after its order events).
``eventStreamTerminated`` ends a subscription stopped by ``userDataStream.unsubscribe``.
Ping frames every 20 s with a minute to answer are uvicorn's (server.py); the ``ping``
method answers ``{}``.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from hashlib import sha256
from typing import TYPE_CHECKING, Any

import orjson

from marketbot.sim.engine import ZERO, Fill, Order, OrderList, Status
from marketbot.sim.instruments import fixed8
from marketbot.sim.ws import Connection, StreamSession

if TYPE_CHECKING:
    from marketbot.sim.binance import BinanceApp

# web-socket-api.md "User Data Stream subscription": limits per session.
MAX_ACTIVE_SUBSCRIPTIONS = 1000
MAX_LIFETIME_SUBSCRIPTIONS = 65_535
CONNECT_WEIGHT = 2
# The methods' "Weight:" in web-socket-api.md (subscribe.signature, unsubscribe,
# session.subscriptions: 2; ping, time: 1).
METHOD_WEIGHTS = {
    "userDataStream.subscribe.signature": 2,
    "userDataStream.unsubscribe": 2,
    "session.subscriptions": 2,
    "ping": 1,
    "time": 1,
}
_EXECUTION_IDS = itertools.count(1)

_STATUS = {
    Status.NEW: "NEW",
    Status.UNTRIGGERED: "NEW",
    Status.TRIGGERED: "NEW",
    Status.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    Status.FILLED: "FILLED",
    Status.CANCELED: "CANCELED",
    Status.REJECTED: "REJECTED",
    Status.EXPIRED: "EXPIRED",
    Status.DEACTIVATED: "EXPIRED",
}


class WsApiError(Exception):
    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(slots=True)
class Subscription:
    subscription_id: int
    account_id: str
    api_key: str
    balances: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    balance_pending: bool = False


def signature_payload(params: dict[str, Any]) -> str:
    """web-socket-api.md "SIGNED request example (HMAC)": every param but ``signature``,
    sorted by name, ``name=value`` joined by ``&`` (the server's side of the payload)."""
    return "&".join(f"{k}={_text(params[k])}" for k in sorted(params) if k != "signature")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class BinanceUserDataSession(StreamSession):
    def __init__(self, connection: Connection, app: BinanceApp) -> None:
        super().__init__(connection)
        self.app = app
        self.subscriptions: dict[int, Subscription] = {}
        self._next_id = 0
        # web-socket-api.md "IP limits": "Connecting to WebSocket API costs 2 weight";
        # "Weight is accumulated per IP address and is shared by all connections".
        self._weigh(CONNECT_WEIGHT)

    def _weigh(self, weight: int) -> bool:
        """Add ``weight`` to the IP's REST+WS budget; False when it is over the limit."""
        app = self.app
        used = app.weights.add(self.connection.client_ip, app.clock.now_ms(), weight)
        return not app.limits_enabled or used <= app.weight_limit

    def accounts(self) -> set[str]:
        return {s.account_id for s in self.subscriptions.values()}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "venue": "binance",
            "subscriptions": {str(k): v.account_id for k, v in self.subscriptions.items()},
        }

    # requests ----------------------------------------------------------------------------

    def handle(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            self._error(None, WsApiError(-1102, "Mandatory parameter 'method' was not sent."))
            return
        request_id = message.get("id")
        params = message.get("params", {})
        if not isinstance(params, dict):
            self._error(request_id, WsApiError(-1102, "Parameter 'params' must be an object."))
            return
        method = str(message.get("method", ""))
        if not self._weigh(METHOD_WEIGHTS.get(method, 1)):
            # "If you go over the weight limit, requests fail with status 429".
            self._error(
                request_id,
                WsApiError(-1003, "Too many requests; current limit of IP is exceeded.", 429),
            )
            return
        try:
            result = self._dispatch(method, params)
        except WsApiError as exc:
            self._error(request_id, exc)
            return
        self.connection.reply({"id": request_id, "status": 200, "result": result})

    def _error(self, request_id: Any, exc: WsApiError) -> None:
        self.connection.reply(
            {
                "id": request_id,
                "status": exc.status,
                "error": {"code": exc.code, "msg": exc.message},
            }
        )

    def _dispatch(self, method: str, params: dict[str, Any]) -> Any:
        if method == "ping":
            return {}
        if method == "time":
            return {"serverTime": self.app.clock.now_ms()}
        if method == "userDataStream.subscribe.signature":
            return self._subscribe(params)
        if method == "userDataStream.unsubscribe":
            return self._unsubscribe(params)
        if method == "session.subscriptions":
            return [{"subscriptionId": sid} for sid in sorted(self.subscriptions)]
        # The simulator serves no other method; -1020 is errors.md's "This operation is
        # not supported."
        raise WsApiError(-1020, "This operation is not supported.")

    def _subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        from marketbot.sim.binance import (
            AHEAD,
            API_KEY,
            INVALID_KEY,
            OUTSIDE_WINDOW,
        )

        api_key = params.get("apiKey")
        if not api_key:
            raise _mandatory("apiKey")
        if not isinstance(api_key, str) or not API_KEY.match(api_key):
            raise WsApiError(-2014, "API-key format invalid.", 401)
        if params.get("timestamp") in (None, ""):
            raise _mandatory("timestamp")
        signature = params.get("signature")
        if not signature or not isinstance(signature, str):
            raise _mandatory("signature")
        try:
            ts = int(params["timestamp"])
            window = Decimal(str(params.get("recvWindow", "5000")))
        except (ValueError, ArithmeticError):
            raise _mandatory("timestamp") from None
        if not 0 < window <= 60000:  # "The value cannot be greater than 60000."
            raise WsApiError(-1130, "Data sent for parameter 'recvWindow' is not valid.")
        now = self.app.clock.now_ms()
        ts_ms = Decimal(ts) / 1000 if ts > 10**14 else Decimal(ts)
        # web-socket-api.md "Timing security".
        if ts_ms >= now + 1000:
            raise WsApiError(-1021, AHEAD)
        if now - ts_ms > window:
            raise WsApiError(-1021, OUTSIDE_WINDOW)
        key = self.app.exchange.keys.get(api_key)
        if key is None:
            raise WsApiError(-2015, INVALID_KEY, 401)
        expected = hmac.new(key.secret_bytes, signature_payload(params).encode(), sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature.lower()):
            raise WsApiError(-1022, "Signature for this request is not valid.")
        if not key.allows_ip(self.connection.client_ip) or not key.read:
            raise WsApiError(-2015, INVALID_KEY, 401)
        if key.expires_at_ms is not None and key.expires_at_ms <= now:
            raise WsApiError(-2015, INVALID_KEY, 401)
        if key.account_id in self.accounts():
            raise WsApiError(-2035, "User Data Stream subscription already active.")
        if self._next_id >= MAX_LIFETIME_SUBSCRIPTIONS:
            raise WsApiError(-2042, "Maximum subscription ID reached for this connection.")
        if len(self.subscriptions) >= MAX_ACTIVE_SUBSCRIPTIONS:
            # "Attempting to start a new subscription beyond this limit will result in an
            # error" (no code given; the simulator uses the lifetime limit's).
            raise WsApiError(-2042, "Too many active subscriptions for this connection.")
        subscription = Subscription(self._next_id, key.account_id, api_key)
        subscription.balances = self._snapshot(key.account_id)
        self.subscriptions[self._next_id] = subscription
        self._next_id += 1
        return {"subscriptionId": subscription.subscription_id}

    def _unsubscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        wanted = params.get("subscriptionId")
        ids = sorted(self.subscriptions) if wanted is None else [int(wanted)]
        for sid in ids:
            subscription = self.subscriptions.pop(sid, None)
            if subscription is None:
                raise WsApiError(-2036, "User Data Stream subscription not active.")
            self.connection.event(
                {
                    "subscriptionId": sid,
                    "event": {"e": "eventStreamTerminated", "E": self.app.clock.now_ms()},
                }
            )
        return {}

    def shutdown(self) -> None:
        """web-socket-api.md "Connection events": ``serverShutdown`` "is sent when the server
        is about to shut down", without a subscriptionId; then the connection closes."""
        self.connection.event({"event": {"e": "serverShutdown", "E": self.app.clock.now_ms()}})
        self.connection.cut(mode="close")

    # events ------------------------------------------------------------------------------

    def _of(self, account_id: str) -> list[Subscription]:
        return [s for s in self.subscriptions.values() if s.account_id == account_id]

    def on_order(self, order: Order, fill: Fill | None) -> None:
        subscriptions = self._of(order.account_id)
        if not subscriptions:
            return
        reports = self.execution_reports(order, fill)
        for subscription in subscriptions:
            for report in reports:
                self.connection.event(
                    {"subscriptionId": subscription.subscription_id, "event": report}
                )
            self._balances_soon(subscription)

    def on_list(self, order_list: OrderList) -> None:
        if not order_list.orders:
            return
        event = self.list_status(order_list)
        for subscription in self._of(order_list.orders[0].account_id):
            self.connection.event({"subscriptionId": subscription.subscription_id, "event": event})
            self._balances_soon(subscription)

    def on_funds(self, account_id: str) -> None:
        for subscription in self._of(account_id):
            self._balances_soon(subscription)

    def execution_reports(self, order: Order, fill: Fill | None) -> list[dict[str, Any]]:
        """One executionReport per change; a trade that leaves the order expired (IOC or
        market remainder) is its TRADE (PARTIALLY_FILLED) then its EXPIRED."""
        status = _STATUS[order.status]
        if fill is None:
            execution = "NEW" if order.is_open else status
            return [self._report(order, None, execution, status)]
        if order.status == Status.FILLED:
            return [self._report(order, fill, "TRADE", "FILLED")]
        return [
            self._report(order, fill, "TRADE", "PARTIALLY_FILLED"),
            self._report(order, None, status, status, after_trade=True),
        ]

    def _report(
        self,
        order: Order,
        fill: Fill | None,
        execution: str,
        status: str,
        *,
        after_trade: bool = False,
    ) -> dict[str, Any]:
        now = self.app.clock.now_ms()
        canceled = execution == "CANCELED"
        quote_qty = order.quote_qty
        report: dict[str, Any] = {
            "e": "executionReport",
            "E": now,
            "s": order.symbol,
            "c": order.extra.get("cancelClientOrderId", order.client_id)
            if canceled
            else order.client_id,
            "S": order.side,
            "o": order.type,
            "f": order.time_in_force or "GTC",
            "q": fixed8(order.qty),
            "p": fixed8(order.price),
            "P": fixed8(order.stop_price),
            "F": fixed8(ZERO),
            "g": order.list_id,
            "C": order.client_id if canceled else "",
            "x": execution,
            "X": status,
            "r": "NONE",
            "i": int(order.order_id),
            "l": fixed8(fill.qty if fill else ZERO),
            "z": fixed8(order.executed_qty),
            "L": fixed8(fill.price if fill else ZERO),
            "n": fixed8(fill.commission) if fill else "0",
            "N": fill.commission_asset if fill else None,
            "T": fill.time_ms if fill else order.updated_ms,
            "t": fill.trade_id if fill else -1,
            "I": next(_EXECUTION_IDS),
            "w": order.is_open and order.status != Status.UNTRIGGERED and not order.market,
            "m": fill.is_maker if fill else False,
            "M": False,
            "O": order.created_ms,
            "Z": fixed8(order.cum_quote),
            "Y": fixed8(fill.price * fill.qty if fill else ZERO),
            "Q": fixed8(quote_qty),
            "V": "NONE",
        }
        if order.working_ms >= 0:
            report["W"] = order.working_ms
        if after_trade and order.extra.get("partial_remainder"):
            report["eR"] = "INSUFFICIENT_LIQUIDITY"
        return report

    def list_status(self, order_list: OrderList) -> dict[str, Any]:
        done = order_list.done
        return {
            "e": "listStatus",
            "E": self.app.clock.now_ms(),
            "s": order_list.symbol,
            "g": order_list.list_id,
            "c": "OCO",
            "l": "ALL_DONE" if done else "EXEC_STARTED",
            "L": "ALL_DONE" if done else "EXECUTING",
            "r": "NONE",
            "C": order_list.list_client_id,
            "T": order_list.updated_ms,
            "O": [
                {"s": leg.symbol, "i": int(leg.order_id), "c": leg.client_id}
                for leg in order_list.orders
            ],
        }

    def _snapshot(self, account_id: str) -> dict[str, tuple[Decimal, Decimal]]:
        account = self.app.exchange.accounts.get(account_id)
        if account is None:
            return {}
        assets = set(account.free) | set(account.locked)
        return {a: (account.available(a), account.locked.get(a, ZERO)) for a in assets}

    def _balances_soon(self, subscription: Subscription) -> None:
        if not subscription.balance_pending:
            subscription.balance_pending = True
            asyncio.get_running_loop().call_soon(self._balances, subscription)

    def _balances(self, subscription: Subscription) -> None:
        subscription.balance_pending = False
        if self.subscriptions.get(subscription.subscription_id) is not subscription:
            return
        current = self._snapshot(subscription.account_id)
        changed = sorted(
            a
            for a in set(current) | set(subscription.balances)
            if current.get(a) != subscription.balances.get(a)
        )
        subscription.balances = current
        if not changed:
            return
        now = self.app.clock.now_ms()
        self.connection.event(
            {
                "subscriptionId": subscription.subscription_id,
                "event": {
                    "e": "outboundAccountPosition",
                    "E": now,
                    "u": now,
                    "B": [
                        {
                            "a": a,
                            "f": fixed8(current.get(a, (ZERO, ZERO))[0]),
                            "l": fixed8(current.get(a, (ZERO, ZERO))[1]),
                        }
                        for a in changed
                    ],
                },
            }
        )


def _mandatory(name: str) -> WsApiError:
    return WsApiError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )
