"""Bybit V5 private stream: one connection per user key (websocket_wss-authentication.mdx).

On each connection: ``{"op": "auth"}`` with the vault's signature of ``GET/realtime{expires}``,
then ``{"op": "subscribe", "args": ["order", "execution", "wallet"]}``; a ``{"op": "ping"}``
every 20 s ("we recommend that you send the ping heartbeat packet every 20 seconds").
Replies are matched by ``op`` (``auth``, ``subscribe``, ``pong``): the docs' private
subscription response carries no ``req_id``, and requests on one connection run one at a
time. Pushed messages carry ``topic`` and ``data`` (websocket_private_*.mdx).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from marketbot.contracts import Exchange
from marketbot.exchanges.bybit import constants as c
from marketbot.exchanges.bybit import endpoints as ep
from marketbot.exchanges.bybit import signing
from marketbot.exchanges.bybit.constants import WS_AUTH_MAX_EXPIRY_MS
from marketbot.exchanges.numbers import to_decimal
from marketbot.exchanges.reports import (
    BalanceReport,
    OrderReport,
    PriceReport,
    Report,
    TradeReport,
)
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.signing import signed_timestamp_ms
from marketbot.exchanges.streams import (
    PrivateStream,
    StreamConnection,
    StreamEvent,
    StreamRefusedError,
)
from marketbot.exchanges.userstreams import StreamLimits, UserStreams, websocket_base
from marketbot.runtime.clock import Clock, SystemClock

TOPICS = ("order", "execution", "wallet")
# websocket_wss-authentication.mdx "Public channel - Args limits": "Spot can input up to 10
# args for each subscription request sent to one connection".
PUBLIC_ARGS_PER_REQUEST = 10


class BybitPrivateProtocol:
    """The dialect for one user's key."""

    exchange = Exchange.BYBIT
    frame_pings = False

    def __init__(
        self,
        user_id: str,
        signer: Signer,
        *,
        topics: Sequence[str] = TOPICS,
        expiry_ms: int = 5000,
        clock: Clock | None = None,
        offset_ms: Callable[[], int] = lambda: 0,
    ) -> None:
        if not 0 < expiry_ms <= WS_AUTH_MAX_EXPIRY_MS:
            raise ValueError(f"expiry_ms must be within 1..{WS_AUTH_MAX_EXPIRY_MS}")
        self.user_id = user_id
        self._signer = signer
        self.topics = tuple(topics)
        self._expiry_ms = expiry_ms
        self._clock = clock or SystemClock()
        self._offset_ms = offset_ms
        self.conn_id = ""

    async def start(self, connection: StreamConnection) -> Sequence[str]:
        request = signing.ws_auth_request(
            signed_timestamp_ms(self._clock, self._offset_ms()), self._expiry_ms
        )
        signature = await self._signer.sign(request)
        auth = await connection.request(signing.ws_auth_message(request, signature), "auth")
        if auth.get("success") is not True:
            raise StreamRefusedError(f"auth refused: {auth.get('ret_msg', '')!r}")
        self.conn_id = str(auth.get("conn_id", ""))
        subscribed = await connection.request(
            {"op": "subscribe", "args": list(self.topics)}, "subscribe"
        )
        if subscribed.get("success") is not True:
            raise StreamRefusedError(f"subscribe refused: {subscribed.get('ret_msg', '')!r}")
        return [self.user_id]

    def ping_message(self, n: int) -> tuple[dict[str, Any], str]:
        return {"req_id": f"ping-{n}", "op": "ping"}, "pong"

    def reply_key(self, message: dict[str, Any]) -> str | None:
        if "topic" in message:
            return None
        op = message.get("op")
        return str(op) if op is not None else None

    def events(self, message: dict[str, Any], received_ms: int) -> list[StreamEvent]:
        topic = str(message.get("topic", ""))
        data = message.get("data")
        records = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
        return [
            StreamEvent(Exchange.BYBIT, self.user_id, topic.split(".")[0], record, received_ms)
            for record in records
            if isinstance(record, dict)
        ]

    def disconnected(self) -> None:
        self.conn_id = ""


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def reports(event: StreamEvent) -> list[Report]:
    """The venue-neutral reports of one pushed record (websocket_private_order.mdx,
    _execution.mdx, _wallet.mdx: the same fields as the REST order, execution and
    wallet-balance records)."""
    data = dict(event.data)
    if event.topic == "order":
        if data.get("category", "spot") != "spot":
            return []
        state = ep.parse_order(data)
        return [
            OrderReport(
                exchange=Exchange.BYBIT,
                user_id=event.user_id,
                state=state,
                event_ms=_int(data.get("updatedTime")),
                received_ms=event.received_ms,
            )
        ]
    if event.topic == "execution":
        if data.get("category", "spot") != "spot":
            return []
        fills = ep.parse_executions({"list": [data]})
        return [
            TradeReport(
                exchange=Exchange.BYBIT,
                user_id=event.user_id,
                symbol=str(data.get("symbol", "")),
                client_order_id=str(data.get("orderLinkId", "")),
                fill=fill,
                event_ms=_int(data.get("execTime")),
                received_ms=event.received_ms,
            )
            for fill in fills
        ]
    if event.topic == "wallet":
        if data.get("accountType", "UNIFIED") != "UNIFIED":
            return []
        return [
            BalanceReport(
                exchange=Exchange.BYBIT,
                user_id=event.user_id,
                balances=tuple(ep.parse_balances({"list": [data]})),
                complete=True,
                event_ms=None,
                received_ms=event.received_ms,
            )
        ]
    return []


