"""Fault scenarios on a fresh stack, counted against the simulator's ground truth.

Each scenario runs on its own ``FaultStack``: its own NATS and its own database, the
simulator and every service, so a kill or a limit in one scenario never reaches another.
It registers a population (every plan on both exchanges) and injects its fault: simulator
faults, reduced limits, or a service or NATS killed -9 right after the first order request
and restarted. It posts one alert with TP/SL and then counts, per user, from the outside
(the streams and the simulator, not the services' own records):

- **lost**: an eligible user without an outcome on the bus (``OrderFilled`` /
  ``OrderRejected``) when the run ends (whether or not the fan-out requested it);
- **mismatched**: the bus says rejected but the simulator holds a filled entry, or the
  other way round;
- **duplicated**: more than one entry order for the user on the simulator;
- **unprotected**: an entry filled on the simulator with no open exit leg (TP/SL) left;
- **bans**: 418 / 403 answers the simulator gave (its own count), next to its 429s and
  Bybit's per-UID 10006s, and the most 429s in any one minute window;
- **late**: outcomes recorded later than the executors' maximum age after the request
  became runnable, and **stale**: requests rejected ``STALE``;
- **resumed**: after NATS came back, the seconds to the next order outcome.

``tests/e2e/test_faults.py`` runs every scenario with 300 users on every ``make test``;
``bench/bench_faults.py`` runs the same (``MARKETBOT_BENCH_FAULT_USERS`` for more).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError, ServiceUnavailableError

from marketbot.contracts import (
    BusNamespace,
    OrderFilled,
    OrderOutcomeUnknown,
    OrderRejected,
    OrderRequested,
    RejectReason,
    decode,
)
from marketbot.devstack.demo import Demo, DemoUser
from marketbot.devstack.stack import Stack, StackConfig
from marketbot.devstack.supervisor import Supervisor
from marketbot.runtime.bus import Bus
from marketbot.runtime.cluster import kill_hard
from marketbot.runtime.db import create_database, drop_database
from marketbot.runtime.infra import Infra, start_infra
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
# The vault sends the orders no parameter binds (docs/security.md): the same read timeout.
VAULT_ENV = {"keyvault": {"MARKETBOT_KEYVAULT_HTTP_READ_TIMEOUT_S": str(READ_TIMEOUT_S)}}


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
    executor_env: dict[str, dict[str, str]] = field(default_factory=dict)
    """Environment the restarted executors get (``restart_executors``)."""
    kill: str | None = None
    """``"decision"`` or ``"nats"``: killed -9 right after the first order request is
    published, and restarted ``outage_s`` later."""
    outage_s: float = 3.0


def _on_creates(kind: str, **rule: Any) -> dict[str, tuple[dict[str, Any], ...]]:
    return {
        venue: ({"kind": kind, "method": method, "path": path, **rule},)
        for venue, (method, path) in CREATE.items()
    }


BYBIT_IP_LIMIT = 600
"""Bybit's HTTP limit per IP: "600 requests within a 5-second window per IP"; beyond it
"403, access too frequent", and the IP must "wait for at least 10 minutes"
(reference/bybit-v5/rate-limit_rate-limit.mdx, "HTTP IP limit")."""


def reduced_limits(
    binance_weight_per_minute: int,
    bybit_per_uid_per_s: int = 2,
    bybit_ip_per_5s: int = BYBIT_IP_LIMIT // 2,
) -> Scenario:
    """The simulator enforces less than the documented limits (6,000 Binance weight a
    minute; 20 Bybit creates a second per UID; 600 Bybit requests per 5 s per IP); the
    executors are restarted so they start from the documented figures and must learn the
    real ones from the exchange. Binance reports its weight limit (``exchangeInfo``, the
    used-weight headers) and Bybit its per-UID limits (``X-Bapi-Limit*``). Bybit reports
    nothing about the per-IP limit: its only signal is the 403 ban itself, so the per-IP
    budget is configuration (``RATE_LIMIT_SAFETY``, the share of the documented 600 this
    executor may use, e.g. when replicas share an egress IP): the Bybit executor is given the
    share the simulator enforces, and must then never be answered 403."""
    share = bybit_ip_per_5s / BYBIT_IP_LIMIT * 0.9
    return Scenario(
        "reduced_limits",
        f"the simulator enforces {binance_weight_per_minute:,} Binance weight a minute (not "
        f"6,000), {bybit_per_uid_per_s} Bybit creates a second per UID (not 20) and "
        f"{bybit_ip_per_5s} Bybit requests per 5 s per IP (not 600)",
        limits={
            "binance": {"weight_limit": binance_weight_per_minute, "ban_seconds": 120},
            "bybit": {
                "uid_limits": {"/v5/order/create": bybit_per_uid_per_s},
                "ip_limit": bybit_ip_per_5s,
                "ban_seconds": 120,
            },
        },
        restart_executors=True,
        executor_env={
            "executor-bybit": {"MARKETBOT_EXECUTOR_BYBIT_RATE_LIMIT_SAFETY": f"{share:.4f}"}
        },
    )


SCENARIOS: dict[str, Scenario] = {
    "decision_killed": Scenario(
        "decision_killed",
        "the decision service killed -9 after its first order request, restarted 3 s later",
        kill="decision",
    ),
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
    "nats_killed": Scenario(
        "nats_killed",
        "NATS killed -9 after the first order request, restarted 3 s later",
        kill="nats",
    ),
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
                web_password=False,  # nobody signs in: no argon2id hash per user
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
    resumed_after_s: float | None = None
    seconds: float = 0.0
    lost_users: list[str] = field(default_factory=list)
    stale_messages: list[str] = field(default_factory=list)
    """A few of the STALE rejections' reasons, as the users see them."""
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
            + (
                f"resumed_after={self.resumed_after_s:.1f}s "
                if self.resumed_after_s is not None
                else ""
            )
            + f"in {self.seconds:.0f}s"
            + "".join(f"\n  stale: {m}" for m in self.stale_messages)
        )

    def target_met(self) -> bool:
        """0 lost, 0 duplicated, 0 unprotected, 0 bans, every outcome before its maximum
        age (and every request published)."""
        return (
            self.requested == self.users
            and self.lost == 0
            and self.mismatched == 0
            and self.duplicated == 0
            and self.unprotected == 0
            and self.bans == 0
            and self.late == 0
        )


