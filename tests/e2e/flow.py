"""Helpers that observe the platform from outside: the streams, the simulator, the API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError, ServiceUnavailableError

from marketbot.contracts import (
    Envelope,
    Event,
    OrderFilled,
    OrderRejected,
    OrderRequested,
    PositionClosed,
    decode,
)
from marketbot.devstack.demo import DemoUser, SeededUser
from marketbot.runtime.bus import Bus
from marketbot.runtime.testing import eventually

E = TypeVar("E", bound=Envelope)


async def stream_events(bus: Bus, stream: str, *, within_s: float = 60.0) -> list[Event]:
    """Every message currently in a stream, decoded, in stream order. While a JetStream
    cluster elects a leader (a node was just killed) reads answer 503 "temporarily
    unavailable": the test's own read waits that out, as a client would."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await _stream_events(bus, stream)
        except (ServiceUnavailableError, NoRespondersError, NatsTimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _stream_events(bus: Bus, stream: str) -> list[Event]:
    name = bus.stream(stream)
    info = await bus.js.stream_info(name)
    events: list[Event] = []
    if info.state.messages == 0:
        return events
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(NotFoundError):
            message = await bus.js.get_msg(name, seq)
            decoded = decode(message.data or b"")
            if isinstance(decoded, Event):
                events.append(decoded)
    return events


def of_type(events: Iterable[Event], kind: type[E], users: Iterable[str]) -> list[E]:
    wanted = set(users)
    return [e for e in events if isinstance(e, kind) and getattr(e, "user_id", None) in wanted]


async def settled(bus: Bus, streams: Sequence[str] = ("ACCOUNTS", "KEYS")) -> bool:
    """True when every consumer of these streams has applied and acked everything."""
    for stream in streams:
        for consumer in await bus.js.consumers_info(bus.stream(stream)):
            if consumer.num_pending or consumer.num_ack_pending:
                return False
    return True


async def wait_settled(bus: Bus, streams: Sequence[str] = ("ACCOUNTS", "KEYS")) -> None:
    await eventually(lambda: settled(bus, streams), timeout=30, message="consumers settled")


async def outcomes(bus: Bus, users: Iterable[str]) -> dict[str, Event]:
    """Each user's final order outcome so far (filled or rejected)."""
    found: dict[str, Event] = {}
    for event in of_type(await stream_events(bus, "ORDER_EVENTS"), Event, users):
        if isinstance(event, OrderFilled | OrderRejected):
            found[event.user_id] = event  # type: ignore[attr-defined]
    return found


async def wait_outcomes(bus: Bus, users: Iterable[str], timeout: float = 60) -> dict[str, Event]:
    wanted = set(users)

    async def all_there() -> dict[str, Event] | None:
        found = await outcomes(bus, wanted)
        return found if set(found) >= wanted else None

    result = await eventually(all_there, timeout=timeout, message=f"outcomes for {wanted}")
    assert result is not None
    return result


async def wait_closed(bus: Bus, users: Iterable[str], timeout: float = 60) -> dict[str, Any]:
    wanted = set(users)

    async def all_closed() -> dict[str, PositionClosed] | None:
        closed = {
            e.user_id: e
            for e in of_type(await stream_events(bus, "ORDER_EVENTS"), PositionClosed, wanted)
        }
        return closed if set(closed) >= wanted else None

    result = await eventually(all_closed, timeout=timeout, message=f"closes for {wanted}")
    assert result is not None
    return result


async def requests_for(bus: Bus, users: Iterable[str]) -> list[OrderRequested]:
    return of_type(await stream_events(bus, "ORDER_REQUESTS"), OrderRequested, users)


def cohort(test: str, *users: DemoUser) -> list[DemoUser]:
    """Give the users of one test their own ids (the stack is shared by the session)."""
    from dataclasses import replace

    return [replace(u, user_id=f"{test}-{u.user_id}") for u in users]


def alert(symbol: str, price: Decimal, *, action: str = "buy", **extra: Any) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "action": action,
        "price": str(price),
        "time": datetime.now(UTC).isoformat(),
        "strategy": "e2e",
        **extra,
    }


def ids(seeded: Iterable[SeededUser]) -> list[str]:
    return [s.user.user_id for s in seeded]
