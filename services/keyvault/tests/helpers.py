from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from marketbot.contracts import (
    Exchange,
    OrderRequested,
    Plan,
    RiskLevel,
    Side,
    client_order_id_for,
    request_id_for,
)
from marketbot.runtime.bus import Bus
from marketbot.runtime.testing import eventually


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


async def order_requested(
    bus: Bus,
    pool: asyncpg.Pool,
    *,
    user_id: str,
    exchange: Exchange,
    reference_price: Decimal | None,
    symbol: str = "BTCUSDT",
    side: Side = Side.BUY,
    risk: RiskLevel = RiskLevel.HIGH,
    allocation: Decimal | None = None,
) -> OrderRequested:
    """Publish an ``OrderRequested`` (as decision would) and wait until the vault keeps it."""
    decision = uuid.uuid4()
    now = datetime.now(UTC)
    request = OrderRequested(
        event_id=request_id_for(decision, user_id),
        occurred_at=now,
        correlation_id=str(decision),
        request_id=request_id_for(decision, user_id),
        decision_id=decision,
        signal_id=decision,
        user_id=user_id,
        exchange=exchange,
        symbol=symbol,
        side=side,
        plan=Plan.PRO,
        priority=1,
        not_before=now,
        risk_level=risk,
        client_order_id=client_order_id_for(decision, user_id),
        reference_price=reference_price,
        allocation=allocation,
        allocation_currency="USDT" if allocation is not None else None,
        requested_at=now,
        commission_rate=Decimal("0.1"),
    )
    await bus.publish(request)

    async def stored() -> bool:
        found = await pool.fetchval(
            "SELECT true FROM order_requests WHERE request_id = $1", request.request_id
        )
        return bool(found)

    await eventually(stored)
    return request
