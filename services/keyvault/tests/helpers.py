from __future__ import annotations

import json
from typing import Any

from marketbot.runtime.bus import Bus


async def raw_key_event_payloads(bus: Bus) -> list[bytes]:
    """Every message in this test's KEYS stream, oldest first, as stored."""
    stream = bus.stream("KEYS")
    info = await bus.js.stream_info(stream)
    payloads: list[bytes] = []
    if info.state.messages:
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await bus.js.get_msg(stream, seq)
            payloads.append(msg.data or b"")
    return payloads


async def key_events(bus: Bus) -> list[dict[str, Any]]:
    return [json.loads(p) for p in await raw_key_event_payloads(bus)]


async def event_types(bus: Bus) -> list[str]:
    return [e["type"] for e in await key_events(bus)]
