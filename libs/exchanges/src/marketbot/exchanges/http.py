"""The request engine both venue clients stand on.

One pooled HTTP client per exchange; every request goes through, in order: the
ban check, the server clock (signed requests), the signer, the rate limiter, a connection
slot (both waited for at most the caller's ``deadline``), the ban / 429-hold check again (so
nothing queued leaves after a 429, 418 or 403 until its wait ends), the endpoint's circuit
breaker (``breaker.py``: one per endpoint, so failing creates never stop lookups or
cancels), the wire, the venue's usage headers (the budget follows what the exchange
reports), the venue's decoder (typed errors), and metrics. Reads are retried with
exponential backoff and jitter; writes only when nothing was executed (``Retryable``). A
timestamp rejection re-measures the clock and sends once more.

The venue subclasses supply the wire format (``encode``/``attach``), the metering
(``costs``/``observe``) and the decoding of responses into data or typed errors.

The pooled client is ``transport.py``'s (aiohttp in production, chosen by measurement;
httpx's client only over a transport a test gives), answering ``httpx.Response``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from marketbot.contracts import Exchange
from marketbot.exchanges import metrics
from marketbot.exchanges.breaker import CircuitBreaker, EndpointBreakers
from marketbot.exchanges.deadline import remaining as deadline_remaining
from marketbot.exchanges.errors import (
    CircuitOpenError,
    ClockSkewError,
    ExchangeError,
    IpBannedError,
    OutcomeUnknown,
    RateLimited,
    Retryable,
)
from marketbot.exchanges.ratelimit import RateLimiter, Tokens, WindowBucket
from marketbot.exchanges.retry import RetryPolicy
from marketbot.exchanges.signer import (
    Sender,
    SentResponse,
    Signature,
    Signer,
    SigningInput,
)
from marketbot.exchanges.timesync import ServerClock
from marketbot.exchanges.transport import AiohttpClient, HttpClient
from marketbot.runtime.clock import Clock

USER_AGENT = "marketbot-exchanges/0.1"
Params = Mapping[str, str]
Costs = list[tuple[WindowBucket, float]]

# Errors after which the request certainly never reached the exchange.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One exchange endpoint as the engine sees it."""

    method: str
    path: str
    signed: bool = False
    read: bool = True

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(slots=True)
class Wire:
    """A request ready to send: exact query and body, headers, and the URL suffix."""

    method: str
    path: str
    query: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)

    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass(frozen=True, slots=True)