@dataclass
class Harness:
    demo: Demo
    bus: Bus
    sims: dict[str, SimAdmin]
    webhook_source: str
    webhook_token: str
    max_request_age_s: float = 120.0
    restart: Callable[[str, dict[str, str]], Awaitable[None]] | None = None
    """Restarts one service of the stack by name with extra environment."""
    disrupt: Callable[[str, float], Awaitable[None]] | None = None
    """Kills -9 ``"nats"`` or a service by name and brings it back after the outage."""


class FaultStack:
    """A fresh platform for one scenario: its own NATS (authenticated, so it can be killed)
    and its own database, the simulator and every service, with the executors' fault
    settings (``EXECUTOR_ENV``).

    ``postgres_url``: a PostgreSQL server to hold the stack's database (created empty,
    dropped at the end), so parallel test workers do not start one server per scenario;
    ``None`` starts a PostgreSQL of its own."""

    def __init__(self, data_dir: Path, *, postgres_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.postgres_url = postgres_url
        self._database: str | None = None
        self.infra: Infra | None = None
        self.stack: Stack | None = None
        self.bus: Bus | None = None
        self.http: httpx.AsyncClient | None = None
        self.harness: Harness | None = None

    async def __aenter__(self) -> Harness:
        try:
            return await self._start()
        except BaseException:
            await self.aclose()
            raise

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def _start(self) -> Harness:
        env: dict[str, str] = {}
        if self.postgres_url is not None:
            self._database = f"faults_{uuid.uuid4().hex[:12]}"
            env["DATABASE_URL"] = await create_database(self.postgres_url, self._database)
        self.infra = infra = await asyncio.to_thread(
            start_infra, self.data_dir / "infra", durable=False, env=env
        )
        config = StackConfig.for_infra(
            infra,
            data_dir=self.data_dir,
            log_level="WARNING",
            extra_env={
                "signal-gateway": {"MARKETBOT_GATEWAY_RATE_LIMIT_PER_SECOND": "0"},
                **{name: dict(env) for name, env in EXECUTOR_ENV.items()},
                **{name: dict(env) for name, env in VAULT_ENV.items()},
            },
        )
        self.stack = stack = Stack(config, Supervisor(log_dir=self.data_dir / "logs", quiet=True))
        urls = await stack.start()
        self.bus = bus = await Bus.connect(infra.nats_url, "faults", BusNamespace())
        self.http = http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32))
        sims = {
            "bybit": SimAdmin(urls.sim.bybit, client=http),
            "binance": SimAdmin(urls.sim.binance, client=http),
            "market": SimAdmin(urls.sim.market, client=http),
        }
        demo = Demo(urls.gateway, config.admin_token, sims, http)
        await demo.set_bullish_market()
        self.harness = Harness(
            demo,
            bus,
            sims,
            config.webhook_source,
            config.webhook_token,
            restart=self.restart,
            disrupt=self.disrupt,
        )
        return self.harness

    async def restart(self, name: str, env: dict[str, str]) -> None:
        """Restart one service on the same ports, with ``env`` added to its environment."""
        assert self.stack is not None
        self.stack.config.extra_env.setdefault(name, {}).update(env)
        await self.stack.restart(name)

    async def disrupt(self, what: str, outage_s: float) -> None:
        """``kill -9`` NATS or one service, and start it again ``outage_s`` later (NATS on
        the same port with the same store; a service as the supervisor started it)."""
        assert self.infra is not None
        assert self.stack is not None
        if what == "nats":
            server = self.infra.nats_server
            assert server is not None, "only an embedded NATS can be killed"
            await asyncio.to_thread(kill_hard, server)
            await asyncio.sleep(outage_s)
            await asyncio.to_thread(server.start)
            return
        await self.stack.supervisor.kill(what)
        await asyncio.sleep(outage_s)
        await self.stack.supervisor.restart(what)

    async def aclose(self) -> None:
        if self.bus is not None:
            with contextlib.suppress(Exception):
                await self.bus.close()
        if self.http is not None:
            await self.http.aclose()
        if self.stack is not None:
            await self.stack.stop()
        if self.infra is not None:
            await asyncio.to_thread(self.infra.stop)
        if self.postgres_url is not None and self._database is not None:
            # Clean-up only: a database left behind on a throw-away test server is harmless,
            # and must not turn a scenario's result into an error.
            with contextlib.suppress(Exception):
                await drop_database(self.postgres_url, self._database)