class BybitPublicProtocol:
    """The public spot stream (``/v5/public/spot``): ``tickers.{symbol}`` for the prices the
    platform watches (websocket_public_ticker.mdx: spot tickers are snapshots, pushed every
    50 ms). No auth; the heartbeat is ``{"op": "ping"}``, whose public spot pong answers
    with ``"op": "ping"`` (websocket_wss-authentication.mdx, "Pong message example of
    public channels")."""

    exchange = Exchange.BYBIT
    frame_pings = False

    def __init__(self, symbols: Sequence[str] = ()) -> None:
        self.symbols: set[str] = set(symbols)
        self.subscribed: set[str] = set()
        self._connection: StreamConnection | None = None

    async def watch(self, symbols: Sequence[str]) -> None:
        new = sorted(set(symbols) - self.symbols)
        self.symbols.update(new)
        if self._connection is not None and new:
            await self._subscribe(self._connection, new)

    async def start(self, connection: StreamConnection) -> Sequence[str]:
        self._connection = connection
        self.subscribed.clear()
        await self._subscribe(connection, sorted(self.symbols))
        return []

    async def _subscribe(self, connection: StreamConnection, symbols: Sequence[str]) -> None:
        for start in range(0, len(symbols), PUBLIC_ARGS_PER_REQUEST):
            chunk = [f"tickers.{s}" for s in symbols[start : start + PUBLIC_ARGS_PER_REQUEST]]
            reply = await connection.request({"op": "subscribe", "args": chunk}, "subscribe")
            if reply.get("success") is not True:
                raise StreamRefusedError(f"subscribe refused: {reply.get('ret_msg', '')!r}")
            self.subscribed.update(symbols[start : start + PUBLIC_ARGS_PER_REQUEST])

    def ping_message(self, n: int) -> tuple[dict[str, Any], str]:
        return {"req_id": f"ping-{n}", "op": "ping"}, "ping"

    def reply_key(self, message: dict[str, Any]) -> str | None:
        if "topic" in message:
            return None
        op = message.get("op")
        return str(op) if op is not None else None

    def events(self, message: dict[str, Any], received_ms: int) -> list[StreamEvent]:
        topic = str(message.get("topic", ""))
        data = message.get("data")
        if not topic.startswith("tickers.") or not isinstance(data, dict):
            return []
        record = {**data, "ts": message.get("ts")}
        return [StreamEvent(Exchange.BYBIT, "", "tickers", record, received_ms)]

    def disconnected(self) -> None:
        self._connection = None
        self.subscribed.clear()


