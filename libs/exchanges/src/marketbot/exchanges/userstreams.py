"""Every account's private stream on one exchange, within the exchange's connection limits.

``UserStreams`` is what the execution engine sees: ``add`` a user (their events start
arriving as ``reports.Report``s), ``live`` (is that user's stream up now), ``watch`` public
prices, ``remove``. The venue subclasses (``bybit/stream.py``, ``binance/stream.py``) decide
how accounts map onto connections:

* Bybit: one ``/v5/private`` connection per user key (the auth binds one key), plus one
  public ``/v5/public/spot`` connection for the watched prices.
* Binance: many accounts per WS API connection (up to 1,000 active subscriptions each).

Limits (client side, metered): every connection is opened through the exchange's
``ConnectionBudget`` (connections per 5 minutes per IP, from the docs, times the safety
share): the limit is per egress IP. A replica has one egress IP, or several
(``source_ips``: local addresses its connections are bound to, each mapped to its own
egress IP, each with a budget of its own; a new connection takes the one with the most
room). ``marketbot_exchange_stream_connections_per_ip{exchange, replica, egress_ip}``
reports the connections up, ``..._stream_connect_headroom_ratio`` the budget left.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from marketbot.contracts import Exchange
from marketbot.exchanges import metrics
from marketbot.exchanges.reports import Report
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.streams import (
    ConnectedHandler,
    PrivateStream,
    StreamEvent,
    StreamProtocol,
    StreamSettings,
)
from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.exchanges.userstreams")

ReportHandler = Callable[[Report], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """An exchange's documented stream limits (the venue modules hold the numbers)."""

    connections_per_window: int
    """New connections per IP within ``window_s``."""
    window_s: float
    accounts_per_connection: int
    """Accounts one connection carries: Bybit 1 (one key per auth), Binance 1,000."""
    safety: float = 0.9
    """Share of the per-IP connection budget to use."""

    @property
    def budget(self) -> int:
        return max(1, int(self.connections_per_window * self.safety))