async def seed(demo: Demo, users: list[DemoUser], *, concurrency: int = 32) -> None:
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
    # weight a minute; bybit rate-limit_rate-limit.mdx: spot create 20 a second per UID,
    # 600 requests per 5 s per IP)
    if venue == "binance":
        return {"weight_limit": 6000}
    return {"uid_limits": {"/v5/order/create": 20}, "ip_limit": BYBIT_IP_LIMIT}


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
    all_done = asyncio.Event()
    first_request = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        event = decode(msg.data)
        user = getattr(event, "user_id", None)
        if user not in wanted:
            return
        if isinstance(event, OrderRequested):
            requests[event.user_id] = event
            first_request.set()
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
            name = f"executor-{venue}"
            await harness.restart(name, scenario.executor_env.get(name, {}))
    price = await harness.demo.price(symbol)
    started = time.perf_counter()
    back_at: datetime | None = None
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
        if scenario.kill is not None:
            assert harness.disrupt is not None, "this harness cannot kill anything"
            await asyncio.wait_for(first_request.wait(), timeout=60)
            await harness.disrupt(scenario.kill, scenario.outage_s)
            back_at = datetime.now(UTC)
        limit = timeout_s if timeout_s is not None else harness.max_request_age_s + 90
        deadline = time.monotonic() + limit
        # The live subscription may miss events while NATS is away: the streams decide.
        while not all_done.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_done.wait(), timeout=10)
            if not all_done.is_set() and set(await _stream_finals(bus, wanted)) >= wanted:
                break
        seconds = time.perf_counter() - started
        await _protection_settles(harness, await _stream_finals(bus, wanted), exchange_of, symbol)
    finally:
        await clear(harness, scenario)
        for sub in subscriptions:
            await sub.unsubscribe()
    requests = {
        r.user_id: r for r in await _stream_of(bus, "ORDER_REQUESTS", wanted, OrderRequested)
    }
    events = await _stream_of(bus, "ORDER_EVENTS", wanted, object)
    finals = {}
    for event in events:
        if isinstance(event, OrderFilled | OrderRejected):
            finals.setdefault(event.user_id, event)
    unknown = sum(isinstance(e, OrderOutcomeUnknown) for e in events)
    counts = Counts(scenario.name, len(users), requested=len(requests), unknown_events=unknown)
    counts.seconds = seconds
    if back_at is not None:
        after = [
            (e.filled_at if isinstance(e, OrderFilled) else e.rejected_at) for e in finals.values()
        ]
        later = [t for t in after if t >= back_at]
        if later:
            counts.resumed_after_s = (min(later) - back_at).total_seconds()
    await _ground_truth(harness, counts, users, requests, finals, symbol)
    return counts


async def _stream_of(bus: Bus, stream: str, users: set[str], kind: Any) -> list[Any]:
    """The stream's messages of ``kind`` for ``users``, in stream order. While JetStream
    comes back (NATS was just restarted) reads fail: wait that out, as a client would."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return await _read_stream(bus, stream, users, kind)
        except (ServiceUnavailableError, NoRespondersError, NatsTimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _read_stream(bus: Bus, stream: str, users: set[str], kind: Any) -> list[Any]:
    name = bus.stream(stream)
    info = await bus.js.stream_info(name)
    found: list[Any] = []
    if not info.state.messages:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(NotFoundError):
            message = await bus.js.get_msg(name, seq)
            event = decode(message.data or b"")
            if isinstance(event, kind) and getattr(event, "user_id", None) in users:
                found.append(event)
    return found


async def _stream_finals(bus: Bus, users: set[str]) -> dict[str, OrderFilled | OrderRejected]:
    finals: dict[str, OrderFilled | OrderRejected] = {}
    for event in await _stream_of(bus, "ORDER_EVENTS", users, OrderFilled | OrderRejected):
        finals.setdefault(event.user_id, event)
    return finals


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
            if final.reason is RejectReason.STALE:
                counts.stale += 1
                if len(counts.stale_messages) < 3:
                    counts.stale_messages.append(final.message)
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
