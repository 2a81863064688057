"""The caller's deadline for one request, carried to the limiter without new parameters.

The execution engine knows how long an order request may still live (its maximum age less
its age); the venue client does not. ``within(seconds, clock)`` puts that remaining life in
a context variable for the calls made inside it, and the limiter and the connection slots
(``ratelimit.py``, ``http.py``) cap every wait at it: a request whose budget or connection
would come only after its deadline is refused at once (``RateLimited``, naming the wait)
instead of waiting to go stale. Outside ``within`` nothing is capped beyond the limiter's
own ``max_wait_s``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from marketbot.runtime.clock import Clock

_DEADLINE: ContextVar[float | None] = ContextVar("marketbot_exchange_deadline", default=None)
"""A ``Clock.monotonic()`` instant, or ``None`` (no deadline)."""


@contextlib.contextmanager
def within(seconds: float | None, clock: Clock) -> Iterator[None]:
    """Calls inside may wait at most ``seconds`` in total (``None``: no cap)."""
    if seconds is None:
        yield
        return
    until = clock.monotonic() + max(0.0, seconds)
    current = _DEADLINE.get()
    token = _DEADLINE.set(until if current is None else min(current, until))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining(clock: Clock) -> float | None:
    """Seconds left before the current deadline (``None`` when there is none)."""
    until = _DEADLINE.get()
    if until is None:
        return None
    return max(0.0, until - clock.monotonic())
