"""Binance WebSocket API user data: many accounts on one connection (web-socket-api.md).

Each account is subscribed with ``userDataStream.subscribe.signature`` (the vault signs the
sorted parameters and adds the key it holds); the answer's ``subscriptionId`` tags that
account's events ("That subscriptionId allows you to map the events you receive to a given
subscription"). Subscription ids belong to a connection: after a reconnect every account is
subscribed again. At most 1,000 active subscriptions per session (User Data Stream
subscription "Limits"); the heartbeat is WebSocket ping frames ("You can use regular
WebSocket ping frames to test connectivity").
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any

from marketbot.contracts import Exchange, Side
from marketbot.exchanges.binance import constants as c
from marketbot.exchanges.binance import endpoints as ep
from marketbot.exchanges.binance import signing
from marketbot.exchanges.binance.constants import WS_API_MAX_ACTIVE_SUBSCRIPTIONS
from marketbot.exchanges.errors import ExchangeError
from marketbot.exchanges.numbers import optional_decimal, to_decimal
from marketbot.exchanges.reports import (
    BalanceReport,
    OrderReport,
    Report,
    StreamTerminated,
)
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.signing import signed_timestamp_ms
from marketbot.exchanges.streams import (
    ConnectedHandler,
    PrivateStream,
    StreamConnection,
    StreamError,
    StreamEvent,
)
from marketbot.exchanges.userstreams import StreamLimits, UserStreams, websocket_base
from marketbot.exchanges.venue import Balance, Fill, OrderState, OrderStatus
from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.exchanges.binance.stream")


# web-socket-api.md: "Connecting to WebSocket API costs 2 weight"; the subscribe's
# "Weight: 2". Both count in the IP's REST weight budget.
CONNECT_WEIGHT = 2
SUBSCRIBE_WEIGHT = 2
SUBSCRIBE_CONCURRENCY = 16


class SubscriptionLimitError(Exception):
    """This connection already carries the documented maximum of active subscriptions."""


class BinanceUserDataProtocol:
    """The dialect of one WS API connection carrying many accounts."""

    exchange = Exchange.BINANCE
    frame_pings = True

    def __init__(
        self,
        *,
        recv_window_ms: int = 5000,
        clock: Clock | None = None,
        offset_ms: Callable[[], int] = lambda: 0,
        max_subscriptions: int = WS_API_MAX_ACTIVE_SUBSCRIPTIONS,
        spend: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._recv_window_ms = recv_window_ms
        self._clock = clock or SystemClock()
        self._offset_ms = offset_ms
        self._max = min(max_subscriptions, WS_API_MAX_ACTIVE_SUBSCRIPTIONS)
        self.accounts: dict[str, Signer] = {}
        self.subscriptions: dict[int, str] = {}
        """subscriptionId -> user id, on the current connection."""
        self.refused: dict[str, str] = {}
        """user id -> why the last subscription attempt failed."""
        self.announced: set[str] = set()
        """The accounts whose start on the current connection was announced (reconciled)."""
        self._ids = itertools.count(1)
        self._connection: StreamConnection | None = None
        self._spend = spend

    # accounts ----------------------------------------------------------------------------

    async def add(self, user_id: str, signer: Signer) -> None:
        """Carry ``user_id``'s events; subscribes now when connected."""
        if user_id not in self.accounts and len(self.accounts) >= self._max:
            raise SubscriptionLimitError(
                f"{self._max} accounts already on this connection (web-socket-api.md: up to "
                f"{WS_API_MAX_ACTIVE_SUBSCRIPTIONS} active subscriptions per session)"
            )
        self.accounts[user_id] = signer
        if self._connection is not None and user_id not in self.subscriptions.values():
            await self._subscribe(self._connection, user_id, signer)

    async def remove(self, user_id: str) -> None:
        self.accounts.pop(user_id, None)
        connection = self._connection
        for sid, owner in list(self.subscriptions.items()):
            if owner == user_id:
                del self.subscriptions[sid]
                if connection is not None:
                    await connection.request(
                        {
                            "id": (rid := self._request_id()),
                            "method": "userDataStream.unsubscribe",
                            "params": {"subscriptionId": sid},
                        },
                        rid,
                    )

    def live(self) -> list[str]:
        return sorted(set(self.subscriptions.values()))

    def subscribed(self, user_id: str) -> bool:
        return self._connection is not None and user_id in self.subscriptions.values()

    async def resubscribe(self, user_id: str) -> bool:
        """Subscribe ``user_id`` again after the exchange ended its subscription."""
        signer = self.accounts.get(user_id)
        if signer is None or self._connection is None or self.subscribed(user_id):
            return False
        await self._subscribe(self._connection, user_id, signer)
        return self.subscribed(user_id)

    # protocol ----------------------------------------------------------------------------

    async def start(self, connection: StreamConnection) -> Sequence[str]:
        """Subscribe every account, ``SUBSCRIBE_CONCURRENCY`` at a time (each waits for its
        signature and its answer; one connection may carry 1,000)."""
        self.subscriptions.clear()
        self._connection = connection
        gate = asyncio.Semaphore(SUBSCRIBE_CONCURRENCY)

        async def one(user_id: str, signer: Signer) -> None:
            async with gate:
                if user_id in self.accounts and not self.subscribed(user_id):
                    await self._subscribe(connection, user_id, signer)

        await asyncio.gather(*(one(u, s) for u, s in list(self.accounts.items())))
        return self.live()

    async def _subscribe(self, connection: StreamConnection, user_id: str, signer: Signer) -> None:
        request = signing.user_data_subscribe_request(
            signed_timestamp_ms(self._clock, self._offset_ms()), self._recv_window_ms
        )
        try:
            signature = await signer.sign(request)
        except ExchangeError as exc:
            # One account's key (revoked, vault refusing) must not take the others down.
            self.refused[user_id] = f"signing: {exc}"
            log.warning("user data subscription not signed", user_id=user_id, error=str(exc))
            return
        rid = self._request_id()
        if self._spend is not None:
            await self._spend(SUBSCRIBE_WEIGHT)
        reply = await connection.request(
            signing.user_data_subscribe_message(rid, request, signature), rid
        )
        if reply.get("status") != 200:
            error = reply.get("error") or {}
            self.refused[user_id] = f"{error.get('code')}: {error.get('msg')}"
            log.warning("user data subscription refused", user_id=user_id, error=error)
            if error.get("code") == -2042:  # lifetime subscription ids used up: reconnect
                raise StreamError("maximum subscription id reached on this connection")
            return
        result = reply.get("result") or {}
        self.subscriptions[int(result["subscriptionId"])] = user_id
        self.refused.pop(user_id, None)

    def _request_id(self) -> str:
        return f"uds-{next(self._ids)}"

    def ping_message(self, n: int) -> tuple[dict[str, Any], str]:
        return {"id": f"ping-{n}", "method": "ping"}, f"ping-{n}"

    def reply_key(self, message: dict[str, Any]) -> str | None:
        if "event" in message:
            return None
        request_id = message.get("id")
        return str(request_id) if request_id is not None else None

    def events(self, message: dict[str, Any], received_ms: int) -> list[StreamEvent]:
        event = message.get("event")
        if not isinstance(event, dict):
            return []
        sid = message.get("subscriptionId")
        user_id = self.subscriptions.get(sid) if isinstance(sid, int) else None
        kind = str(event.get("e", ""))
        if user_id is None:
            # serverShutdown has no subscriptionId: "Please establish a new connection as
            # soon as possible" (web-socket-api.md General API Information).
            if kind == "serverShutdown":
                raise StreamError("the server is shutting down")
            return []
        if kind == "eventStreamTerminated":
            self.subscriptions.pop(sid, None)  # type: ignore[arg-type]
        return [StreamEvent(Exchange.BINANCE, user_id, kind, event, received_ms)]

    def disconnected(self) -> None:
        self._connection = None
        self.subscriptions.clear()
        self.announced.clear()


