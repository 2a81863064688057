"""NATS and JetStream: connect, provision streams, publish events, request/reply.

Every publish carries ``Nats-Msg-Id = event_id`` so JetStream drops a duplicate within the
stream's duplicate window; a ``duplicate`` PubAck is success (blueprint rule 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NoStreamResponseError, NotFoundError
from prometheus_client import Counter
from pydantic import ValidationError

from marketbot.contracts import (
    BusNamespace,
    ContractError,
    ErrorDetail,
    Event,
    Reply,
    Request,
    StreamSpec,
    decode_as,
)
from marketbot.runtime.logs import correlation, get_logger

log = get_logger("marketbot.bus")

R = TypeVar("R", bound=Reply)
Q = TypeVar("Q", bound=Request)

EVENTS_PUBLISHED = Counter(
    "marketbot_events_published_total",
    "Events published to JetStream, by type and whether JetStream reported a duplicate",
    ["type", "duplicate"],
)
REQUESTS_SERVED = Counter(
    "marketbot_requests_served_total",
    "Core NATS requests answered, by subject and outcome",
    ["subject", "outcome"],
)

_RETENTION = {
    "limits": RetentionPolicy.LIMITS,
    "interest": RetentionPolicy.INTEREST,
    "workqueue": RetentionPolicy.WORK_QUEUE,
}


class BusError(RuntimeError):
    """A bus operation that could not complete (no server, no responder, timeout)."""


def nats_servers(url: str | Sequence[str]) -> list[str]:
    """``nats://a:4222,nats://b:4222`` (or a list) -> every server of the cluster; the
    client picks one and fails over to the others."""
    parts = url.split(",") if isinstance(url, str) else list(url)
    servers = [part.strip() for part in parts if part.strip()]
    if not servers:
        raise ValueError("NATS_URL: give at least one nats:// URL (comma-separated for a cluster)")
    return servers


@dataclass(frozen=True)
class NatsCredentials:
    """How one process authenticates: its nkey seed, its own inbox prefix, TLS trust."""

    nkey_seed: str | None = None
    inbox_prefix: str | None = None
    """Replies to this process arrive under ``<inbox_prefix>.>``; the server lets only this
    identity subscribe there (marketbot.contracts.access.inbox_prefix)."""
    tls_ca_file: str | None = None

    def __repr__(self) -> str:
        seed = "**********" if self.nkey_seed else None
        return f"NatsCredentials(nkey_seed={seed}, inbox_prefix={self.inbox_prefix!r})"


async def connect_nats(
    url: str | Sequence[str],
    name: str,
    *,
    connect_timeout: float = 5.0,
    credentials: NatsCredentials | None = None,
) -> NatsClient:
    """Connect with unlimited reconnects; state changes are logged, never raised.

    An authentication or authorization failure at connect time is raised (nats-py gives up
    on an auth error twice in a row), so a service with a wrong credential fails to start.
    """

    async def on_disconnect() -> None:
        log.warning("nats disconnected", client=name)

    async def on_reconnect() -> None:
        log.info("nats reconnected", client=name)

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", client=name, error=str(exc))

    async def on_closed() -> None:
        log.info("nats connection closed", client=name)

    creds = credentials or NatsCredentials()
    extra: dict[str, object] = {}
    if creds.nkey_seed:
        extra["nkeys_seed_str"] = creds.nkey_seed
    if creds.inbox_prefix:
        extra["inbox_prefix"] = creds.inbox_prefix
    if creds.tls_ca_file:
        extra["tls"] = ssl.create_default_context(cafile=creds.tls_ca_file)
    return await nats.connect(
        servers=nats_servers(url),
        name=name,
        **extra,
        connect_timeout=connect_timeout,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
        closed_cb=on_closed,
    )


def stream_config(spec: StreamSpec) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        description=spec.description or None,
        subjects=list(spec.subjects),
        retention=_RETENTION[spec.retention.value],
        storage=StorageType.FILE,
        max_age=spec.max_age.total_seconds(),
        duplicate_window=spec.duplicate_window.total_seconds(),
        num_replicas=spec.replicas,
    )


async def provision_streams(js: JetStreamContext, specs: Iterable[StreamSpec]) -> None:
    """Create each stream, or update it to the spec; safe to run from every service at start."""
    for spec in specs:
        config = stream_config(spec)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                continue
            except nats.js.errors.BadRequestError:
                pass  # another process created it between our two calls: update below
        await js.update_stream(config)


@dataclass
class Bus:
    """One NATS connection, its JetStream context and the namespace this copy runs in."""

    nc: NatsClient
    js: JetStreamContext
    namespace: BusNamespace = field(default_factory=BusNamespace)
    publish_timeout: float = 5.0
    publish_attempts: int = 5
    _pulls: list[JetStreamContext.PullSubscription] = field(default_factory=list)
    loops: list[Any] = field(default_factory=list)
    """The running ``MessageLoop`` of every consumer on this connection (for ``/readyz``)."""

    @classmethod
    async def connect(
        cls,
        url: str,
        name: str,
        namespace: BusNamespace | None = None,
        *,
        credentials: NatsCredentials | None = None,
    ) -> Bus:
        nc = await connect_nats(url, name, credentials=credentials)
        return cls(nc=nc, js=nc.jetstream(), namespace=namespace or BusNamespace())

    async def provision(self, replicas: int = 1) -> None:
        """Create or update every stream of the namespace with ``replicas`` copies (R3 = 3).

        Needs the operator's rights (stream create/update): services do not have them.
        """
        specs = [dataclasses.replace(spec, replicas=replicas) for spec in self.namespace.streams()]
        await provision_streams(self.js, specs)

    async def wait_for_streams(
        self, names: Iterable[str], *, timeout: float = 120.0, poll: float = 0.5
    ) -> None:
        """Wait until the streams ``names`` (logical) exist: the operator provisions them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for name in names:
            stream = self.stream(name)
            warned = False
            while True:
                try:
                    await self.js.stream_info(stream)
                    break
                except (NotFoundError, NatsTimeoutError, NoRespondersError) as exc:
                    if loop.time() > deadline:
                        raise BusError(
                            f"stream {stream} does not exist: provision the streams with the "
                            "operator credential (python -m marketbot.runtime.provision)"
                        ) from exc
                    if not warned:
                        log.warning("waiting for a stream to be provisioned", stream=stream)
                        warned = True
                    await asyncio.sleep(poll)

    def subject(self, subject: str) -> str:
        return self.namespace.subject(subject)

    def stream(self, name: str) -> str:
        return self.namespace.stream(name)

    async def publish(self, event: Event, *, budget: float | None = None) -> PubAck:
        """Publish durably; retried on timeout (safe: the message id de-duplicates).

        ``budget`` bounds the whole call in seconds, retries included (an HTTP caller with
        its own deadline passes one); without it, ``publish_attempts`` x ``publish_timeout``.
        """
        return await self.publish_raw(
            self.subject(event.subject()),
            event.to_json(),
            str(event.event_id),
            event.type,
            budget=budget,
        )

    async def publish_raw(
        self, subject: str, payload: bytes, msg_id: str, kind: str, *, budget: float | None = None
    ) -> PubAck:
        loop = asyncio.get_running_loop()
        deadline = None if budget is None else loop.time() + budget
        delay = 0.05
        for attempt in range(1, self.publish_attempts + 1):
            timeout = self.publish_timeout
            if deadline is not None:
                timeout = min(timeout, deadline - loop.time())
                if timeout <= 0:
                    raise BusError(f"publish to {subject} did not complete within {budget}s")
            try:
                ack = await self.js.publish(
                    subject, payload, timeout=timeout, headers={"Nats-Msg-Id": msg_id}
                )
            except (
                NatsTimeoutError,
                NoRespondersError,
                NoStreamResponseError,
                nats.errors.ConnectionClosedError,
            ) as exc:
                out_of_time = deadline is not None and loop.time() + delay >= deadline
                if attempt == self.publish_attempts or out_of_time:
                    raise BusError(f"publish to {subject} failed: {type(exc).__name__}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            EVENTS_PUBLISHED.labels(kind, str(bool(ack.duplicate)).lower()).inc()
            return ack
        raise BusError(f"publish to {subject} failed")  # unreachable: the loop returns or raises

    async def request(self, message: Request, reply_type: type[R], timeout: float = 5.0) -> R:
        """Send a core-NATS request and parse the reply."""
        subject = self.subject(message.request_subject())
        try:
            response = await self.nc.request(subject, message.to_json(), timeout=timeout)
        except NoRespondersError as exc:
            raise BusError(f"no service answers {subject}") from exc
        except NatsTimeoutError as exc:
            raise BusError(f"{subject} did not answer within {timeout}s") from exc
        return reply_type.model_validate_json(response.data)

    async def serve(
        self,
        request_type: type[Q],
        reply_type: type[R],
        handler: Callable[[Q], Awaitable[R]],
        *,
        queue: str | None = None,
        concurrency: int = 1,
    ) -> Subscription:
        """Answer ``request_type`` on its subject (a queue group, so replicas share the load).

        nats-py runs a subscription's callback for one message at a time; with
        ``concurrency`` > 1 each request is answered in its own task, at most that many at
        once (the next message waits for a free place), so one slow request (the key vault
        sending an order the exchange holds) does not hold up every other caller.

        A malformed request gets a reply with ``ok=False`` naming the field; an unexpected
        handler failure gets ``ok=False`` with code ``internal`` and is logged.
        """
        subject = self.subject(request_type.listen_subject())

        outcomes = {
            outcome: REQUESTS_SERVED.labels(request_type.SUBJECT, outcome)
            for outcome in ("ok", "refused", "invalid", "error")
        }

        async def on_message(msg: Msg) -> None:
            # The hot path (keyvault.sign): a request at the current version parses straight
            # into its model; the upcasting decoder runs only when that fails, and the log
            # context is bound only when there is something to log.
            try:
                request = request_type.model_validate_json(msg.data)
            except ValidationError:
                try:
                    request = decode_as(msg.data, request_type)
                except ContractError as exc:
                    outcomes["invalid"].inc()
                    await _respond(msg, reply_type(ok=False, error=_invalid(exc)))
                    return
            if request_type.SUBJECT_FIELD and msg.subject != self.subject(
                request.request_subject()
            ):
                # The server's permissions are per subject (marketbot.contracts.access): a
                # body naming another value than its subject is refused, so that rule cannot
                # be sidestepped (an executor asking keyvault.sign.bybit for Binance).
                outcomes["invalid"].inc()
                field_name = request_type.SUBJECT_FIELD
                error = ErrorDetail(
                    code="invalid_request",
                    message=f"{field_name}: {request.request_subject()!r} asked on {msg.subject!r}"[
                        :500
                    ],
                    field=field_name,
                )
                await _respond(msg, reply_type(ok=False, error=error))
                return
            try:
                reply = await handler(request)
            except Exception:
                with correlation(request.correlation_id, request=request_type.TYPE):
                    log.exception("request handler failed")
                outcomes["error"].inc()
                error = ErrorDetail(code="internal", message="the service failed; try again")
                await _respond(msg, reply_type(ok=False, error=error))
                return
            outcomes["ok" if reply.ok else "refused"].inc()
            await _respond(msg, reply)

        callback = on_message
        if concurrency > 1:
            places = asyncio.Semaphore(concurrency)
            running: set[asyncio.Task[None]] = set()

            def done(task: asyncio.Task[None]) -> None:
                running.discard(task)
                places.release()

            async def dispatch(msg: Msg) -> None:
                await places.acquire()
                task = asyncio.create_task(on_message(msg))
                running.add(task)
                task.add_done_callback(done)

            callback = dispatch
        sub = await self.nc.subscribe(subject, queue=queue or request_type.SUBJECT, cb=callback)
        return sub

    async def pull(
        self,
        stream: str,
        durable: str,
        filter_subjects: Iterable[str],
        *,
        ack_wait: float = 30.0,
        max_deliver: int = -1,
        max_ack_pending: int = 1000,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    ) -> JetStreamContext.PullSubscription:
        """Create (or update) a durable pull consumer and bind to it.

        ``stream`` and ``durable`` are logical names; the namespace prefixes them, and each
        filter subject.
        """
        stream_name = self.stream(stream)
        durable_name = self.namespace.durable(durable)
        subjects = [self.subject(s) for s in filter_subjects]
        config = ConsumerConfig(
            durable_name=durable_name,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
            deliver_policy=deliver_policy,
            **(
                {"filter_subject": subjects[0]}
                if len(subjects) == 1
                else {"filter_subjects": subjects}
            ),
        )
        await self.js.add_consumer(stream_name, config)
        sub = await self.js.pull_subscribe_bind(durable_name, stream_name)
        self._pulls.append(sub)
        return sub

    async def close(self) -> None:
        """Drain: finish in-flight handlers and flush pending publishes, then disconnect."""
        if self.nc.is_closed:
            return
        for pull in self._pulls:
            # A pull subscription has nothing in flight once its consumer loop has stopped.
            with contextlib.suppress(Exception):
                await pull.unsubscribe()
        self._pulls.clear()
        try:
            await asyncio.wait_for(self.nc.drain(), timeout=10)
        except (TimeoutError, nats.errors.ConnectionClosedError):
            await self.nc.close()


async def _respond(msg: Msg, reply: Reply) -> None:
    if msg.reply:
        await msg.respond(reply.model_dump_json().encode())


def _invalid(exc: ContractError) -> ErrorDetail:
    text = str(exc)
    field_name = text.split(":", 1)[0] if ":" in text else None
    return ErrorDetail(code="invalid_request", message=text[:500], field=field_name)
