"""Bybit V5 private stream: one connection per user key (websocket_wss-authentication.mdx).

On each connection: ``{"op": "auth"}`` with the vault's signature of ``GET/realtime{expires}``,
then ``{"op": "subscribe", "args": ["order", "execution", "wallet"]}``; a ``{"op": "ping"}``
every 20 s ("we recommend that you send the ping heartbeat packet every 20 seconds").
Replies are matched by ``op`` (``auth``, ``subscribe``, ``pong``): the docs' private
subscription response carries no ``req_id``, and requests on one connection run one at a
time. Pushed messages carry ``topic`` and ``data`` (websocket_private_*.mdx).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from marketbot.contracts import Exchange
from marketbot.exchanges.bybit import signing
from marketbot.exchanges.bybit.constants import WS_AUTH_MAX_EXPIRY_MS
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.signing import signed_timestamp_ms
from marketbot.exchanges.streams import StreamConnection, StreamEvent, StreamRefusedError
from marketbot.runtime.clock import Clock, SystemClock

TOPICS = ("order", "execution", "wallet")


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
