"""``/live``: the browser's WebSocket, relayed from the gateway's ``/ws``.

The browser cannot put an Authorization header on a WebSocket, and a token must never be in
a URL, so the browser connects here with its session cookie (same origin only) and the web
app opens the gateway's ``/ws`` with the session's token in the header. Frames pass through
unchanged (the gateway already sends a user only their own events); ``last_event_id`` is
passed on so a reconnecting page resumes where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import websockets
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from prometheus_client import Gauge

from marketbot.runtime.logs import get_logger
from marketbot.web.context import Web
from marketbot.web.gateway import GatewayError
from marketbot.web.session import SESSION_COOKIE
from marketbot.web.views import unrealized_total

log = get_logger("marketbot.web.live")
router = APIRouter()

LIVE_CONNECTIONS = Gauge("marketbot_web_live_connections", "Browser WebSockets relayed now")
CLOSE_UNAUTHORIZED = 4401
CLOSE_UPSTREAM = 1011

Connector = Callable[..., Any]


def connector() -> Connector:
    return websockets.connect


def _same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc == websocket.headers.get("host", "")


@router.websocket("/live")
async def live(websocket: WebSocket) -> None:
    w: Web = websocket.app.state.web
    session = w.codec.open(websocket.cookies.get(SESSION_COOKIE), w.clock.now().timestamp())
    if session is None or not _same_origin(websocket):
        await websocket.close(CLOSE_UNAUTHORIZED, "sign in first")
        return
    query = {}
    last = websocket.query_params.get("last_event_id")
    if last and len(last) <= 64:
        query["last_event_id"] = last
    url = w.ws_url + (f"?{urlencode(query)}" if query else "")
    connect: Connector = websocket.app.state.ws_connect
    await websocket.accept()
    LIVE_CONNECTIONS.inc()
    try:
        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {session.token}"},
            open_timeout=10,
            max_size=1_048_576,
        ) as upstream:

            async def down() -> None:
                async for message in upstream:
                    text = message if isinstance(message, str) else message.decode()
                    await websocket.send_text(text)

            async def marks() -> None:
                """The open positions' mark prices, as frames of their own."""
                if session.is_operator or session.user_id is None:
                    return
                path = f"/users/{session.user_id}/positions"
                while True:
                    await asyncio.sleep(w.settings.marks_interval_seconds)
                    try:
                        body = await w.gateway.get(path, session.token)
                    except GatewayError:
                        continue
                    positions = [
                        {k: p.get(k) for k in ("operation_id", "mark_price", "unrealized_pnl")}
                        for p in body.get("positions", [])
                    ]
                    total = unrealized_total(body.get("positions", []))
                    await websocket.send_text(
                        json.dumps(
                            {
                                "type": "marks",
                                "positions": positions,
                                "unrealized_total": None if total is None else format(total, "f"),
                            }
                        )
                    )

            async def up() -> None:
                with contextlib.suppress(WebSocketDisconnect):
                    while True:
                        await websocket.receive_text()  # ignored; notices the close

            tasks = [asyncio.create_task(t()) for t in (down, up, marks)]
            done, pending = await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
            pending = {*pending, tasks[2]}
            for task in pending:
                task.cancel()
            for task in (*done, *pending):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    except (OSError, websockets.WebSocketException, TimeoutError) as exc:
        log.info("live relay ended", error=repr(exc))
    finally:
        LIVE_CONNECTIONS.dec()
        with contextlib.suppress(Exception):
            await websocket.close(CLOSE_UPSTREAM, "reconnect")
