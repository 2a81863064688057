"""Fault scenarios on a running stack, counted against the simulator's ground truth.

A scenario registers a population (every plan on both exchanges), injects its faults into
the simulator (or lowers the limits the simulator enforces), posts one alert with TP/SL and
then counts, per user, from the outside:

- **lost**: an eligible user without an outcome on the bus (``OrderFilled`` /
  ``OrderRejected``) when the run ends (whether or not the fan-out requested it);
- **mismatched**: the bus says rejected but the simulator holds a filled entry, or the
  other way round;
- **duplicated**: more than one entry order for the user on the simulator;
- **unprotected**: an entry filled on the simulator with no open exit leg (TP/SL) left;
- **bans**: 418 / 403 answers the simulator gave (its own count), next to its 429s and
  Bybit's per-UID 10006s, and the most 429s in any one minute window;
- **late**: outcomes recorded later than the executors' maximum age after the request
  became runnable, and **stale**: requests rejected ``STALE``.

``tests/e2e/test_faults.py`` runs a small population on every ``make test``;
``bench/bench_faults.py`` runs 300 users per scenario on a fresh stack (``make bench``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from nats.aio.msg import Msg

from marketbot.contracts import (
    OrderFilled,
    OrderOutcomeUnknown,
    OrderRejected,
    OrderRequested,
    RejectReason,
    decode,
)
from marketbot.devstack.demo import Demo, DemoUser
from marketbot.runtime.bus import Bus
from marketbot.sim.admin import SimAdmin

PLANS = ("PRO", "FLEX", "TRIAL")
EXCHANGES = ("bybit", "binance")
CREATE = {"bybit": ("POST", "/v5/order/create"), "binance": ("POST", "/api/v3/order")}
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED", "UNTRIGGERED"})

# The executors' settings every fault stack runs with: a short read timeout, so a create
# the simulator holds for longer is an unknown outcome within seconds.
READ_TIMEOUT_S = 2.0
EXECUTOR_ENV = {
    f"executor-{ex}": {
        f"MARKETBOT_EXECUTOR_{ex.upper()}_HTTP_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
    }
    for ex in EXCHANGES
}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    faults: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    """venue -> ``SimAdmin.set_fault`` keyword arguments, one dict per rule."""
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    """venue -> ``SimAdmin.set_limits`` overrides (limits stay enabled)."""
    restart_executors: bool = False
    """Restart the executors after the simulator's limits changed (they learn them anew)."""


def _on_creates(kind: str, **rule: Any) -> dict[str, tuple[dict[str, Any], ...]]:
    return {
        venue: ({"kind": kind, "method": method, "path": path, **rule},)
        for venue, (method, path) in CREATE.items()
    }


def reduced_limits(binance_weight_per_minute: int, bybit_per_uid_per_s: int = 2) -> Scenario:
    """The simulator enforces less than the documented limits (6,000 Binance weight a
    minute; 20 Bybit creates a second per UID); the executors are restarted so they start
    from the documented figures and must learn the real ones from the exchange."""
    return Scenario(
        "reduced_limits",
        f"the simulator enforces {binance_weight_per_minute:,} Binance weight a minute (not "
        f"6,000) and {bybit_per_uid_per_s} Bybit creates a second per UID (not 20)",
        limits={
            "binance": {"weight_limit": binance_weight_per_minute, "ban_seconds": 120},
            "bybit": {"uid_limits": {"/v5/order/create": bybit_per_uid_per_s}},
        },
        restart_executors=True,
    )


SCENARIOS: dict[str, Scenario] = {
    "create_timeouts": Scenario(
        "create_timeouts",
        "30 % of creates time out (held past the read timeout, then dropped, not executed)",
        faults=_on_creates("drop", rate=0.3, latency_ms=int(READ_TIMEOUT_S * 1000) + 1500),
    ),
    "late_execution": Scenario(
        "late_execution",
        "30 % of creates answered 'timed out, status unknown', then executed 4 s later",
        faults=_on_creates("executed_late", rate=0.3, latency_ms=4000),
    ),
    "reduced_limits": reduced_limits(1500),
}