def _ms(value: object) -> int | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def execution_state(event: dict[str, Any]) -> OrderState:
    """An ``executionReport`` as an order state (user-data-stream.md "Order Update"): ``z``
    cumulative filled, ``Z`` cumulative quote, ``X`` the order status; a TRADE report
    (``x``) carries that one trade (``l`` at ``L``, commission ``n`` in ``N``, trade ``t``,
    time ``T``). On a cancel ``c`` is the cancel request's id and ``C`` the order's own."""
    execution = str(event.get("x", ""))
    own_id = str(event.get("C") or "") if execution == "CANCELED" else ""
    order_id = str(event.get("i", ""))
    filled = to_decimal(event.get("z"), default=Decimal(0))
    quote = optional_decimal(event.get("Z"))
    fills: tuple[Fill, ...] = ()
    if execution == "TRADE":
        fills = (
            Fill(
                price=to_decimal(event.get("L")),
                quantity=to_decimal(event.get("l")),
                fee=to_decimal(event.get("n"), default=Decimal(0)),
                fee_asset=str(event.get("N") or ""),
                trade_id=str(event.get("t")),
                exchange_order_id=order_id,
                filled_at=ep.ms_to_datetime(event.get("T")),
                is_maker=bool(event.get("m", False)),
            ),
        )
    reason = str(event.get("r", "NONE"))
    return OrderState(
        exchange_order_id=order_id,
        client_order_id=own_id or str(event.get("c", "")),
        symbol=str(event.get("s", "")),
        side=Side(str(event.get("S", "BUY"))),
        order_type=str(event.get("o", "")),
        status=ep.STATUSES.get(str(event.get("X")), OrderStatus.PENDING),
        quantity=to_decimal(event.get("q"), default=Decimal(0)),
        quote_quantity=optional_decimal(event.get("Q")) or None,
        filled_quantity=filled,
        filled_quote_quantity=quote,
        price=optional_decimal(event.get("p")) or None,
        average_price=quote / filled if quote is not None and filled > 0 else None,
        fills=fills,
        created_at=ep.ms_to_datetime(event.get("O")),
        updated_at=ep.ms_to_datetime(event.get("T") or event.get("E")),
        reject_reason=None if reason == "NONE" else reason,
    )


