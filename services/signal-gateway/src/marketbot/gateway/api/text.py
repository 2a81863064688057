"""Refuse, at the edge, text that PostgreSQL or a consumer cannot hold.

A NUL character (``\\u0000``) or a lone surrogate in any query parameter or JSON field of
any request is a 422 naming the field, before a handler runs: it could otherwise be
accepted, published, and then break every consumer that tries to store it. Webhook bodies
in text form are checked field by field by the alert parser (domain/alerts.py).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marketbot.contracts.envelope import unstorable
from marketbot.gateway.api.errors import error_body

# Only a body that could hold such text is parsed here: a raw NUL, or a JSON escape of a
# NUL or of a surrogate (\ud800-\udfff).
_SUSPECT = re.compile(rb"\x00|\\u0000|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _find(value: Any, path: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        reason = unstorable(value)
        return (path or "body", reason) if reason else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            found = _find(key, where) or _find(item, where)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find(item, f"{path}[{index}]" if path else f"[{index}]")
            if found:
                return found
    return None


MAX_BODY_BYTES = 1_048_576
"""No request of this API needs more; a larger body is a 413 before anything reads it."""


class StorableTextMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if _SUSPECT.search(query) or b"%00" in query or b"%ED%A0" in query.upper():
            try:
                pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, errors="strict")
            except UnicodeDecodeError:
                await self._refuse(send, "query", "is not valid UTF-8")
                return
            for key, value in pairs:
                reason = unstorable(key) or unstorable(value)
                if reason:
                    await self._refuse(send, key[:64].replace("\x00", ""), reason)
                    return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                await self._refuse(
                    send, "body", f"is larger than {self.max_body_bytes} bytes", status=413
                )
                return
        body = b"".join(chunks)
        if _SUSPECT.search(body):
            try:
                found = _find(json.loads(body), "")
            except ValueError:
                found = None  # not JSON (a text alert): its own parser names the field
            if found is not None:
                await self._refuse(send, found[0][:64], found[1])
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, field: str, reason: str, *, status: int = 422) -> None:
        code = "invalid_text" if status == 422 else "too_large"
        payload = json.dumps(error_body(code, f"{field} {reason}", field)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})
