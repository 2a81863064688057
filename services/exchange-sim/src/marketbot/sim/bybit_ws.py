"""Bybit V5 private WebSocket ``/v5/private``: auth, subscribe to order/execution/wallet, ping.

websocket_wss-authentication.mdx: ``{"op": "auth", "args": [api_key, expires, signature]}``
with ``signature = hex(HMAC_SHA256(secret, "GET/realtime" + expires))`` and ``expires``
"greater than your current timestamp"; ``{"op": "ping"}`` answered by the private pong;
``{"op": "subscribe", "args": [...]}`` answered by the private subscription response. The
pushed messages are websocket_private_order.mdx, websocket_private_execution.mdx and
websocket_private_wallet.mdx (``id``, ``topic``, ``creationTime``, ``data``).

Bybit documents no order between topics; the simulator sends, for one change of one order,
``order`` then ``execution`` (when it traded), and ``wallet`` once the engine's step is over
(when a balance changed). Clients must not depend on it.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
from decimal import Decimal
from hashlib import sha256
from typing import TYPE_CHECKING, Any

import orjson

from marketbot.sim.engine import Fill, Order, OrderList
from marketbot.sim.ws import Connection, StreamSession

if TYPE_CHECKING:
    from marketbot.sim.bybit import BybitApp

# Spot only: the all-in-one topics and their spot-categorised forms (websocket_private_*).
TOPICS = frozenset({"order", "order.spot", "execution", "execution.spot", "wallet"})
# V5 answers every failed auth (expired, unknown key, bad signature) with "Params Error":
# pybit#300 (clock out of sync), JKorf/Bybit.Net#231 (bad key), api-usage-examples#70.
AUTH_FAILED = "Params Error"
_MESSAGE_IDS = itertools.count(1)


def max_active_time(query: str) -> float | None:
    """websocket_wss-authentication.mdx "Customise Private Connection Alive Time":
    ``max_active_time`` "the lowest value is `30s` (30 seconds), the highest value is `600s`
    (10 minutes)", or in minutes (``1m``, ``2m``). Outside the range or malformed: ignored
    (the default 10 minutes stays)."""
    from urllib.parse import parse_qs

    values = parse_qs(query).get("max_active_time")
    if not values:
        return None
    text = values[0].strip()
    try:
        if text.endswith("s"):
            seconds = float(int(text[:-1]))
        elif text.endswith("m"):
            seconds = float(int(text[:-1]) * 60)
        else:
            return None
    except ValueError:
        return None
    return seconds if 30 <= seconds <= 600 else None


class BybitPrivateSession(StreamSession):
    def __init__(self, connection: Connection, app: BybitApp) -> None:
        super().__init__(connection)
        self.app = app
        self.account_id: str | None = None
        self.topics: set[str] = set()
        self._balances: dict[str, tuple[Decimal, Decimal]] = {}
        self._wallet_pending = False
        alive = max_active_time(connection.query)
        if alive is not None:
            connection.idle_s = alive

    def accounts(self) -> set[str]:
        return {self.account_id} if self.account_id is not None else set()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "venue": "bybit", "topics": sorted(self.topics)}

    # requests ----------------------------------------------------------------------------

    def handle(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            self._answer({}, "", success=False, ret_msg="error:invalid message")
            return
        op = message.get("op")
        if op == "ping":
            pong: dict[str, Any] = {
                "req_id": str(message.get("req_id", "")),
                "op": "pong",
                "args": [str(self.app.clock.now_ms())],
                "conn_id": self.connection.conn_id,
            }
            self.connection.reply(pong)
        elif op == "auth":
            self._auth(message)
        elif op == "subscribe":
            self._subscribe(message, subscribe=True)
        elif op == "unsubscribe":
            self._subscribe(message, subscribe=False)
        else:
            # api-connectors#99: an unknown op is refused with "error:invalid op".
            self._answer(message, str(op), success=False, ret_msg="error:invalid op")

    def _answer(
        self, message: dict[str, Any], op: str, *, success: bool, ret_msg: str = ""
    ) -> None:
        reply: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "op": op}
        if "req_id" in message:
            reply["req_id"] = str(message["req_id"])
        reply["conn_id"] = self.connection.conn_id
        self.connection.reply(reply)

    def _auth(self, message: dict[str, Any]) -> None:
        args = message.get("args")
        account_id = self._verify(args) if isinstance(args, list) else None
        if account_id is None:
            self._answer(message, "auth", success=False, ret_msg=AUTH_FAILED)
            return
        self.account_id = account_id
        self._balances = self._snapshot()
        self._answer(message, "auth", success=True)

    def _verify(self, args: list[Any]) -> str | None:
        if len(args) != 3:
            return None
        api_key, expires, signature = args
        if not isinstance(api_key, str) or not isinstance(signature, str):
            return None
        try:
            expires_ms = int(expires)
        except (TypeError, ValueError):
            return None
        now = self.app.clock.now_ms()
        if expires_ms <= now:  # "expires; is greater than your current timestamp"
            return None
        key = self.app.exchange.keys.get(api_key)
        if key is None:
            return None
        expected = hmac.new(key.secret_bytes, f"GET/realtime{expires}".encode(), sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature.lower()):
            return None
        if not key.allows_ip(self.connection.client_ip):
            return None
        if key.expires_at_ms is not None and key.expires_at_ms <= now:
            return None
        return key.account_id

    def _subscribe(self, message: dict[str, Any], *, subscribe: bool) -> None:
        op = "subscribe" if subscribe else "unsubscribe"
        if self.account_id is None:
            # pybit (verata-veritatis/pybit#37): private topics before auth are refused.
            self._answer(message, op, success=False, ret_msg="error:topic needs auth first")
            return
        args = message.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            self._answer(message, op, success=False, ret_msg="error:args must be topics")
            return
        unknown = [a for a in args if a not in TOPICS]
        if unknown:
            self._answer(message, op, success=False, ret_msg=f"error:invalid topic {unknown[0]}")
            return
        if subscribe:
            self.topics.update(args)
        else:
            self.topics.difference_update(args)
        self._answer(message, op, success=True)

    # events ------------------------------------------------------------------------------

    def _push(self, topic: str, data: list[dict[str, Any]]) -> None:
        self.connection.event(
            {
                "id": f"{self.connection.conn_id}-{next(_MESSAGE_IDS)}",
                "topic": topic,
                "creationTime": self.app.clock.now_ms(),
                "data": data,
            }
        )

    def _topic(self, name: str) -> str | None:
        for topic in (name, f"{name}.spot"):
            if topic in self.topics:
                return topic
        return None

    def on_order(self, order: Order, fill: Fill | None) -> None:
        topic = self._topic("order")
        if topic is not None:
            self._push(topic, [{"category": "spot", **self.app.order_view(order)}])
        topic = self._topic("execution")
        if topic is not None and fill is not None:
            execution = {"category": "spot", "isLeverage": "0", **self.app.execution_view(fill)}
            self._push(topic, [execution])
        self._wallet_soon()

    def on_list(self, order_list: OrderList) -> None:
        return None  # Bybit has no order-list topic

    def on_funds(self, account_id: str) -> None:
        self._wallet_soon()

    def _wallet_soon(self) -> None:
        """After the engine's synchronous step: one wallet message if a balance changed."""
        if "wallet" in self.topics and not self._wallet_pending:
            self._wallet_pending = True
            asyncio.get_running_loop().call_soon(self._wallet)

    def _snapshot(self) -> dict[str, tuple[Decimal, Decimal]]:
        account = self.app.exchange.accounts.get(self.account_id or "")
        if account is None:
            return {}
        assets = set(account.free) | set(account.locked)
        return {a: (account.available(a), account.locked.get(a, Decimal(0))) for a in assets}

    def _wallet(self) -> None:
        self._wallet_pending = False
        current = self._snapshot()
        if current == self._balances or "wallet" not in self.topics:
            return
        self._balances = current
        account = self.app.exchange.accounts.get(self.account_id or "")
        if account is not None:
            self._push("wallet", [self.app.wallet_view(account)])