class HttpSettings:
    recv_window_ms: int = 5000
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    """A create that gets no answer within this is an unknown outcome (looked up later)."""
    write_timeout_s: float = 10.0
    pool_timeout_s: float = 10.0
    """Waiting for a pooled connection (never sent: safe to retry)."""
    max_connections: int = 20
    max_keepalive_connections: int = 20
    max_vault_sends: int = 256
    """Requests the key vault sends for this client at once (``Sender``): they use none of
    this client's connections (the vault's own pool and ``SIGN_CONCURRENCY`` bound them),
    so they do not wait for one of ``max_connections``."""
    keepalive_expiry_s: float = 30.0
    clock_refresh_s: float = 300.0
    clock_safety_ms: int = 200
    resign_after_wait_ms: int = 1000
    breaker_failure_threshold: int = 5
    """Failures within ``breaker_window_s`` before an endpoint's breaker may open ..."""
    breaker_failure_ratio: float = 0.5
    """... and only when they are at least this share of that endpoint's outcomes then."""
    breaker_window_s: float = 30.0
    breaker_reset_timeout_s: float = 10.0
    rate_limit_safety: float = 0.9
    rate_limit_scale: float = 1.0
    """Multiplies every documented limit; only for simulators run with their limits off."""
    max_rate_limit_wait_s: float = 30.0
    limits_refresh_s: float | None = None
    """Ask the exchange for its limits before the first request and this often after (Binance
    ``exchangeInfo.rateLimits``); ``None`` keeps the documented limits until a response
    reports others."""
    ban_fallback_s: float | None = None
    """Ban length when the exchange names none (Bybit 403; 418 without Retry-After);
    ``None`` keeps the venue's documented default."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class VenueHttp(ABC):
    """Signed and public requests to one exchange, safe under limits and faults."""

    exchange: Exchange

    def __init__(
        self,
        base_url: str,
        *,
        clock: Clock,
        settings: HttpSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or HttpSettings()
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.rng = rng or random.Random()
        s = self.settings
        # The wire (transport.py): aiohttp in production; an httpx transport given by a test
        # (a fake at this port) goes through httpx's client.
        self.client: HttpClient
        if transport is None:
            self.client = AiohttpClient(
                self.base_url,
                connect_timeout_s=s.connect_timeout_s,
                read_timeout_s=s.read_timeout_s,
                pool_timeout_s=s.pool_timeout_s,
                max_connections=s.max_connections,
                keepalive_expiry_s=s.keepalive_expiry_s,
                user_agent=USER_AGENT,
            )
        else:
            self.client = httpx.AsyncClient(
                base_url=self.base_url,
                transport=transport,
                timeout=httpx.Timeout(
                    s.read_timeout_s,
                    connect=s.connect_timeout_s,
                    write=s.write_timeout_s,
                    pool=s.pool_timeout_s,
                ),
                limits=httpx.Limits(
                    max_connections=s.max_connections,
                    max_keepalive_connections=s.max_keepalive_connections,
                    keepalive_expiry=s.keepalive_expiry_s,
                ),
                headers={"User-Agent": USER_AGENT},
            )
        self.limiter = RateLimiter(
            self.exchange, clock, max_wait_s=s.max_rate_limit_wait_s, scale=s.rate_limit_scale
        )
        self.breakers = EndpointBreakers(
            self.exchange,
            clock,
            failure_threshold=s.breaker_failure_threshold,
            failure_ratio=s.breaker_failure_ratio,
            window_s=s.breaker_window_s,
            reset_timeout_s=s.breaker_reset_timeout_s,
        )
        self.time = ServerClock(
            self.exchange,
            clock,
            self.fetch_server_time_ms,
            refresh_s=s.clock_refresh_s,
            safety_ms=s.clock_safety_ms,
        )
        # Waiting here is far cheaper than in httpx's pool queue, and nothing queues there.
        self._slots = asyncio.Semaphore(s.max_connections)
        self._vault_slots = asyncio.Semaphore(s.max_vault_sends)
        self._resign_s = s.resign_after_wait_ms / 1000
        self._latency = metrics.REQUEST_LATENCY
        self._exchange_label = self.exchange.value

    # ---- venue hooks ------------------------------------------------------------------
    @abstractmethod
    def encode(self, endpoint: Endpoint, params: Params, timestamp_ms: int | None) -> Wire:
        """The exact query/body for ``params`` (with signing parameters when signed)."""

    @abstractmethod
    def attach(self, wire: Wire, timestamp_ms: int, signature: Signature) -> None:
        """Put the signature (and key) where the venue expects it."""

    @abstractmethod
    def ip_costs(self, endpoint: Endpoint, params: Params) -> Costs:
        """The per-IP budget a request spends."""

    @abstractmethod
    def key_costs(self, endpoint: Endpoint, api_key: str) -> Costs:
        """The per-key (per-account) budget a request spends."""

    @abstractmethod
    def observe(self, endpoint: Endpoint, response: httpx.Response, api_key: str | None) -> None:
        """Merge the exchange's usage headers into the limiter."""

    @abstractmethod
    def decode(self, endpoint: Endpoint, response: httpx.Response) -> Any:
        """The response's data, or raise the typed error its status/code means."""

    @abstractmethod
    async def fetch_server_time_ms(self) -> int:
        """The exchange's clock in epoch milliseconds (one public request)."""

    async def before_send(self, endpoint: Endpoint) -> None:  # noqa: B027 - optional hook
        """Runs before an attempt is metered (e.g. learn the exchange's limits first)."""

    def wire_for(self, request: SigningInput) -> Wire:
        """The wire of a request given as the exact bytes that were signed."""
        return Wire(request.method, request.path, request.query, request.body, {})

    def attach_signed(self, wire: Wire, request: SigningInput, signature: Signature) -> None:
        """``attach`` for a request given as signed (its own timestamp and window)."""
        self.attach(wire, request.timestamp_ms, signature)

    # ---- the vault's side of a request it signs and sends itself ----------------------
    async def send_signed(self, request: SigningInput, signature: Signature) -> httpx.Response:
        """Send ``request`` with ``signature`` attached, as signed (the key vault, for the
        endpoints whose signatures never leave it). Raises ``Retryable`` when it certainly
        never reached the exchange, ``OutcomeUnknown`` when it may have."""
        wire = self.wire_for(request)
        self.attach_signed(wire, request, signature)
        try:
            return await self.client.request(
                wire.method, wire.target(), headers=wire.headers, content=wire.body or None
            )
        except httpx.HTTPError as exc:
            message = f"{type(exc).__name__} on {request.method} {request.path}: {exc}"
            if isinstance(exc, _NOT_SENT):
                raise Retryable(message, exchange=self.exchange) from exc
            raise OutcomeUnknown(message, exchange=self.exchange) from exc

    def _vault_sender(self, endpoint: Endpoint, signer: Signer | None) -> Sender | None:
        """The signer, when it is the vault's and the vault sends this endpoint itself."""
        if not endpoint.signed or not isinstance(signer, Sender):
            return None
        from marketbot.exchanges.signing import signing_policy

        if signing_policy(self.exchange).sent_by_vault(endpoint.method, endpoint.path):
            return signer
        return None

    async def _send_through(
        self, sender: Sender, endpoint: Endpoint, params: Params
    ) -> httpx.Response:
        """Encode with a fresh timestamp and have the vault sign and send it."""
        timestamp_ms = self.time.now_ms()
        wire = self.encode(endpoint, params, timestamp_ms)
        sent: SentResponse = await sender.send(
            SigningInput(
                exchange=self.exchange,
                method=wire.method,
                path=wire.path,
                query=wire.query,
                body=wire.body,
                timestamp_ms=timestamp_ms,
                recv_window_ms=self.settings.recv_window_ms,
            )
        )
        return httpx.Response(
            sent.status,
            headers=list(sent.headers),
            content=sent.body.encode(),
            request=httpx.Request(wire.method, self.base_url + wire.target()),
        )

    # ---- the engine ---------------------------------------------------------------
    async def call(
        self, endpoint: Endpoint, params: Params | None = None, signer: Signer | None = None
    ) -> Any:
        """Send with the retry policy: reads only. A write (``read=False``: order create,
        cancel, OCO) is sent once per call whatever the error; the caller resends, if at all,
        under its own committed attempt mark (libs/execution, "one resend policy")."""
        params = params or {}
        policy = self.settings.retry
        attempt = 0
        clock_retried = False
        while True:
            attempt += 1
            try:
                return await self.send_once(endpoint, params, signer)
            except ClockSkewError:
                if not endpoint.read:
                    # A write is never resent here: re-measure the clock and let the caller,
                    # which owns the one resend policy (a committed attempt mark, then a lookup
                    # by id), decide. A wait here could outlast the caller's settle window.
                    await self.time.measure()
                    raise
                if clock_retried or not endpoint.signed:
                    raise
                clock_retried = True
                attempt -= 1
                await self.time.measure()
                self._count_retry(endpoint, "clock")
                continue
            except (IpBannedError, CircuitOpenError):
                raise
            except RateLimited as exc:
                if (
                    not endpoint.read
                    or attempt >= policy.max_attempts
                    or exc.retry_after_s > policy.max_rate_limit_wait_s
                ):
                    raise
                delay = max(exc.retry_after_s, policy.delay(attempt, self.rng))
                self._count_retry(endpoint, "rate_limited")
            except Retryable:
                if not endpoint.read or attempt >= policy.max_attempts:
                    raise  # a write: one attempt per call (see ClockSkewError above)
                delay = policy.delay(attempt, self.rng)
                self._count_retry(endpoint, "retryable")
            except OutcomeUnknown:
                if not endpoint.read or attempt >= policy.max_attempts:
                    raise
                delay = policy.delay(attempt, self.rng)
                self._count_retry(endpoint, "unknown")
            await self.clock.sleep(delay)

    async def send_once(
        self, endpoint: Endpoint, params: Params, signer: Signer | None = None
    ) -> Any:
        """One attempt: meter, sign, send, decode. Raises typed errors only."""
        self.limiter.check_ban()
        await self.before_send(endpoint)
        api_key: str | None = None
        signed_at = 0.0
        sender = self._vault_sender(endpoint, signer)
        if sender is not None:
            # The vault signs and sends it (the signature never leaves the vault): metered
            # here as usual, the per-key budget under the account's user id.
            await self.time.ensure_fresh()
            api_key = f"user:{sender.user_id}"
            wire = self.encode(endpoint, params, None)
            tokens = await self.limiter.acquire(
                self.key_costs(endpoint, api_key) + self.ip_costs(endpoint, params)
            )
        elif endpoint.signed:
            if signer is None:
                raise TypeError(f"{endpoint.name} is signed: pass the user's Signer")
            await self.time.ensure_fresh()
            wire, api_key, signed_at = await self._sign(endpoint, params, signer)
            tokens = await self.limiter.acquire(
                self.key_costs(endpoint, api_key) + self.ip_costs(endpoint, params)
            )
        else:
            wire = self.encode(endpoint, params, None)
            tokens = await self.limiter.acquire(self.ip_costs(endpoint, params))
        breaker = self.breaker(endpoint)
        started = time.perf_counter()
        try:
            async with self._slot(tokens, self._slots if sender is None else self._vault_slots):
                if (
                    sender is None
                    and signer is not None
                    and self.clock.monotonic() - signed_at > self._resign_s
                ):
                    # the signed timestamp aged while waiting for budget or a connection
                    wire, api_key, signed_at = await self._sign(endpoint, params, signer)
                try:
                    # Last look before the wire: a 429 / 418 / 403 seen while this request
                    # waited for budget, a connection or a signature stops it here.
                    self.limiter.check_clear(tokens)
                    breaker.before_request()
                except ExchangeError:
                    tokens.refund()
                    raise
                if sender is not None:
                    try:
                        response = await self._send_through(sender, endpoint, params)
                    except ExchangeError as exc:
                        # the vault refused, was away, or could not reach the exchange
                        tokens.settle()
                        self._observe_latency(endpoint, type(exc).__name__, started)
                        raise
                else:
                    response = await self.client.request(
                        wire.method, wire.target(), headers=wire.headers, content=wire.body or None
                    )
        except httpx.HTTPError as exc:
            tokens.settle()
            if not isinstance(exc, httpx.PoolTimeout):
                breaker.record_failure()
            self._observe_latency(endpoint, "transport_error", started)
            message = f"{type(exc).__name__} on {endpoint.name}: {exc}"
            if isinstance(exc, _NOT_SENT):
                raise Retryable(message, exchange=self.exchange) from exc
            raise OutcomeUnknown(message, exchange=self.exchange) from exc
        tokens.settle()
        if response.status_code >= 500:
            breaker.record_failure()
        elif response.status_code < 400:
            breaker.record_success()
        else:
            breaker.record_neutral()
        self.observe(endpoint, response, api_key)
        try:
            data = self.decode(endpoint, response)
        except ExchangeError as exc:
            self._observe_latency(endpoint, type(exc).__name__, started)
            raise
        self._observe_latency(endpoint, "ok", started)
        return data

    def breaker(self, endpoint: Endpoint) -> CircuitBreaker:
        """This endpoint's breaker: a failing create never stops lookups or cancels."""
        return self.breakers.get(endpoint.name)

    @contextlib.asynccontextmanager
    async def _slot(self, tokens: Tokens, slots: asyncio.Semaphore) -> AsyncIterator[None]:
        """A connection slot (``slots``: this client's connections, or the vault's sends),
        waited for at most the caller's remaining life (``deadline``); past it the request
        is refused unsent (its budget refunded) rather than left to go stale in the queue."""
        left = deadline_remaining(self.clock)
        if left is None or not slots.locked():
            async with slots:
                yield
            return
        # asyncio.wait, not wait_for: on Python 3.11 wait_for can lose an acquire that
        # completes as the timeout fires, leaking a slot for ever.
        acquiring = asyncio.ensure_future(slots.acquire())
        try:
            await asyncio.wait({acquiring}, timeout=left)
        except asyncio.CancelledError:
            if acquiring.done() and not acquiring.cancelled():
                slots.release()
            acquiring.cancel()
            raise
        if not acquiring.done():
            acquiring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acquiring
        if acquiring.cancelled():
            tokens.refund()
            raise RateLimited(
                f"no free connection to {self.exchange.value} within the request's remaining "
                f"{left:.1f}s; not sent",
                retry_after_s=left,
                exchange=self.exchange,
            ) from None
        try:
            yield
        finally:
            slots.release()

    async def _sign(
        self, endpoint: Endpoint, params: Params, signer: Signer
    ) -> tuple[Wire, str, float]:
        """Encode with a fresh timestamp and obtain the signature: (wire, api key, when)."""
        timestamp_ms = self.time.now_ms()
        wire = self.encode(endpoint, params, timestamp_ms)
        signature = await signer.sign(
            SigningInput(
                exchange=self.exchange,
                method=wire.method,
                path=wire.path,
                query=wire.query,
                body=wire.body,
                timestamp_ms=timestamp_ms,
                recv_window_ms=self.settings.recv_window_ms,
            )
        )
        self.attach(wire, timestamp_ms, signature)
        return wire, signature.api_key, self.clock.monotonic()

    def _observe_latency(self, endpoint: Endpoint, outcome: str, started: float) -> None:
        self._latency.labels(self._exchange_label, endpoint.method, endpoint.path, outcome).observe(
            time.perf_counter() - started
        )

    def _count_retry(self, endpoint: Endpoint, reason: str) -> None:
        metrics.RETRIES.labels(self._exchange_label, endpoint.path, reason).inc()

    async def aclose(self) -> None:
        await self.client.aclose()