def population(size: int, prefix: str) -> list[DemoUser]:
    """``size`` users spread over both exchanges and every plan (at least one of each)."""
    users = []
    for i in range(max(size, len(PLANS) * len(EXCHANGES))):
        exchange = EXCHANGES[i % 2]
        plan = PLANS[(i // 2) % 3]
        users.append(
            DemoUser(
                user_id=f"{prefix}-{i:04d}",
                display_name=f"{prefix} {i}",
                plan=plan,
                exchange=exchange,
                risk_level="medium",
                funds=Decimal(5000),
            )
        )
    return users


@dataclass
class Counts:
    scenario: str
    users: int
    requested: int = 0
    filled: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    unknown_events: int = 0
    lost: int = 0
    mismatched: int = 0
    duplicated: int = 0
    unprotected: int = 0
    stale: int = 0
    late: int = 0
    worst_age_s: float = 0.0
    limit_answers: dict[str, int] = field(default_factory=dict)
    most_429_in_a_minute: int = 0
    late_executions: int = 0
    seconds: float = 0.0
    lost_users: list[str] = field(default_factory=list)
    unprotected_users: list[str] = field(default_factory=list)

    @property
    def bans(self) -> int:
        return self.limit_answers.get("418", 0) + self.limit_answers.get("403", 0)

    def line(self) -> str:
        rejected = ",".join(f"{k}:{v}" for k, v in sorted(self.rejected.items())) or "0"
        answers = ",".join(f"{k}:{v}" for k, v in sorted(self.limit_answers.items())) or "0"
        return (
            f"{self.scenario}: users={self.users} requested={self.requested} "
            f"filled={self.filled} rejected={rejected} lost={self.lost} "
            f"mismatched={self.mismatched} "
            f"duplicated={self.duplicated} unprotected={self.unprotected} bans={self.bans} "
            f"stale={self.stale} past_max_age={self.late} worst_age={self.worst_age_s:.1f}s "
            f"unknown_outcomes={self.unknown_events} late_executions={self.late_executions} "
            f"limit_answers={answers} most_429_per_minute={self.most_429_in_a_minute} "
            f"in {self.seconds:.0f}s"
        )


@dataclass
class Harness:
    demo: Demo
    bus: Bus
    sims: dict[str, SimAdmin]
    webhook_source: str
    webhook_token: str
    max_request_age_s: float = 120.0
    restart: Callable[[str], Awaitable[None]] | None = None
    """Restarts one service of the stack by name (``Stack.restart``)."""


async def seed(demo: Demo, users: list[DemoUser], *, concurrency: int = 16) -> None:
    """Register users and their keys; ask again while the vault answers 'unavailable'."""
    gate = asyncio.Semaphore(concurrency)

    async def one(user: DemoUser) -> None:
        async with gate:
            seeded = await demo.seed_user(user)
            state = await demo.wait_verified(seeded, timeout=120)
        for _ in range(60):
            if state == "verified" or "unavailable" not in state:
                break
            await asyncio.sleep(5)
            async with gate:
                state = await demo.verify(seeded)
        if state != "verified":
            raise RuntimeError(f"{user.user_id}: key {state}")

    await asyncio.gather(*(one(u) for u in users))


async def settled(bus: Bus, streams: tuple[str, ...] = ("ACCOUNTS", "KEYS")) -> None:
    while True:
        busy = False
        for stream in streams:
            for consumer in await bus.js.consumers_info(bus.stream(stream)):
                busy = busy or bool(consumer.num_pending or consumer.num_ack_pending)
        if not busy:
            return
        await asyncio.sleep(0.2)


async def apply(harness: Harness, scenario: Scenario) -> None:
    for venue, overrides in scenario.limits.items():
        await harness.sims[venue].set_limits(True, **overrides)
    for venue, rules in scenario.faults.items():
        for rule in rules:
            await harness.sims[venue].set_fault(**rule)


async def clear(harness: Harness, scenario: Scenario) -> None:
    for venue in EXCHANGES:
        await harness.sims[venue].clear_faults()
        if scenario.limits:
            await harness.sims[venue].set_limits(True, ban_seconds=None, **_defaults(venue))


def _defaults(venue: str) -> dict[str, Any]:
    # the simulator's own defaults: the documented limits (binance rest-api.md LIMITS: 6,000
    # weight a minute; bybit rate-limit_rate-limit.mdx: spot create 20 a second per UID)
    if venue == "binance":
        return {"weight_limit": 6000}
    return {"uid_limits": {"/v5/order/create": 20}}


async def run(
    harness: Harness,
    scenario: Scenario,
    users: list[DemoUser],
    symbol: str,
    *,
    timeout_s: float | None = None,
) -> Counts:
    """Post one alert to ``users`` (already seeded) with ``scenario`` applied and count."""
    wanted = {u.user_id for u in users}
    exchange_of = {u.user_id: u.exchange for u in users}
    requests: dict[str, OrderRequested] = {}
    finals: dict[str, OrderFilled | OrderRejected] = {}
    unknown = 0
    all_done = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        nonlocal unknown
        event = decode(msg.data)
        user = getattr(event, "user_id", None)
        if user not in wanted:
            return
        if isinstance(event, OrderRequested):
            requests[event.user_id] = event
        elif isinstance(event, OrderOutcomeUnknown):
            unknown += 1
        elif isinstance(event, OrderFilled | OrderRejected):
            finals.setdefault(event.user_id, event)
            if set(finals) >= wanted:
                all_done.set()

    bus = harness.bus
    subscriptions = [await bus.nc.subscribe(bus.subject("orders.requested.>"), cb=on_message)]
    for venue in EXCHANGES:
        for kind in ("OrderFilled", "OrderRejected", "OrderOutcomeUnknown"):
            subscriptions.append(
                await bus.nc.subscribe(bus.subject(f"orders.{venue}.{kind}"), cb=on_message)
            )
    for venue in EXCHANGES:
        await harness.sims[venue].clear_stats()
    await apply(harness, scenario)
    if scenario.restart_executors and harness.restart is not None:
        for venue in EXCHANGES:
            await harness.restart(f"executor-{venue}")
    price = await harness.demo.price(symbol)
    started = time.perf_counter()
    try:
        await harness.demo.send_alert(
            harness.webhook_source,
            harness.webhook_token,
            {
                "symbol": symbol,
                "action": "buy",
                "price": str(price),
                "time": datetime.now(UTC).isoformat(),
                "strategy": f"faults-{scenario.name}",
                "tp": "5",
                "sl": "5",
            },
        )
        limit = timeout_s if timeout_s is not None else harness.max_request_age_s + 90
        with contextlib.suppress(TimeoutError):  # what is missing then is counted as lost
            await asyncio.wait_for(all_done.wait(), timeout=limit)
        seconds = time.perf_counter() - started
        await _protection_settles(harness, finals, exchange_of, symbol)
    finally:
        await clear(harness, scenario)
        for sub in subscriptions:
            await sub.unsubscribe()
    counts = Counts(scenario.name, len(users), requested=len(requests), unknown_events=unknown)
    counts.seconds = seconds
    await _ground_truth(harness, counts, users, requests, finals, symbol)
    return counts


async def _protection_settles(
    harness: Harness,
    finals: dict[str, OrderFilled | OrderRejected],
    exchange_of: dict[str, str],
    symbol: str,
    timeout_s: float = 30.0,
) -> None:
    """Give the executors time to place the exit legs of the last fills (Binance's OCO)."""
    deadline = time.monotonic() + timeout_s
    filled = {u for u, e in finals.items() if isinstance(e, OrderFilled)}
    while time.monotonic() < deadline:
        orders = await _orders_by_user(harness, exchange_of, symbol)
        if all(_protected(orders.get(u, [])) for u in filled):
            return
        await asyncio.sleep(0.5)


async def _orders_by_user(
    harness: Harness, exchange_of: dict[str, str], symbol: str
) -> dict[str, list[dict[str, Any]]]:
    by_user: dict[str, list[dict[str, Any]]] = {}
    for venue in EXCHANGES:
        for order in await harness.sims[venue].orders():
            account = order["account_id"]
            if exchange_of.get(account) == venue and order["symbol"] == symbol:
                by_user.setdefault(account, []).append(order)
    return by_user


PROTECTION_WINDOW_S = 60.0
"""How long a filled entry may wait for its exits under a fault: the protect attempt's
settle (15 s) plus a few tracker passes, with room for the faults to strike again."""


def _entries(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entry orders: the buys the platform sent (exit legs are sells)."""
    return [o for o in orders if o["side"] == "BUY" and o["status"] != "REJECTED"]


def _protected(orders: list[dict[str, Any]]) -> bool:
    return any(o["side"] == "SELL" and o["status"] in OPEN_STATUSES for o in orders)


async def _ground_truth(
    harness: Harness,
    counts: Counts,
    users: list[DemoUser],
    requests: dict[str, OrderRequested],
    finals: dict[str, OrderFilled | OrderRejected],
    symbol: str,
) -> None:
    exchange_of = {u.user_id: u.exchange for u in users}
    orders = await _orders_by_user(harness, exchange_of, symbol)
    # A position is protected right after its fill, or, when the exchange did not answer
    # the protection (the same faults hit it), by the tracker once the attempt settles
    # (``PROTECT_SETTLE_S``): "unprotected" is what is still bare after that window.
    deadline = time.monotonic() + PROTECTION_WINDOW_S
    while time.monotonic() < deadline and any(
        any(e["status"] == "FILLED" for e in _entries(mine)) and not _protected(mine)
        for mine in orders.values()
    ):
        await asyncio.sleep(1.0)
        orders = await _orders_by_user(harness, exchange_of, symbol)
    for user in users:
        mine = orders.get(user.user_id, [])
        entries = _entries(mine)
        final = finals.get(user.user_id)
        filled_there = any(e["status"] == "FILLED" for e in entries)
        if len(entries) > 1:
            counts.duplicated += 1
        if filled_there and not _protected(mine):
            counts.unprotected += 1
            counts.unprotected_users.append(user.user_id)
        if final is None:
            counts.lost += 1
            counts.lost_users.append(user.user_id)
        elif isinstance(final, OrderFilled) != filled_there:
            counts.mismatched += 1
        if isinstance(final, OrderFilled):
            counts.filled += 1
        elif isinstance(final, OrderRejected):
            counts.rejected[final.reason.value] += 1
            counts.stale += final.reason is RejectReason.STALE
        request = requests.get(user.user_id)
        if final is not None and request is not None:
            at = final.filled_at if isinstance(final, OrderFilled) else final.rejected_at
            age = request.age_s(at)
            counts.worst_age_s = max(counts.worst_age_s, age)
            counts.late += age > harness.max_request_age_s
    answers: Counter[str] = Counter()
    per_minute: Counter[tuple[str, int]] = Counter()
    late_executions = 0
    for venue in EXCHANGES:
        stats = await harness.sims[venue].stats()
        answers.update(stats["limit_answers"])
        late_executions += int(stats["late_executions"])
        for at_ms, what in stats["limit_events"]:
            if what == "429":
                per_minute[(venue, int(at_ms) // 60_000)] += 1
    counts.limit_answers = dict(answers)
    counts.most_429_in_a_minute = max(per_minute.values(), default=0)
    counts.late_executions = late_executions
