"""Circuit breakers per venue and per endpoint: closed -> open -> half-open -> closed.

A breaker guards one endpoint of one exchange (``"POST /api/v3/order"``), so creates that
time out never stop the lookups and cancels of the same orders, nor the other venue.

It opens when, among the outcomes of the last ``window_s`` seconds, at least
``failure_threshold`` are failures (transport errors, 5xx) **and** failures are at least
``failure_ratio`` of them. Counting by ratio over a time window, not consecutive failures,
matters under a partial fault: with 30 % of creates timing out, the timeouts of one burst of
sends all come back together one read timeout later and would look like a long run of
consecutive failures, although 70 % of the same burst succeeded. An endpoint that is down
(every request fails) still opens after ``failure_threshold`` failures. While open, requests
fail fast without being sent (``CircuitOpenError`` with the seconds until the probe); after
``reset_timeout_s`` one probe goes through (half-open) and its outcome closes or re-opens it.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum

from marketbot.contracts import Exchange
from marketbot.exchanges import metrics
from marketbot.exchanges.errors import CircuitOpenError
from marketbot.runtime.clock import Clock

MIN_RETRY_S = 0.25
"""What a caller is told to wait at least while a probe is in flight (never a busy loop)."""


class BreakerState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        exchange: Exchange,
        clock: Clock,
        *,
        endpoint: str = "",
        failure_threshold: int = 5,
        failure_ratio: float = 0.5,
        window_s: float = 30.0,
        reset_timeout_s: float = 10.0,
    ) -> None:
        self.exchange = exchange
        self.endpoint = endpoint
        self._clock = clock
        self.failure_threshold = failure_threshold
        self.failure_ratio = failure_ratio
        self.window_s = window_s
        self.reset_timeout_s = reset_timeout_s
        self._state = BreakerState.CLOSED
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._publish()

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._clock.monotonic() - self._opened_at >= self.reset_timeout_s
        ):
            self._set(BreakerState.HALF_OPEN)
        return self._state

    def retry_in(self) -> float:
        """Seconds until a request may be tried again (at least ``MIN_RETRY_S``)."""
        remaining = self._opened_at + self.reset_timeout_s - self._clock.monotonic()
        return max(MIN_RETRY_S, remaining)

    def before_request(self) -> None:
        """Raise ``CircuitOpenError`` unless a request may be sent now."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return
        retry_in = self.retry_in()
        raise CircuitOpenError(
            f"circuit open on {self.endpoint or 'this exchange'} after {self._failures} "
            f"failures in {self.window_s:.0f}s; retry in {retry_in:.1f}s",
            exchange=self.exchange,
            retry_after_s=retry_in,
        )

    def record_success(self) -> None:
        self._probe_in_flight = False
        self._record(ok=True)
        if self._state is not BreakerState.CLOSED:
            self._outcomes.clear()
            self._failures = 0
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        self._record(ok=False)
        total = len(self._outcomes)
        if was_probe or (
            self._failures >= self.failure_threshold
            and self._failures >= self.failure_ratio * total
        ):
            self._opened_at = self._clock.monotonic()
            self._set(BreakerState.OPEN)

    def record_neutral(self) -> None:
        """A response that says the endpoint answers (e.g. a 4xx): counted as healthy."""
        self.record_success()

    def _record(self, *, ok: bool) -> None:
        now = self._clock.monotonic()
        outcomes = self._outcomes
        outcomes.append((now, ok))
        if not ok:
            self._failures += 1
        horizon = now - self.window_s
        while outcomes and outcomes[0][0] <= horizon:
            _, was_ok = outcomes.popleft()
            if not was_ok:
                self._failures -= 1

    def _set(self, state: BreakerState) -> None:
        self._state = state
        self._publish()

    def _publish(self) -> None:
        metrics.BREAKER_STATE.labels(self.exchange.value, self.endpoint).set(int(self._state))


class EndpointBreakers:
    """One ``CircuitBreaker`` per endpoint of one exchange, made on first use."""

    def __init__(
        self,
        exchange: Exchange,
        clock: Clock,
        *,
        failure_threshold: int = 5,
        failure_ratio: float = 0.5,
        window_s: float = 30.0,
        reset_timeout_s: float = 10.0,
    ) -> None:
        self.exchange = exchange
        self._clock = clock
        self._options = {
            "failure_threshold": failure_threshold,
            "failure_ratio": failure_ratio,
            "window_s": window_s,
            "reset_timeout_s": reset_timeout_s,
        }
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, endpoint: str) -> CircuitBreaker:
        breaker = self._breakers.get(endpoint)
        if breaker is None:
            breaker = CircuitBreaker(
                self.exchange,
                self._clock,
                endpoint=endpoint,
                failure_threshold=int(self._options["failure_threshold"]),
                failure_ratio=float(self._options["failure_ratio"]),
                window_s=float(self._options["window_s"]),
                reset_timeout_s=float(self._options["reset_timeout_s"]),
            )
            self._breakers[endpoint] = breaker
        return breaker

    def states(self) -> dict[str, BreakerState]:
        return {name: breaker.state for name, breaker in self._breakers.items()}
