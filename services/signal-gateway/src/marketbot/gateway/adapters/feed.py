"""Following ORDER_EVENTS and LEDGER for live push, and replaying them by stream sequence.

Each gateway process follows both streams with an ordered (ephemeral, in-memory, no-ack)
push consumer starting just after the streams' last sequence at start, so the hub knows
exactly from where its memory is complete. A resume older than that memory is served by
another ordered push consumer reading the stream from the client's sequence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from marketbot.contracts import STREAMS, ContractError, Event, decode
from marketbot.gateway.domain.push import LEDGER, ORDERS, Cursor
from marketbot.runtime.bus import Bus
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.gateway.feed")

STREAM_OF_FEED = {ORDERS: "ORDER_EVENTS", LEDGER: "LEDGER"}
Dispatch = Callable[[str, int, Event], None]


class ReplayTooLongError(Exception):
    """The client is further behind than the gateway replays; it must reload its state."""


def _subjects(bus: Bus, stream: str) -> list[str]:
    spec = next(s for s in STREAMS if s.name == stream)
    return [bus.subject(s) for s in spec.subjects]


def _decode(msg: Msg) -> Event | None:
    try:
        event = decode(msg.data)
    except ContractError as exc:
        log.warning("undecodable event skipped by live push", subject=msg.subject, error=str(exc))
        return None
    return event if isinstance(event, Event) else None


@dataclass
class JetStreamFeed:
    bus: Bus
    _subs: list[JetStreamContext.PushSubscription] = field(default_factory=list)

    async def start(self, on_start: Callable[[Cursor], None], dispatch: Dispatch) -> Cursor:
        """Subscribe after the current end of both streams; returns that position."""
        last: dict[str, int] = {}
        for feed, stream in STREAM_OF_FEED.items():
            info = await self.bus.js.stream_info(self.bus.stream(stream))
            last[feed] = int(info.state.last_seq)
        start = Cursor(last[ORDERS], last[LEDGER])
        on_start(start)
        for feed, stream in STREAM_OF_FEED.items():
            self._subs.append(await self._follow(feed, stream, last[feed] + 1, dispatch))
        return start

    async def _follow(
        self, feed: str, stream: str, first_seq: int, dispatch: Dispatch
    ) -> JetStreamContext.PushSubscription:
        async def on_message(msg: Msg) -> None:
            event = _decode(msg)
            if event is not None:
                dispatch(feed, int(msg.metadata.sequence.stream), event)

        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=first_seq,
            filter_subjects=_subjects(self.bus, stream),
        )
        return await self.bus.js.subscribe(
            _subjects(self.bus, stream)[0],
            stream=self.bus.stream(stream),
            cb=on_message,
            ordered_consumer=True,
            config=config,
        )

    async def replay(
        self, feed: str, after_seq: int, upto_seq: int, limit: int
    ) -> list[tuple[int, Event]]:
        """Events of ``feed`` with ``after_seq < seq <= upto_seq``, in order."""
        if upto_seq <= after_seq:
            return []
        if upto_seq - after_seq > limit:
            raise ReplayTooLongError(f"{upto_seq - after_seq} events to replay (limit {limit})")
        # An ordered push consumer into the gateway's own inbox: the gateway's credential
        # may create ephemeral consumers on the streams it pushes, but never fetch from a
        # named consumer (that would let it take other services' messages).
        logical = STREAM_OF_FEED[feed]
        sub = await self.bus.js.subscribe(
            _subjects(self.bus, logical)[0],
            stream=self.bus.stream(logical),
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=after_seq + 1,
                filter_subjects=_subjects(self.bus, logical),
                mem_storage=True,
                num_replicas=1,
            ),
        )
        found: list[tuple[int, Event]] = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=2.0)
                except NatsTimeoutError:
                    break  # the rest was removed from the stream (age limits)
                seq = int(msg.metadata.sequence.stream)
                if seq > upto_seq:
                    break
                event = _decode(msg)
                if event is not None:
                    found.append((seq, event))
                if seq >= upto_seq or msg.metadata.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return found

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