def reports(event: StreamEvent) -> list[Report]:
    """The venue-neutral reports of one user data event (user-data-stream.md)."""
    data = dict(event.data)
    if event.topic == "executionReport":
        return [
            OrderReport(
                exchange=Exchange.BINANCE,
                user_id=event.user_id,
                state=execution_state(data),
                event_ms=_ms(data.get("T")) or _ms(data.get("E")),
                received_ms=event.received_ms,
            )
        ]
    if event.topic == "outboundAccountPosition":
        balances = tuple(
            Balance(
                asset=str(item.get("a", "")),
                free=to_decimal(item.get("f"), default=Decimal(0)),
                locked=to_decimal(item.get("l"), default=Decimal(0)),
            )
            for item in data.get("B", []) or []
            if isinstance(item, dict)
        )
        return [
            BalanceReport(
                exchange=Exchange.BINANCE,
                user_id=event.user_id,
                balances=balances,
                complete=False,
                event_ms=_ms(data.get("u")) or _ms(data.get("E")),
                received_ms=event.received_ms,
            )
        ]
    if event.topic == "eventStreamTerminated":
        return [
            StreamTerminated(
                exchange=Exchange.BINANCE, user_id=event.user_id, received_ms=event.received_ms
            )
        ]
    # listStatus: every leg's own executionReport says how it ended ("an event named
    # ListStatus will be sent in addition to the executionReport event").
    return []


# web-socket-api.md "Connection limits": "There is a limit of 300 connections per attempt
# every 5 minutes. The connection is per IP address." "User Data Stream subscription":
# "A single session supports up to 1,000 active subscriptions simultaneously".
LIMITS = StreamLimits(
    connections_per_window=300,
    window_s=300.0,
    accounts_per_connection=WS_API_MAX_ACTIVE_SUBSCRIPTIONS,
)


def stream_url(rest_base_url: str) -> str:
    base = websocket_base(rest_base_url)
    if base is not None:
        return base + c.WS_API_PATH
    if "testnet" in rest_base_url:
        return c.WS_API_TESTNET_URL
    return c.WS_API_MAINNET_URL