def price_reports(event: StreamEvent) -> list[Report]:
    if event.topic != "tickers" or "lastPrice" not in event.data:
        return []
    return [
        PriceReport(
            exchange=Exchange.BYBIT,
            symbol=str(event.data.get("symbol", "")),
            price=to_decimal(event.data["lastPrice"]),
            event_ms=_int(event.data.get("ts")),
            received_ms=event.received_ms,
        )
    ]


# websocket_wss-authentication.mdx "IP Limits": "Do not build over 500 connections in 5
# minutes. This is counted per WebSocket domain." One key per private connection (the auth
# binds the connection to the key that signed it).
LIMITS = StreamLimits(connections_per_window=500, window_s=300.0, accounts_per_connection=1)


def stream_urls(rest_base_url: str) -> tuple[str, str]:
    """(private, public spot) stream URLs for a REST base URL (websocket_wss-authentication
    .mdx "WebSocket public stream" / "private stream"; the simulator: its own port)."""
    base = websocket_base(rest_base_url)
    if base is not None:
        return base + c.WS_PRIVATE_PATH, base + c.WS_PUBLIC_SPOT_PATH
    if "testnet" in rest_base_url:
        return c.WS_PRIVATE_TESTNET_URL, c.WS_PUBLIC_SPOT_TESTNET_URL
    return c.WS_PRIVATE_MAINNET_URL, c.WS_PUBLIC_SPOT_MAINNET_URL


class BybitUserStreams(UserStreams):
    """One private connection per user key; one public connection for watched prices."""

    exchange = Exchange.BYBIT
    limits = LIMITS

    def __init__(self, rest_base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.private_url, self.public_url = stream_urls(rest_base_url)
        self._streams: dict[str, PrivateStream] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._public: PrivateStream | None = None
        self._public_protocol = BybitPublicProtocol()

    async def add(self, user_id: str, signer: Signer) -> None:
        if user_id in self._streams:
            return
        protocol = BybitPrivateProtocol(user_id, signer, clock=self.clock, offset_ms=self.offset_ms)
        stream = self._stream(self.private_url, protocol)
        self._streams[user_id] = stream
        self._runs[user_id] = self._run(stream)
        self._accounts_changed()

    async def remove(self, user_id: str) -> None:
        stream = self._streams.pop(user_id, None)
        task = self._runs.pop(user_id, None)
        self._accounts_changed()
        if stream is not None:
            await stream.stop()
        if task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, self.settings.open_timeout_s)

    def live(self, user_id: str) -> bool:
        stream = self._streams.get(user_id)
        return stream is not None and stream.connected.is_set()

    def users(self) -> list[str]:
        return sorted(self._streams)

    def down_for(self, user_id: str) -> float | None:
        stream = self._streams.get(user_id)
        if stream is None:
            return float("inf")
        if stream.down_since is None:
            return None
        return self.clock.monotonic() - stream.down_since

    def stream(self, user_id: str) -> PrivateStream | None:
        return self._streams.get(user_id)

    async def watch(self, symbols: Sequence[str]) -> None:
        await self._public_protocol.watch(symbols)
        if self._public is None and self._public_protocol.symbols:
            self._public = self._stream(self.public_url, self._public_protocol, private=False)
            self._run(self._public)

    def watching(self, symbol: str) -> bool:
        return (
            self._public is not None
            and self._public.connected.is_set()
            and symbol in self._public_protocol.subscribed
        )

    async def _stop_streams(self) -> None:
        streams = list(self._streams.values())
        if self._public is not None:
            streams.append(self._public)
        for stream in streams:
            await stream.stop()

    def _reports(self, event: StreamEvent) -> list[Report]:
        if event.topic == "tickers":
            return price_reports(event)
        return reports(event)
