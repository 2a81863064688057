"""WebSocket /ws: a user's own order, position and ledger events, live, with resume.

Connect with ``?token=<user or admin token>`` (or an Authorization header) and optionally
``&last_event_id=<id of the last frame you got>``. Frames:

- ``{"type": "hello", "id": ..., "user_id": ...}`` first;
- ``{"id", "event_id", "type", "data"}`` per event (``type`` is the event's type, e.g.
  ``OrderFilled``; ``data`` the event as published);
- ``{"type": "reset", ...}`` when the resume point is too old to replay (reload state);
- ``{"type": "overflow", "id": ...}`` just before the gateway closes a client that does not
  keep up (close code 1013); reconnect with that id.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from marketbot.gateway.adapters.feed import ReplayTooLongError
from marketbot.gateway.api.context import Caller, Gateway, authenticate
from marketbot.gateway.api.errors import ApiError
from marketbot.gateway.domain.auth import bearer
from marketbot.gateway.domain.errors import ClientError
from marketbot.gateway.domain.push import FEEDS, Cursor, PushItem, frame
from marketbot.gateway.push import WS_FRAMES, Connection
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.gateway.ws")

router = APIRouter()

CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_REQUEST = 4400
CLOSE_TRY_AGAIN = 1013


async def _backlog(
    gw: Gateway, conn: Connection, cursor: Cursor, upto: Cursor
) -> list[PushItem] | None:
    """Everything for this connection after ``cursor``: from memory, else from JetStream."""
    recent = gw.hub.recent(conn.user_id, cursor)
    if recent is not None:
        return recent
    if gw.feed is None:
        return None
    items: list[PushItem] = []
    for feed in FEEDS:
        events = await gw.feed.replay(
            feed, cursor.seq(feed), upto.seq(feed), gw.settings.ws_replay_limit
        )
        for seq, event in events:
            user_id = getattr(event, "user_id", None)
            if not isinstance(user_id, str):
                continue
            if conn.user_id is not None and user_id != conn.user_id:
                continue
            items.append(
                PushItem(
                    feed,
                    seq,
                    user_id,
                    event.event_id,
                    event.type,
                    event.model_dump(mode="json"),
                    Cursor(),
                )
            )
    return items


class _Sender:
    def __init__(self, websocket: WebSocket, cursor: Cursor) -> None:
        self.websocket = websocket
        self.cursor = cursor

    async def send(self, item: PushItem) -> None:
        if not item.is_after(self.cursor):
            return  # already delivered (replay and live overlap)
        self.cursor = self.cursor.merged(item.position).advanced(item.feed, item.seq)
        await self.websocket.send_json(frame(item, self.cursor))
        WS_FRAMES.inc()

    async def control(self, kind: str, **fields: Any) -> None:
        await self.websocket.send_json({"type": kind, "id": str(self.cursor), **fields})


async def _pump(sender: _Sender, conn: Connection) -> None:
    while True:
        item = await conn.queue.get()
        if item is None:
            await sender.control(
                "overflow", message="too slow to keep up; reconnect with last_event_id"
            )
            await sender.websocket.close(CLOSE_TRY_AGAIN, "slow consumer: resume")
            return
        await sender.send(item)


async def _watch_drop(conn: Connection, pump: asyncio.Task[None], websocket: WebSocket) -> None:
    """A client stuck in a send (not reading at all) is cut off without waiting for it."""
    await conn.dropped.wait()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(pump), timeout=1.0)
    if not pump.done():
        pump.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(CLOSE_TRY_AGAIN, "slow consumer"), 1.0)


async def _listen(websocket: WebSocket) -> None:
    """Reads (and ignores) client frames, so a disconnect is noticed at once."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()


@router.websocket("/ws")
async def live(websocket: WebSocket) -> None:
    gw: Gateway = websocket.app.state.gateway
    token = websocket.query_params.get("token") or bearer(websocket.headers.get("authorization"))
    try:
        who: Caller = await authenticate(gw, token)
        last = websocket.query_params.get("last_event_id")
        cursor = Cursor.parse(last) if last else None
    except ApiError as exc:
        await websocket.close(CLOSE_UNAUTHORIZED, exc.message[:120])
        return
    except ClientError as exc:
        await websocket.close(CLOSE_BAD_REQUEST, exc.message[:120])
        return
    await websocket.accept()
    conn = gw.hub.connect(None if who.is_admin else who.user_id)
    tasks: list[asyncio.Task[None]] = []
    try:
        upto = gw.hub.position  # read with connect() above, with no await between them
        sender = _Sender(websocket, cursor if cursor is not None else upto)
        await sender.control("hello", user_id=who.user_id, scope="all" if who.is_admin else "own")
        if cursor is not None:
            try:
                backlog = await _backlog(gw, conn, cursor, upto)
            except ReplayTooLongError:
                backlog = None
            if backlog is None:
                sender.cursor = upto
                await sender.control("reset", message="the resume point is too old; reload")
            else:
                for item in backlog:
                    await sender.send(item)
        pump = asyncio.create_task(_pump(sender, conn))
        tasks = [
            pump,
            asyncio.create_task(_listen(websocket)),
            asyncio.create_task(_watch_drop(conn, pump, websocket)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except (WebSocketDisconnect, RuntimeError, OSError) as exc:
        log.debug("websocket ended", error=repr(exc))
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        gw.hub.disconnect(conn)