class BinanceUserStreams(UserStreams):
    """Accounts spread over WS API connections, up to ``accounts_per_connection`` each."""

    exchange = Exchange.BINANCE
    limits = LIMITS

    def __init__(
        self, rest_base_url: str, *, accounts_per_connection: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.url = stream_url(rest_base_url)
        self.per_connection = min(
            accounts_per_connection or LIMITS.accounts_per_connection,
            LIMITS.accounts_per_connection,
        )
        self._connections: list[tuple[PrivateStream, BinanceUserDataProtocol]] = []
        self._where: dict[str, BinanceUserDataProtocol] = {}
        self._streams: dict[str, PrivateStream] = {}

    async def add(self, user_id: str, signer: Signer) -> None:
        if user_id in self._where:
            return
        chosen: tuple[PrivateStream, BinanceUserDataProtocol] | None = None
        for stream, protocol in self._connections:
            if len(protocol.accounts) < self.per_connection:
                chosen = (stream, protocol)
                break
        if chosen is None:
            protocol = BinanceUserDataProtocol(
                clock=self.clock,
                offset_ms=self.offset_ms,
                max_subscriptions=self.per_connection,
                spend=self.spend,
            )
            stream = self._stream(
                self.url,
                protocol,
                connect_weight=CONNECT_WEIGHT,
                on_connected=self._announcer(protocol),
            )
            chosen = (stream, protocol)
            self._connections.append(chosen)
            self._run(stream)
        stream, protocol = chosen
        self._where[user_id] = protocol
        self._streams[user_id] = stream
        self._accounts_changed()
        await protocol.add(user_id, signer)
        if not protocol.subscribed(user_id):
            return  # subscribed (and announced) when the connection starts
        if stream.connected.is_set():
            # Subscribed on a connection already up: its start-up reconciliation now.
            if user_id not in protocol.announced:
                protocol.announced.add(user_id)
                await self._connected([user_id], False)
        else:
            # Subscribed while the connection was starting: announced once it is up, if
            # its start did not include it.
            self._spawn(self._announce_when_up(stream, protocol, user_id))

    def _announcer(self, protocol: BinanceUserDataProtocol) -> ConnectedHandler:
        async def announce(user_ids: Sequence[str], reconnected: bool) -> None:
            fresh = [u for u in user_ids if u not in protocol.announced]
            protocol.announced.update(fresh)
            await self._connected(fresh, reconnected)

        return announce

    async def _announce_when_up(
        self, stream: PrivateStream, protocol: BinanceUserDataProtocol, user_id: str
    ) -> None:
        try:
            await asyncio.wait_for(stream.connected.wait(), self.settings.open_timeout_s * 3)
        except TimeoutError:
            return  # the next start subscribes and announces it
        await asyncio.sleep(0)  # let the start's own announcement run first
        if protocol.subscribed(user_id) and user_id not in protocol.announced:
            protocol.announced.add(user_id)
            await self._connected([user_id], False)

    async def remove(self, user_id: str) -> None:
        protocol = self._where.pop(user_id, None)
        self._streams.pop(user_id, None)
        self._accounts_changed()
        if protocol is not None:
            await protocol.remove(user_id)

    def live(self, user_id: str) -> bool:
        """Subscribed on a connection that is up (its start finished and was announced)."""
        protocol = self._where.get(user_id)
        stream = self._streams.get(user_id)
        return (
            protocol is not None
            and stream is not None
            and stream.connected.is_set()
            and protocol.subscribed(user_id)
        )

    def users(self) -> list[str]:
        return sorted(self._where)

    def down_for(self, user_id: str) -> float | None:
        stream = self._streams.get(user_id)
        if stream is None:
            return float("inf")
        if self.live(user_id):
            return None
        if stream.down_since is None:
            return float("inf")  # the connection is up but this account is not subscribed
        return self.clock.monotonic() - stream.down_since

    async def _stop_streams(self) -> None:
        for stream, _ in self._connections:
            await stream.stop()

    def _reports(self, event: StreamEvent) -> list[Report]:
        found = reports(event)
        for report in found:
            if isinstance(report, StreamTerminated):
                # The exchange ended this account's subscription: subscribe it again and
                # reconcile the gap (as after a reconnect).
                self._spawn(self._renew(report.user_id))
        return found

    async def _renew(self, user_id: str) -> None:
        protocol = self._where.get(user_id)
        if protocol is None:
            return
        try:
            renewed = await protocol.resubscribe(user_id)
        except StreamError as exc:
            log.warning("user data subscription not renewed", user_id=user_id, error=str(exc))
            return
        if renewed:
            protocol.announced.add(user_id)
            await self._connected([user_id], True)
