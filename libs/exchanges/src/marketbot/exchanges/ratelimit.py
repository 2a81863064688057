"""Rate limiting keyed by what the exchange meters.

A ``WindowBucket`` is a token bucket whose tokens come back exactly one window after they
were spent, so no window of the exchange's length ever sees more than ``limit`` tokens (a
classic bucket that refills continuously can put ``capacity + rate * window`` into one
window, which a sliding-window limit rejects). Usage reported by the exchange in response
headers is merged in, so other processes behind the same IP are accounted for, and a limit
the exchange reports (or reveals with a 429) replaces the documented one in place.

After a 429 the whole exchange is *held* until its ``Retry-After`` ends, and after a
418 / 403 it is *banned*; ``RateLimiter.check_clear`` is asked again right before a request
goes on the wire (after the limiter and connection slots), so nothing that was already
queued leaves during the wait: Binance bans an IP that keeps sending after 429s
(reference/binance-spot/rest-api.md, "LIMITS": "failing to back off after receiving 429s
will result in an automated IP ban (HTTP status 418)").

Three priorities share each per-IP budget. *Protection* (``protective()``: a filled
position's exit legs, a close, an exit's sale) may use all of it and does not queue behind
other requests. *Orders* (the default: entries and their reads) leave a unit of it for
each entry sent with exits whose protection has not been placed yet
(``protection_follows()``; at most ``PROTECTION_RESERVE`` of the budget), so new exposure
never takes the budget that protecting the exposure already taken needs, and entries
without exits lose nothing. *Background* work (``background()``: polling, balance
refreshes) uses at most its share and is refused rather than queued beyond it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from marketbot.contracts import Exchange
from marketbot.exchanges import metrics
from marketbot.exchanges.deadline import remaining as deadline_remaining
from marketbot.exchanges.errors import IpBannedError, RateLimited
from marketbot.runtime.clock import Clock


class WindowBucket:
    """At most ``limit`` tokens spent in any ``window_s`` seconds (``safety`` keeps headroom)."""

    def __init__(
        self,
        name: str,
        limit: float,
        window_s: float,
        clock: Clock,
        *,
        safety: float = 0.9,
    ) -> None:
        self.name = name
        self.limit = float(limit)
        self.window_s = window_s
        self.budget = max(1.0, math.floor(limit * safety))
        self._clock = clock
        self._spent: deque[list[float]] = deque()
        self._used = 0.0
        self._blocked_until = 0.0
        self.lock = asyncio.Lock()

    def _expire(self, now: float) -> None:
        spent = self._spent
        horizon = now - self.window_s
        while spent and spent[0][0] <= horizon:
            self._used -= spent.popleft()[1]
        if not spent:
            self._used = 0.0

    def set_limit(self, limit: float, *, safety: float | None = None) -> None:
        """Adopt a new limit (reported by the exchange) keeping what was spent in the window."""
        share = self.budget / self.limit if safety is None else safety
        self.limit = float(limit)
        self.budget = max(1.0, math.floor(self.limit * share))

    def lower_budget(self, budget: float) -> None:
        """The exchange refused at ``budget`` + this request: never plan above it again."""
        self.budget = max(1.0, min(self.budget, math.floor(budget)))

    def blocked_for(self) -> float:
        return max(0.0, self._blocked_until - self._clock.monotonic())

    def used(self) -> float:
        self._expire(self._clock.monotonic())
        return self._used

    def headroom(self) -> float:
        return max(0.0, 1.0 - self.used() / self.limit)

    def delay_for(self, cost: float) -> float:
        """Seconds to wait before ``cost`` tokens fit (0 when they fit now)."""
        now = self._clock.monotonic()
        self._expire(now)
        wait = max(0.0, self._blocked_until - now)
        if self._used + cost <= self.budget:
            return wait
        excess = self._used + cost - self.budget
        freed = 0.0
        latest = 0.0
        for at, amount in self._spent:
            freed += amount
            latest = max(latest, at)
            if freed >= excess:
                return max(wait, latest + self.window_s - now)
        return max(wait, self.window_s)

    def spend(self, cost: float) -> list[float]:
        """Spend now; returns the token, to be ``settle``-d when the request completes."""
        token = [self._clock.monotonic(), cost]
        self._spent.append(token)
        self._used += cost
        return token

    def settle(self, token: list[float]) -> None:
        """The request behind ``token`` completed: its window starts now.

        The exchange counts a request when it arrives, which can be later than when its
        token was spent (queued for a connection, slow network); restarting the window at
        completion keeps the exchange's view of any window within our budget.
        """
        token[0] = max(token[0], self._clock.monotonic())

    def refund(self, token: list[float]) -> None:
        """The request behind ``token`` was never sent: give its tokens back."""
        if token[1]:
            self._used = max(0.0, self._used - token[1])
            token[1] = 0.0

    def observe_used(self, used_by_exchange: float) -> None:
        """Merge the exchange's own count: spend the difference we did not see ourselves."""
        now = self._clock.monotonic()
        self._expire(now)
        missing = used_by_exchange - self._used
        if missing > 0:
            self._spent.append([now, missing])
            self._used += missing

    def block_for(self, seconds: float) -> None:
        now = self._clock.monotonic()
        self._blocked_until = max(self._blocked_until, now + max(0.0, seconds))


