"""Many JetStream publishes at once: bounded in flight, every one acknowledged.

Each message carries ``Nats-Msg-Id`` = its (deterministic) event id, so publishing the same
batch again inside the stream's duplicate window adds nothing: JetStream answers
``duplicate``. The publishes of a window share one reply subscription (one inbox, a token per
message) instead of one request each; a publish whose acknowledgement is an error or does not
come in time is retried on its own through ``Bus.publish`` (same id, so a retry is safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from nats.aio.msg import Msg

from marketbot.contracts import Event
from marketbot.runtime.bus import Bus
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.decision.publisher")


@dataclass(frozen=True, slots=True)
class PublishResult:
    published: int
    duplicates: int


class BatchPublisher:
    def __init__(self, bus: Bus, *, ack_timeout_s: float = 5.0, max_in_flight: int = 4096) -> None:
        self._bus = bus
        self.ack_timeout_s = ack_timeout_s
        self.max_in_flight = max_in_flight

    async def publish_all(self, events: Sequence[Event]) -> PublishResult:
        """Publish every event and wait for every acknowledgement (raises ``BusError``)."""
        duplicates = 0
        for start in range(0, len(events), self.max_in_flight):
            duplicates += await self._window(events[start : start + self.max_in_flight])
        return PublishResult(len(events), duplicates)

    async def _window(self, events: Sequence[Event]) -> int:
        nc = self._bus.nc
        inbox = nc.new_inbox()
        pending: dict[str, Event] = {str(i): e for i, e in enumerate(events)}
        failed: list[Event] = []
        duplicates = 0
        all_answered = asyncio.Event()

        async def on_ack(msg: Msg) -> None:
            nonlocal duplicates
            event = pending.pop(msg.subject.rsplit(".", 1)[-1], None)
            if event is None:
                return
            try:
                ack = json.loads(msg.data) if msg.data else {}
            except ValueError:
                ack = {}
            if "seq" not in ack or "error" in ack:  # no stream answered, or it refused
                failed.append(event)
            elif ack.get("duplicate"):
                duplicates += 1
            if not pending:
                all_answered.set()

        sub = await nc.subscribe(f"{inbox}.*", cb=on_ack)
        try:
            for token, event in list(pending.items()):
                await nc.publish(
                    self._bus.subject(event.subject()),
                    event.to_json(),
                    reply=f"{inbox}.{token}",
                    headers={"Nats-Msg-Id": str(event.event_id)},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_answered.wait(), timeout=self.ack_timeout_s)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        retry = failed + list(pending.values())
        if retry:
            log.warning("publishes retried one by one", retried=len(retry), total=len(events))
        for event in retry:
            ack = await self._bus.publish(event)  # raises BusError when it cannot
            if ack.duplicate:
                duplicates += 1
        return duplicates
