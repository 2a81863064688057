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

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from marketbot.contracts import Exchange
from marketbot.exchanges.binance import signing
from marketbot.exchanges.binance.constants import WS_API_MAX_ACTIVE_SUBSCRIPTIONS
from marketbot.exchanges.errors import ExchangeError
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.signing import signed_timestamp_ms
from marketbot.exchanges.streams import StreamConnection, StreamError, StreamEvent
from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.exchanges.binance.stream")


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
        self._ids = itertools.count(1)
        self._connection: StreamConnection | None = None

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

    # protocol ----------------------------------------------------------------------------

    async def start(self, connection: StreamConnection) -> Sequence[str]:
        self.subscriptions.clear()
        self._connection = connection
        for user_id, signer in list(self.accounts.items()):
            await self._subscribe(connection, user_id, signer)
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