@dataclass(slots=True)
class Tokens:
    """What one ``acquire`` spent; ``settle()`` when the request has completed."""

    waited_s: float
    spent: list[tuple[WindowBucket, list[float]]]

    def settle(self) -> None:
        for bucket, token in self.spent:
            bucket.settle(token)

    def refund(self) -> None:
        for bucket, token in self.spent:
            bucket.refund(token)

    def blocked_for(self) -> float:
        """Seconds any of the buckets spent from is still blocked (a per-key 429/10006)."""
        return max((bucket.blocked_for() for bucket, _ in self.spent), default=0.0)


PER_KEY = "key"


def _bucket_name(key: tuple[str, ...]) -> str:
    """A bucket's display name; the API key of a per-key bucket is never part of it."""
    if key and key[0] == PER_KEY:
        return "/".join((PER_KEY, *key[2:]))
    return "/".join(key)


BACKGROUND_SHARE = 0.5
"""The share of a per-IP budget that background work (the tracker's polling) may use."""

PROTECTION_RESERVE = 0.1
"""The most of each per-IP budget that orders leave to protection (``protective()``)."""

PROTECTION_IOU_S = 5.0
"""How long an entry sent with exits holds its unit of the reserve: its protection is
placed right after its fill, and takes the unit then; an entry that never fills, or whose
venue places nothing for it (Bybit watches a take profit alone), lets it lapse."""

_BACKGROUND: ContextVar[float] = ContextVar("marketbot_rate_limit_background", default=0.0)
"""The share of each per-IP budget the requests in this context may use (0: all of it)."""

_PROTECTIVE: ContextVar[bool] = ContextVar("marketbot_rate_limit_protective", default=False)
"""Requests in this context protect or reduce a position: the whole budget, no queue."""

_FOLLOWS: ContextVar[list[bool] | None] = ContextVar(
    "marketbot_rate_limit_protection_follows", default=None
)
"""Set while an entry with exits is sent: its first request registers the protection owed."""


@contextlib.contextmanager
def background(share: float = BACKGROUND_SHARE) -> Iterator[None]:
    """Requests inside are background work: they use at most ``share`` of each per-IP
    budget (``BACKGROUND_SHARE``, or less for work of a lower priority still) and are
    refused (``RateLimited``) rather than queued beyond it, so polling never takes the
    budget that placing orders needs."""
    if not 0 < share <= 1:
        raise ValueError(f"background share {share} must be within (0, 1]")
    token = _BACKGROUND.set(share)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


@contextlib.contextmanager
def protective() -> Iterator[None]:
    """Requests inside protect a position or reduce it (exit legs, a close, an exit's
    sale), background work included: they may use the whole per-IP budget, including the
    units orders leave for the protection owed (``protection_follows``), and do not wait
    behind queued orders. Bans and holds after a 429 still apply to them."""
    background_token = _BACKGROUND.set(0.0)
    token = _PROTECTIVE.set(True)
    try:
        yield
    finally:
        _PROTECTIVE.reset(token)
        _BACKGROUND.reset(background_token)


