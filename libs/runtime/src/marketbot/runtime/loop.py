"""The one message loop every JetStream consumer runs.

``MessageLoop`` owns, once for every consumer: binding the durable pull consumer, fetching,
decoding (with the contracts' upcasters), handing a batch to the consumer's handler, and
settling each message: ack, a retry with backoff (``nak`` with the schedule's delay), or a
dead letter. It is supervised: a failure inside a batch is logged with the message id and
the correlation id and never ends the loop; if the loop itself fails it is restarted with
backoff. ``ready()`` is what ``/readyz`` reads: the loop is running and its lag (messages
not yet delivered) is within ``ConsumerSpec.max_lag``.

Bounded redelivery: a message that fails is redelivered after ``Redelivery.backoff_s``
(one delay per delivery, the last one repeating) at most ``Redelivery.max_deliver`` times;
a failure on the last allowed delivery publishes a ``MessageDeadLettered`` (reason and the
history of failed deliveries) to the DEAD_LETTERS stream and terminates the message. A
message that can never succeed (it does not decode, it is not the type the consumer takes,
or the handler calls ``reject`` / raises ``PermanentError``) is dead-lettered at once. If a
process dies on every delivery, JetStream stops after ``max_deliver`` and announces it
(``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES``); the loop dead-letters those too.

A handler gets a batch of ``Delivery`` objects and marks each one: ``ack()``,
``retry(error)``, ``reject(reason)`` or ``release()`` (give it back without counting a
failure, e.g. while shutting down). A delivery left unmarked when the handler returns is
acked; if the handler raises, every unmarked one is retried with that error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from prometheus_client import Counter, Gauge

from marketbot.contracts import (
    ContractError,
    DeliveryAttempt,
    Envelope,
    Event,
    MessageDeadLettered,
    dead_letter_id,
    decode,
)
from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.logs import correlation, get_logger

if TYPE_CHECKING:
    from marketbot.runtime.bus import Bus

log = get_logger("marketbot.loop")

DEAD_LETTERS = Counter(
    "marketbot_dead_letters_total",
    "Messages moved to the DEAD_LETTERS stream, by consumer and kind "
    "(permanent: could never succeed; exhausted: every allowed delivery failed)",
    ["consumer", "kind"],
)
REDELIVERIES = Counter(
    "marketbot_message_retries_total",
    "Messages given back for redelivery after a failure, by consumer",
    ["consumer"],
)
CONSUMER_UP = Gauge(
    "marketbot_consumer_up",
    "1 while the consumer's loop is running, 0 while it is down or restarting",
    ["consumer"],
)
CONSUMER_RESTARTS = Counter(
    "marketbot_consumer_restarts_total",
    "Times a consumer's loop failed and was restarted by its supervisor",
    ["consumer"],
)
CONSUMER_LAG = Gauge(
    "marketbot_consumer_lag_messages",
    "Messages in the stream not yet delivered to the consumer",
    ["consumer"],
)

Outcome = Literal["ack", "retry", "dead", "release"]
_HISTORY_LIMIT = 10_000
_MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"


class PermanentError(Exception):
    """Raised by a handler for a message that can never be applied: it is dead-lettered."""


@dataclass(frozen=True)
class Redelivery:
    """How often a failing message is tried, and how long it waits between tries."""

    max_deliver: int = 5
    backoff_s: tuple[float, ...] = (0.5, 2.0, 10.0, 30.0)

    def __post_init__(self) -> None:
        if self.max_deliver < 1:
            raise ValueError("max_deliver: a message is delivered at least once (>= 1)")
        if not self.backoff_s or any(d < 0 for d in self.backoff_s):
            raise ValueError("backoff_s: give at least one delay, none negative")

    def delay(self, delivered: int) -> float:
        """The wait before the next delivery after delivery number ``delivered`` failed."""
        return self.backoff_s[min(max(delivered, 1), len(self.backoff_s)) - 1]


@dataclass(frozen=True)
class ConsumerSpec:
    name: str
    """Durable consumer name; also the key in processed_events."""
    stream: str
    subjects: tuple[str, ...]
    batch: int = 64
    fetch_timeout: float = 1.0
    ack_wait: float = 30.0
    retry_delay: float = 0.5
    """Pause after a failed fetch (the server is away) before the loop tries again."""
    redelivery: Redelivery = field(default_factory=Redelivery)
    max_ack_pending: int = 1000
    max_lag: int | None = 10_000
    """``/readyz`` turns red while more than this many messages wait undelivered."""
    lag_poll_s: float = 5.0


class Delivery:
    """One fetched message, decoded, and what the handler decided about it."""

    __slots__ = ("delivered", "error", "message", "msg", "outcome", "reason", "sequence")

    def __init__(self, msg: Msg, message: Envelope | None, error: str | None = None) -> None:
        self.msg = msg
        self.message = message
        self.error = error
        self.sequence: int | None = None
        self.delivered = 1
        with contextlib.suppress(Exception):
            self.sequence = int(msg.metadata.sequence.stream)
            self.delivered = int(msg.metadata.num_delivered)
        self.outcome: Outcome | None = None
        self.reason = ""

    @property
    def event(self) -> Event:
        assert isinstance(self.message, Event)
        return self.message

    @property
    def correlation_id(self) -> str | None:
        return self.message.correlation_id if self.message is not None else None

    @property
    def message_id(self) -> str | None:
        return str(self.message.event_id) if self.message is not None else None

    @property
    def redelivered(self) -> bool:
        return self.delivered > 1

    def ack(self) -> None:
        self.outcome = "ack"

    def retry(self, error: BaseException | str) -> None:
        self.outcome = "retry"
        self.reason = error if isinstance(error, str) else repr(error)

    def reject(self, reason: str) -> None:
        self.outcome = "dead"
        self.reason = reason

    def release(self) -> None:
        self.outcome = "release"

    async def in_progress(self) -> None:
        """Tell JetStream the message is still being worked on (restarts its ack wait)."""
        with contextlib.suppress(Exception):
            await self.msg.in_progress()


BatchHandler = Callable[[Sequence[Delivery]], Awaitable[None]]


class MessageLoop:
    """One durable consumer: fetch, decode, handle, settle, supervised."""

    def __init__(
        self,
        bus: Bus,
        spec: ConsumerSpec,
        handler: BatchHandler | None = None,
        *,
        expect: type[Envelope] = Event,
        clock: Clock | None = None,
        dead_letters: bool = True,
    ) -> None:
        """``dead_letters=False`` (a replay, e.g. the ledger's rebuild) acks and counts an
        undecodable message in ``skipped`` instead: the live consumers dead-lettered it."""
        self.bus = bus
        self.spec = spec
        self._handler = handler
        self._expect = expect
        self._clock = clock or SystemClock()
        self._sub: Any = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._advisory: Any = None
        self._busy = False
        self._running = False
        self.lag = 0
        self.last_error: str | None = None
        self._history: OrderedDict[int, list[DeliveryAttempt]] = OrderedDict()
        self._parked: dict[int, float] = {}
        self._dead_letters = dead_letters
        self.skipped = 0
        self.fetched = 0
        self.last_sequence = 0
        CONSUMER_UP.labels(spec.name).set(0)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def durable(self) -> str:
        return self.bus.namespace.durable(self.spec.name)

    @property
    def stream_name(self) -> str:
        return self.bus.stream(self.spec.stream)

    # ---- life ----------------------------------------------------------------------
    async def bind(self) -> None:
        """Create (or update) the durable consumer and bind to it."""
        self._sub = await self.bus.pull(
            self.spec.stream,
            self.spec.name,
            self.spec.subjects,
            ack_wait=self.spec.ack_wait,
            max_deliver=self.spec.redelivery.max_deliver,
            max_ack_pending=self.spec.max_ack_pending,
        )
        if self._advisory is None:
            subject = f"{_MAX_DELIVERIES_ADVISORY}.{self.stream_name}.{self.durable}"
            self._advisory = await self.bus.nc.subscribe(
                subject, queue=f"dlq-{self.durable}", cb=self._on_max_deliveries
            )

    async def start(self) -> None:
        """Bind and, with a handler, run the supervised loop; register for ``/readyz``."""
        await self.bind()
        self.bus.loops.append(self)
        self._lag_task = asyncio.create_task(self._poll_lag(), name=f"lag:{self.name}")
        if self._handler is not None:
            self._task = asyncio.create_task(
                self.supervise(self._drive), name=f"consumer:{self.name}"
            )

    async def stop(self) -> None:
        """Finish the batch in hand (each message is settled or left for redelivery), stop."""
        self._stopping.set()
        for task in (self._task, self._lag_task):
            if task is None:
                continue
            if task is self._lag_task or not self._busy:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = self._lag_task = None
        if self._advisory is not None:
            with contextlib.suppress(Exception):
                await self._advisory.unsubscribe()
            self._advisory = None
        self.mark_running(False)
        with contextlib.suppress(ValueError):
            self.bus.loops.remove(self)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def mark_running(self, running: bool) -> None:
        """What readiness reports; the supervisor sets it, or the driver of a loop that is
        driven from outside (the executors' tier scheduler)."""
        self._running = running
        CONSUMER_UP.labels(self.name).set(1 if running else 0)

    async def supervise(self, body: Callable[[], Awaitable[None]]) -> None:
        """Run ``body`` until stopped; if it fails, log it, rebind and run it again."""
        delay = 0.1
        while not self._stopping.is_set():
            self.mark_running(True)
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.mark_running(False)
                self.last_error = repr(exc)
                CONSUMER_RESTARTS.labels(self.name).inc()
                log.exception("consumer loop failed; restarting", consumer=self.name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                delay = min(delay * 2, 5.0)
                with contextlib.suppress(Exception):
                    await self.bind()
            finally:
                self.mark_running(False)

    def ready(self) -> bool:
        """Running, and not more than ``max_lag`` messages behind."""
        if not self._running:
            return False
        return self.spec.max_lag is None or self.lag <= self.spec.max_lag

    async def _drive(self) -> None:
        while not self._stopping.is_set():
            batch = await self.fetch(self.spec.batch, self.spec.fetch_timeout)
            if not batch:
                continue
            self._busy = True
            try:
                await self.process(batch)
            finally:
                self._busy = False

    async def _poll_lag(self) -> None:
        while not self._stopping.is_set():
            try:
                info = await self.bus.js.consumer_info(self.stream_name, self.durable)
                self.lag = int(info.num_pending or 0)
                CONSUMER_LAG.labels(self.name).set(self.lag)
            except Exception as exc:  # a metric never takes the consumer down
                log.debug("could not read consumer lag", consumer=self.name, error=repr(exc))
            await asyncio.sleep(self.spec.lag_poll_s)

    # ---- fetch, handle, settle -----------------------------------------------------
    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        """Fetch up to ``batch`` messages; those that cannot be decoded are dead-lettered
        here and not returned. An empty list when nothing came within ``timeout``; a lost
        connection is waited out (``retry_delay``) and also gives an empty list."""
        if self._sub is None:
            await self.bind()
        self.fetched = 0
        try:
            messages: list[Msg] = await self._sub.fetch(batch, timeout=timeout)
        except (NatsTimeoutError, TimeoutError):
            return []
        except Exception as exc:
            self.last_error = repr(exc)
            log.warning("fetch failed", consumer=self.name, error=repr(exc))
            await asyncio.sleep(self.spec.retry_delay)
            return []
        deliveries: list[Delivery] = []
        self.fetched = len(messages)
        for msg in messages:
            delivery = self._decode(msg)
            if delivery.sequence is not None:
                self._parked.pop(delivery.sequence, None)
                self.last_sequence = max(self.last_sequence, delivery.sequence)
            if delivery.error is None:
                deliveries.append(delivery)
            elif self._dead_letters:
                delivery.reject(delivery.error)
                await self.settle([delivery])
            else:
                self.skipped += 1
                delivery.ack()
                await self.settle([delivery])
        if messages:
            with contextlib.suppress(Exception):
                self.lag = int(messages[-1].metadata.num_pending)
                CONSUMER_LAG.labels(self.name).set(self.lag)
        return deliveries

    def _decode(self, msg: Msg) -> Delivery:
        try:
            message = decode(msg.data)
        except ContractError as exc:
            return Delivery(msg, None, f"undecodable: {exc}")
        except Exception as exc:  # whatever the bytes are, they never stop the loop
            return Delivery(msg, None, f"undecodable: {exc!r}")
        if not isinstance(message, self._expect):
            return Delivery(msg, message, f"not a {self._expect.__name__}: {message.type}")
        return Delivery(msg, message)

    async def process(self, batch: Sequence[Delivery]) -> None:
        """Run the handler on ``batch`` and settle every delivery; never raises."""
        assert self._handler is not None
        await self.handle_with(self._handler, batch)

    async def handle_with(self, handler: BatchHandler, batch: Sequence[Delivery]) -> None:
        try:
            await handler(batch)
        except asyncio.CancelledError:
            for d in batch:
                if d.outcome is None:
                    d.release()
            await self.settle(batch)
            raise
        except PermanentError as exc:
            for d in batch:
                if d.outcome is None:
                    d.reject(str(exc))
        except Exception as exc:
            first = batch[0] if batch else None
            with correlation(first.correlation_id if first else None):
                log.warning(
                    "handler failed; the batch is retried",
                    consumer=self.name,
                    message_id=first.message_id if first else None,
                    error=repr(exc),
                )
            for d in batch:
                if d.outcome is None:
                    d.retry(exc)
        await self.settle(batch)

    async def settle(self, batch: Sequence[Delivery]) -> None:
        """Ack, nak with backoff, or dead-letter each delivery; failures are logged."""
        for d in batch:
            with correlation(d.correlation_id, consumer=self.name, message_id=d.message_id):
                try:
                    await self._settle_one(d)
                except Exception as exc:  # the message is redelivered after ack_wait
                    log.warning("could not settle a message", error=repr(exc), outcome=d.outcome)

    async def _settle_one(self, d: Delivery) -> None:
        outcome = d.outcome or "ack"
        if outcome == "ack":
            if d.sequence is not None:
                self._history.pop(d.sequence, None)
            await d.msg.ack()
        elif outcome == "release":
            await d.msg.nak()
        elif outcome == "dead":
            await self.dead_letter(d, d.reason or "rejected", permanent=True)
        else:
            self._remember(d)
            if d.delivered >= self.spec.redelivery.max_deliver:
                await self.dead_letter(
                    d, f"failed on all {d.delivered} deliveries: {d.reason}", permanent=False
                )
                return
            delay = self.spec.redelivery.delay(d.delivered)
            log.warning(
                "message failed; redelivery after backoff",
                error=d.reason,
                delivery=d.delivered,
                max_deliver=self.spec.redelivery.max_deliver,
                delay_s=delay,
            )
            REDELIVERIES.labels(self.name).inc()
            if d.sequence is not None:
                self._parked[d.sequence] = asyncio.get_running_loop().time() + delay
            await d.msg.nak(delay=delay)

    def _remember(self, d: Delivery) -> None:
        if d.sequence is None:
            return
        attempts = self._history.setdefault(d.sequence, [])
        self._history.move_to_end(d.sequence)
        attempts.append(
            DeliveryAttempt(delivery=d.delivered, error=d.reason[:2000], at=self._clock.now())
        )
        while len(self._history) > _HISTORY_LIMIT:
            self._history.popitem(last=False)

    def parked(self) -> int:
        """Messages of this consumer given back after a failure and not yet redelivered
        here (waiting out their backoff): work that is not ready, so it holds nobody up.
        One redelivered to another replica is forgotten an ack wait after it fell due."""
        now = asyncio.get_running_loop().time()
        for sequence, due in list(self._parked.items()):
            if now > due + self.spec.ack_wait:
                del self._parked[sequence]
        return len(self._parked)

    # ---- dead letters --------------------------------------------------------------
    def _logical_subject(self, subject: str) -> str:
        prefix = self.bus.namespace.prefix
        return (
            subject[len(prefix) + 1 :] if prefix and subject.startswith(f"{prefix}.") else subject
        )

    async def dead_letter(self, d: Delivery, reason: str, *, permanent: bool) -> None:
        """Publish the message to DEAD_LETTERS, then terminate it. If the publish fails the
        message is given back (nothing is lost) and dead-lettered on a later delivery."""
        await self._publish_dead_letter(
            payload=bytes(d.msg.data),
            subject=d.msg.subject,
            sequence=d.sequence,
            message=d.message,
            reason=reason,
            permanent=permanent,
            deliveries=d.delivered,
        )
        if d.sequence is not None:
            self._history.pop(d.sequence, None)
            self._parked.pop(d.sequence, None)
        await d.msg.term()

    async def _publish_dead_letter(
        self,
        *,
        payload: bytes,
        subject: str,
        sequence: int | None,
        message: Envelope | None,
        reason: str,
        permanent: bool,
        deliveries: int,
    ) -> None:
        history = tuple(self._history.get(sequence, ())) if sequence is not None else ()
        letter = MessageDeadLettered(
            event_id=dead_letter_id(self.name, self.spec.stream, sequence, payload),
            occurred_at=self._clock.now(),
            correlation_id=message.correlation_id if message is not None else "dead-letter",
            causation_id=str(message.event_id) if message is not None else None,
            consumer=self.name,
            source_stream=self.spec.stream,
            source_subject=self._logical_subject(subject),
            stream_sequence=sequence,
            message_type=message.type if message is not None else None,
            message_id=str(message.event_id) if message is not None else None,
            reason=reason[:2000],
            permanent=permanent,
            deliveries=deliveries,
            history=history,
            payload_b64=base64.b64encode(payload).decode(),
            dead_lettered_at=self._clock.now(),
        )
        log.error(
            "message dead-lettered",
            consumer=self.name,
            stream_sequence=sequence,
            reason=letter.reason,
            permanent=permanent,
        )
        await self.bus.publish(letter)
        DEAD_LETTERS.labels(self.name, "permanent" if permanent else "exhausted").inc()

    async def _on_max_deliveries(self, msg: Msg) -> None:
        """JetStream gave up redelivering (the consumer never settled it): dead-letter it."""
        try:
            advisory = json.loads(msg.data)
            sequence = int(advisory["stream_seq"])
            deliveries = int(advisory.get("deliveries", self.spec.redelivery.max_deliver))
            stored = await self.bus.js.get_msg(self.stream_name, sequence)
            payload = bytes(stored.data or b"")
            message: Envelope | None = None
            with contextlib.suppress(ContractError):
                message = decode(payload)
            await self._publish_dead_letter(
                payload=payload,
                subject=str(stored.subject),
                sequence=sequence,
                message=message,
                reason=f"delivered {deliveries} times without an outcome "
                "(the consumer crashed or hung on each delivery)",
                permanent=False,
                deliveries=deliveries,
            )
            self._history.pop(sequence, None)
            self._parked.pop(sequence, None)
        except Exception as exc:
            log.warning("could not dead-letter a max-deliveries message", error=repr(exc))