class BybitPublicSession(StreamSession):
    """``/v5/public/spot``: ``tickers.{symbol}`` (websocket_public_ticker.mdx). Spot tickers
    are ``snapshot`` only; one is sent on subscribe and on every price change (the real
    stream pushes every 50 ms; the simulator's price only changes when moved). The public
    spot pong is ``{"success": true, "ret_msg": "pong", "conn_id", "op": "ping"}`` and the
    subscribe answer ``{"success", "ret_msg": "subscribe", "conn_id", "req_id", "op"}``
    (websocket_wss-authentication.mdx). At most 10 args per spot subscribe request
    ("Public channel - Args limits")."""

    def __init__(self, connection: Connection, app: BybitApp) -> None:
        super().__init__(connection)
        self.app = app
        self.symbols: set[str] = set()
        self._cs = itertools.count(1)

    def accounts(self) -> set[str]:
        return set()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "venue": "bybit-public", "symbols": sorted(self.symbols)}

    def handle(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            self._answer({}, "", success=False, ret_msg="error:invalid message")
            return
        op = str(message.get("op", ""))
        if op == "ping":
            self._answer(message, "ping", success=True, ret_msg="pong")
        elif op in ("subscribe", "unsubscribe"):
            self._subscribe(message, op)
        else:
            self._answer(message, op, success=False, ret_msg="error:invalid op")

    def _answer(self, message: dict[str, Any], op: str, *, success: bool, ret_msg: str) -> None:
        self.connection.reply(
            {
                "success": success,
                "ret_msg": ret_msg,
                "conn_id": self.connection.conn_id,
                "req_id": str(message.get("req_id", "")),
                "op": op,
            }
        )

    def _subscribe(self, message: dict[str, Any], op: str) -> None:
        args = message.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            self._answer(message, op, success=False, ret_msg="error:args must be topics")
            return
        if len(args) > 10:
            self._answer(message, op, success=False, ret_msg="error:args count exceeds 10")
            return
        wanted: list[str] = []
        for arg in args:
            kind, _, symbol = arg.partition(".")
            if kind != "tickers" or symbol not in self.app.instruments:
                self._answer(
                    message, op, success=False, ret_msg=f"error:handler not found,topic:{arg}"
                )
                return
            wanted.append(symbol)
        if op == "subscribe":
            self.symbols.update(wanted)
        else:
            self.symbols.difference_update(wanted)
        self._answer(message, op, success=True, ret_msg=op)
        if op == "subscribe":
            for symbol in wanted:
                self.on_price(symbol)

    def on_price(self, symbol: str) -> None:
        if symbol not in self.symbols:
            return
        row = self.app.ticker_row(self.app.instruments[symbol])
        data = {
            key: row[key]
            for key in (
                "symbol",
                "lastPrice",
                "highPrice24h",
                "lowPrice24h",
                "prevPrice24h",
                "volume24h",
                "turnover24h",
                "price24hPcnt",
                "usdIndexPrice",
            )
        }
        self.connection.event(
            {
                "topic": f"tickers.{symbol}",
                "ts": self.app.clock.now_ms(),
                "type": "snapshot",
                "cs": next(self._cs),
                "data": data,
            }
        )

    def on_order(self, order: Order, fill: Fill | None) -> None:
        return None

    def on_list(self, order_list: OrderList) -> None:
        return None

    def on_funds(self, account_id: str) -> None:
        return None