class ConnectionBudget:
    """Connection attempts within a sliding window, for every stream of one exchange in
    this process (one egress IP). ``acquire`` waits until one more attempt fits."""

    def __init__(
        self,
        exchange: Exchange,
        limits: StreamLimits,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.exchange = exchange
        self.limits = limits
        self._clock = clock or SystemClock()
        self._sleep = sleep
        self._opened: deque[float] = deque()
        self.waited_s = 0.0

    def _trim(self, now: float) -> None:
        while self._opened and self._opened[0] <= now - self.limits.window_s:
            self._opened.popleft()

    @property
    def used(self) -> int:
        self._trim(self._clock.monotonic())
        return len(self._opened)

    async def acquire(self) -> None:
        budget = self.limits.budget
        while True:
            now = self._clock.monotonic()
            self._trim(now)
            if len(self._opened) < budget:
                self._opened.append(now)
                metrics.STREAM_CONNECT_HEADROOM.labels(self.exchange.value).set(
                    1 - len(self._opened) / budget
                )
                return
            wait = self._opened[0] + self.limits.window_s - now
            log.warning(
                "stream connection budget used up; waiting",
                exchange=self.exchange.value,
                budget=budget,
                wait_s=round(wait, 3),
            )
            metrics.STREAM_CONNECT_WAIT.labels(self.exchange.value).inc(wait)
            self.waited_s += wait
            await self._sleep(wait)


@dataclass(slots=True)
class Egress:
    """One egress IP of this replica: its connection budget and the connections up on it."""

    label: str
    budget: ConnectionBudget
    source_ip: str | None = None
    """Local address the connections are bound to; None: the system's choice."""
    up: int = 0


class UserStreams(ABC):
    """The private streams of one exchange for the accounts an executor follows."""

    exchange: Exchange
    limits: StreamLimits

    def __init__(
        self,
        *,
        on_report: ReportHandler,
        on_connected: ConnectedHandler | None = None,
        settings: StreamSettings | None = None,
        clock: Clock | None = None,
        budget: ConnectionBudget | None = None,
        replica: str = "local",
        egress_ip: str = "default",
        offset_ms: Callable[[], int] = lambda: 0,
        spend: Callable[[int], Awaitable[None]] | None = None,
        limit_scale: float = 1.0,
        source_ips: Sequence[str] = (),
    ) -> None:
        """``limit_scale`` multiplies the documented connection limit, as the HTTP
        client's ``rate_limit_scale`` does its limits: only for a simulator run with its
        limits off (never against a real exchange). ``source_ips``: local addresses to open
        the connections from, one egress IP (and one connection budget) each; empty: one
        egress IP, the system's choice, labelled ``egress_ip``."""
        if limit_scale != 1.0:
            scaled = max(1, int(self.limits.connections_per_window * limit_scale))
            self.limits = dataclasses.replace(self.limits, connections_per_window=scaled)
        self._on_report = on_report
        self._on_connected = on_connected
        self.settings = settings or StreamSettings()
        self.clock = clock or SystemClock()
        self.budget = budget or ConnectionBudget(self.exchange, self.limits, clock=self.clock)
        self.egress = [Egress(egress_ip, self.budget)]
        for ip in source_ips[1:]:
            self.egress.append(
                Egress(
                    ip, ConnectionBudget(self.exchange, self.budget.limits, clock=self.clock), ip
                )
            )
        if source_ips:
            self.egress[0].label = self.egress[0].source_ip = source_ips[0]
        self.replica = replica
        self.egress_ip = self.egress[0].label
        self.offset_ms = offset_ms
        self.spend = spend
        """Charges the exchange's per-IP request budget for stream requests that weigh
        (Binance's WS API shares the REST weight); None where they do not."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self.up = 0
        """Connections up now."""

    # what the engine uses ------------------------------------------------------------------

    @abstractmethod
    async def add(self, user_id: str, signer: Signer) -> None:
        """Receive ``user_id``'s events from now on (idempotent)."""

    @abstractmethod
    async def remove(self, user_id: str) -> None: ...

    @abstractmethod
    def live(self, user_id: str) -> bool:
        """Whether ``user_id``'s events are arriving now (connected and subscribed)."""

    @abstractmethod
    def users(self) -> list[str]: ...

    @abstractmethod
    def down_for(self, user_id: str) -> float | None:
        """Seconds since ``user_id``'s stream was last up (or since it was added, if never
        up): None while live; infinity when the account is not followed, or its
        subscription was refused on a connection that is up."""

    async def watch(self, symbols: Sequence[str]) -> None:
        """Push these symbols' prices too (only venues with watched exits need it)."""
        del symbols

    def watching(self, symbol: str) -> bool:
        """Whether ``symbol``'s price arrives by stream now."""
        del symbol
        return False

    def connections(self) -> int:
        return self.up

    async def stop(self) -> None:
        await self._stop_streams()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()

    # for the venue subclasses -----------------------------------------------------------

    @abstractmethod
    async def _stop_streams(self) -> None: ...

    @abstractmethod
    def _reports(self, event: StreamEvent) -> list[Report]: ...

    def _stream(
        self,
        url: str,
        protocol: StreamProtocol,
        *,
        private: bool = True,
        connect_weight: int = 0,
        on_connected: ConnectedHandler | None = None,
    ) -> PrivateStream:
        chosen: list[Egress] = [self.egress[0]]

        async def before_connect() -> tuple[str, int] | None:
            # The egress IP with the most room in its window (a reconnect may take another).
            egress = min(self.egress, key=lambda e: e.budget.used)
            await egress.budget.acquire()
            chosen[0] = egress
            if connect_weight and self.spend is not None:
                await self.spend(connect_weight)
            return None if egress.source_ip is None else (egress.source_ip, 0)

        def on_state(up: bool) -> None:
            self._state(up, chosen[0])

        return PrivateStream(
            url,
            protocol,
            self._event,
            on_connected=(on_connected or self._connected) if private else None,
            settings=self.settings,
            clock=self.clock,
            before_connect=before_connect,
            on_state=on_state,
        )

    def _run(self, stream: PrivateStream) -> asyncio.Task[None]:
        # A fresh context: the stream outlives the request that opened it (its logs must
        # not carry that request's correlation id).
        task = asyncio.create_task(
            stream.run(), name=f"stream-{self.exchange.value}", context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            work,  # type: ignore[arg-type]
            context=contextvars.Context(),
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _event(self, event: StreamEvent) -> None:
        for report in self._reports(event):
            await self._on_report(report)

    async def _connected(self, user_ids: Sequence[str], reconnected: bool) -> None:
        if self._on_connected is not None and user_ids:
            await self._on_connected(user_ids, reconnected)

    def _state(self, up: bool, egress: Egress) -> None:
        change = 1 if up else -1
        self.up += change
        egress.up += change
        metrics.STREAM_IP_CONNECTIONS.labels(self.exchange.value, self.replica, egress.label).set(
            egress.up
        )

    def _accounts_changed(self) -> None:
        metrics.STREAM_SUBSCRIPTIONS.labels(self.exchange.value).set(len(self.users()))


def websocket_base(rest_base_url: str) -> str | None:
    """``ws://host:port`` for a plain-HTTP base URL (the simulator serves its streams on the
    venue's own port); None for the exchanges' own hosts (their stream hosts differ)."""
    if rest_base_url.startswith("http://"):
        return "ws://" + rest_base_url[len("http://") :].rstrip("/")
    return None
