"""Circuit breaker per exchange: closed -> open -> half-open -> closed.

Opens after ``failure_threshold`` consecutive transport failures or 5xx responses; while
open, requests fail fast without being sent; after ``reset_timeout_s`` one probe goes
through (half-open) and its outcome closes or re-opens the circuit.
"""

from __future__ import annotations

from enum import IntEnum

from marketbot.contracts import Exchange
from marketbot.exchanges import metrics
from marketbot.exchanges.errors import CircuitOpenError
from marketbot.runtime.clock import Clock


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
        failure_threshold: int = 5,
        reset_timeout_s: float = 10.0,
    ) -> None:
        self.exchange = exchange
        self._clock = clock
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._state = BreakerState.CLOSED
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

    def before_request(self) -> None:
        """Raise ``CircuitOpenError`` unless a request may be sent now."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return
        retry_in = max(0.0, self._opened_at + self.reset_timeout_s - self._clock.monotonic())
        raise CircuitOpenError(
            f"circuit open after {self._failures} consecutive failures; retry in {retry_in:.1f}s",
            exchange=self.exchange,
        )

    def record_success(self) -> None:
        self._failures = 0
        self._probe_in_flight = False
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if was_probe or self._failures >= self.failure_threshold:
            self._opened_at = self._clock.monotonic()
            self._set(BreakerState.OPEN)

    def record_neutral(self) -> None:
        """A response that says nothing about the exchange's health (e.g. a 4xx)."""
        self._probe_in_flight = False
        self._failures = 0
        if self._state is BreakerState.HALF_OPEN:
            self._set(BreakerState.CLOSED)

    def _set(self, state: BreakerState) -> None:
        self._state = state
        self._publish()

    def _publish(self) -> None:
        metrics.BREAKER_STATE.labels(self.exchange.value).set(int(self._state))