@contextlib.contextmanager
def protection_follows() -> Iterator[None]:
    """Requests inside send an entry whose exits are placed right after its fill: the
    first of them that is admitted registers one unit of each per-IP budget as owed to
    that protection, which orders then leave free until a protective request takes it (or
    ``PROTECTION_IOU_S`` passes)."""
    token = _FOLLOWS.set([])
    try:
        yield
    finally:
        _FOLLOWS.reset(token)


def _reserve(bucket: WindowBucket, cost: float, owed: int) -> float:
    """What an order leaves of a per-IP bucket to protection: a unit per protection owed,
    at most ``PROTECTION_RESERVE`` of the budget, and less when the order alone would not
    fit beside it (it must stay placeable)."""
    return max(0.0, min(float(owed), bucket.budget * PROTECTION_RESERVE, bucket.budget - cost))


class RateLimiter:
    """All buckets of one exchange in this process, plus its ban state."""

    def __init__(
        self, exchange: Exchange, clock: Clock, *, max_wait_s: float = 30.0, scale: float = 1.0
    ) -> None:
        self.exchange = exchange
        self.scale = scale
        self._clock = clock
        self._buckets: dict[tuple[str, ...], WindowBucket] = {}
        self._banned_until = 0.0
        self._held_until = 0.0
        self.max_wait_s = max_wait_s
        self._owed: deque[float] = deque()
        """When each entry sent with exits registered its protection (monotonic)."""

    def bucket(
        self, key: tuple[str, ...], limit: float, window_s: float, *, safety: float = 0.9
    ) -> WindowBucket:
        limit = limit * self.scale
        bucket = self._buckets.get(key)
        if bucket is None or bucket.window_s != window_s:
            bucket = WindowBucket(_bucket_name(key), limit, window_s, self._clock, safety=safety)
            self._buckets[key] = bucket
        elif bucket.limit != limit:
            bucket.set_limit(limit, safety=safety)  # keeps the window's spending
        return bucket

    def existing(self, key: tuple[str, ...]) -> WindowBucket | None:
        return self._buckets.get(key)

    # bans ---------------------------------------------------------------------------
    def ban(self, seconds: float) -> None:
        """Stop all traffic to this exchange for ``seconds`` (418, Bybit 403)."""
        self._banned_until = max(self._banned_until, self._clock.monotonic() + seconds)
        metrics.BANNED.labels(self.exchange.value).set(1)

    def ban_remaining(self) -> float:
        remaining = self._banned_until - self._clock.monotonic()
        if remaining <= 0 and self._banned_until:
            self._banned_until = 0.0
            metrics.BANNED.labels(self.exchange.value).set(0)
        return max(0.0, remaining)

    def check_ban(self) -> None:
        remaining = self.ban_remaining()
        if remaining > 0:
            raise IpBannedError(
                f"IP banned by the exchange; traffic stopped for {remaining:.1f}s more",
                retry_after_s=remaining,
                exchange=self.exchange,
            )

    # holds (after a 429) ------------------------------------------------------------
    def hold(self, seconds: float) -> None:
        """Send nothing to this exchange for ``seconds`` (a per-IP 429's ``Retry-After``)."""
        now = self._clock.monotonic()
        self._held_until = max(self._held_until, now + max(0.0, seconds))
        for key, bucket in self._buckets.items():
            if not key or key[0] != PER_KEY:
                bucket.block_for(seconds)
        metrics.RATE_LIMIT_HOLDS.labels(self.exchange.value).inc()

    def hold_remaining(self) -> float:
        return max(0.0, self._held_until - self._clock.monotonic())

    def check_clear(self, tokens: Tokens | None = None) -> None:
        """Raise unless a request may go on the wire *now*: no ban, no hold, and none of the
        buckets it spent from blocked. Asked once more right before sending, after every
        slot was acquired, so a request queued before a 429 or 418 does not follow it."""
        self.check_ban()
        held = self.hold_remaining()
        if tokens is not None:
            held = max(held, tokens.blocked_for())
        if held > 0:
            raise RateLimited(
                f"holding every request for {held:.1f}s after a rate-limit answer",
                retry_after_s=held,
                exchange=self.exchange,
            )

    # protection owed ------------------------------------------------------------------
    def owed(self) -> int:
        """Protections owed now: entries sent with exits in the last ``PROTECTION_IOU_S``
        whose protection has not taken its unit yet."""
        horizon = self._clock.monotonic() - PROTECTION_IOU_S
        owed = self._owed
        while owed and owed[0] <= horizon:
            owed.popleft()
        return len(owed)

    def _admitted(self, protecting: bool) -> None:
        if protecting:
            if self._owed:
                self._owed.popleft()
            return
        follows = _FOLLOWS.get()
        if follows is not None and not follows:
            follows.append(True)  # once per entry, however many requests it makes
            self._owed.append(self._clock.monotonic())

    # acquiring ----------------------------------------------------------------------
    async def acquire(self, costs: Iterable[tuple[WindowBucket, float]]) -> Tokens:
        """Wait until each bucket in turn has room and spend it; returns the seconds waited.

        Buckets are taken in the order given (per-key first, then per-IP), each under its
        own lock, so one user's per-key wait never holds up other users' IP budget.
        Raises ``RateLimited`` instead of waiting longer than ``max_wait_s``, or than the
        caller's remaining life when it set a deadline (``deadline.within``).
        """
        max_wait = self.max_wait()
        background = _BACKGROUND.get()
        protecting = _PROTECTIVE.get()
        owed = 0 if protecting else self.owed()
        waited = 0.0
        spent: list[tuple[WindowBucket, list[float]]] = []
        try:
            for bucket, cost in costs:
                self.check_ban()
                held = self.hold_remaining()
                if held > 0 and waited + held > max_wait:
                    raise RateLimited(
                        f"holding every request for {held:.1f}s after a 429",
                        retry_after_s=held,
                        exchange=self.exchange,
                    )
                per_ip = not bucket.name.startswith(PER_KEY)
                if background and per_ip:
                    self._background_check(bucket, cost, background)
                # Orders leave protection its reserve of a per-IP budget; protection waits
                # for room only, not for its turn behind the orders queued for it.
                room = cost + (_reserve(bucket, cost, owed) if per_ip and owed else 0.0)
                if per_ip and protecting:
                    waited += await self._wait(bucket, cost, waited, max_wait)
                    spent.append((bucket, bucket.spend(cost)))
                elif bucket.delay_for(room) > 0 or bucket.lock.locked():
                    async with bucket.lock:
                        waited += await self._wait(bucket, room, waited, max_wait)
                        spent.append((bucket, bucket.spend(cost)))
                else:
                    spent.append((bucket, bucket.spend(cost)))
                if per_ip:
                    # Per-key buckets stay out of metrics: one series per user and endpoint
                    # is unbounded cardinality, and an API key is not a label to show.
                    metrics.RATE_LIMIT_HEADROOM.labels(self.exchange.value, bucket.name).set(
                        bucket.headroom()
                    )
        except RateLimited:
            Tokens(waited, spent).refund()  # nothing is sent: give back what was taken
            raise
        self._admitted(protecting)
        if waited:
            metrics.RATE_LIMIT_WAIT.labels(self.exchange.value).inc(waited)
        return Tokens(waited, spent)

    def _background_check(self, bucket: WindowBucket, cost: float, share: float) -> None:
        """A background request (``background(share)``) may use only ``share`` of a per-IP
        budget, and never waits for it: the rest stays for order placement (and for
        background work of a higher share)."""
        reserve = bucket.budget * (1 - share)
        delay = bucket.delay_for(cost + reserve)
        if delay > 0:
            raise RateLimited(
                f"rate-limit budget {bucket.name}: background share used; {delay:.2f}s",
                retry_after_s=delay,
                exchange=self.exchange,
            )

    def max_wait(self) -> float:
        """The longest wait allowed now: ``max_wait_s``, capped by the caller's deadline."""
        left = deadline_remaining(self._clock)
        return self.max_wait_s if left is None else min(self.max_wait_s, left)

    async def _wait(
        self, bucket: WindowBucket, cost: float, already: float, max_wait: float
    ) -> float:
        waited = 0.0
        while True:
            self.check_ban()
            delay = bucket.delay_for(cost)
            if delay <= 0:
                return waited
            if already + waited + delay > max_wait:
                raise RateLimited(
                    f"rate-limit budget {bucket.name} exhausted for {delay:.2f}s",
                    retry_after_s=delay,
                    exchange=self.exchange,
                )
            await self._clock.sleep(delay)
            waited += delay
