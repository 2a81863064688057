"""Fan-out speed of the executor against the simulator (Bybit dialect), beside plain ccxt.

Issue 8's and issue 19's figures. One simulator process (limits off) with N users
(``BENCH_EXECUTION_USERS``, 1,000 by default), each with its own account and API key.

1. **The real path** (issue 19, deliverable 1): the executor runs as its own process
   (``marketbot-executor-bybit``, as deployed: its own NATS nkey identity, its own schema),
   and every signature comes from the key vault, also its own process
   (``python -m marketbot.keyvault serve``, real PostgreSQL), over NATS request/reply
   ``keyvault.sign.bybit``. Each user's key is registered (sealed) and verified through
   the vault first. The decision's fan-out (N OrderRequested, all PRO) is published at t0;
   the figure is t0 -> the last OrderPlaced (the order acknowledged by the exchange and
   committed), and orders/s. The executor's own client-side limiter is scaled out of the
   way (``rate_limit_scale``), as the simulator meters nothing. CPU per order is read from
   /proc for the executor and the vault processes (so the vault's share of signing counts);
   requests per order from the simulator's own counts.
2. **ccxt, same run, same users, same simulator** (deliverable 3): ccxt's async Bybit
   client, one instance per user sharing one aiohttp session and one markets load
   (``set_markets``), the same bounded concurrency as the executor's tier and the same
   connection count, the same order (a limit IOC buy at the price plus the slippage
   bound). Once plain (one create per user), once with a balance read per user first.
   ccxt is pointed at the simulator by overriding its ``urls['api']`` entries when it is
   constructed: the ccxt Manual, "Overriding Exchange Properties Upon Instantiation"
   (https://github.com/ccxt/ccxt/wiki/Manual#overriding-exchange-properties-upon-instantiation),
   with the keys of ``ccxt/async_support/bybit.py``'s ``describe()['urls']['api']``
   (spot, futures, v2, public, private). Its own limiter is off (``enableRateLimit``), as
   the executor's is scaled out. ccxt's CPU is this process's (it runs here).
3. **LocalSigner** (an extra, labelled row): the same fan-out with the executor in this
   process signing locally, as the benchmark did before issue 19 (the vault's round trip
   left out; this process's publishing and event decoding are inside its CPU figure).
4. The simulator's real per-IP limit on (Bybit: 600 requests / 5 s): a mixed-plan fan-out
   (PRO, FLEX +1 s, TRIAL +3 s). The floor the limit imposes is
   requests / per-IP budget (120/s), requests = orders x requests per order (measured); the
   ratio of the measured total time to that floor is reported (target <= 1.10), and whether
   every PRO order was placed before the first FLEX order.

``BENCH_EXECUTION_ROUNDS`` rounds (3) of each of 1-3, after ``BENCH_EXECUTION_WARMUP``
uncounted ones (1), interleaved so a noisy moment of the
shared machine hits every contender alike; medians are reported, with the spread. Every
wait is bounded (``ROUND_TIMEOUT_S``): a stuck round fails the benchmark instead of
hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import ccxt.async_support as ccxt_async
import httpx

from marketbot.contracts import (
    DEFAULT_PLANS,
    BusNamespace,
    Exchange,
    OrderFilled,
    OrderPlaced,
    OrderRequested,
    Plan,
    RiskLevel,
    Side,
    client_order_id_for,
    decode,
    request_id_for,
)
from marketbot.exchanges.bybit import constants as bybit
from marketbot.exchanges.factory import create_venue
from marketbot.exchanges.signer import LocalSigner, Signer
from marketbot.execution.app import start_executor, venue_settings
from marketbot.execution.repository import MIGRATIONS
from marketbot.execution.settings import ExecutorSettings
from marketbot.keyvault.adapters.keysource import SealingKey
from marketbot.keyvault.client import VaultClient
from marketbot.keyvault.domain.masterkeys import format_master_key, generate_master_key
from marketbot.runtime.bus import Bus, BusError
from marketbot.runtime.db import create_pool, migrate_service
from marketbot.runtime.infra import free_port, start_infra
from marketbot.runtime.logs import configure_logging
from marketbot.runtime.natsauth import CREDENTIALS_ENV, service_env
from marketbot.sim.admin import SimAdmin
from marketbot.sim.testing import start_sim_process, stop_sim_process

USERS = int(os.environ.get("BENCH_EXECUTION_USERS", "1000"))
USERS_LIMITED = int(os.environ.get("BENCH_EXECUTION_LIMITED_USERS", "600"))
ROUNDS = int(os.environ.get("BENCH_EXECUTION_ROUNDS", "3"))
WARMUP = int(os.environ.get("BENCH_EXECUTION_WARMUP", "1"))
"""Uncounted rounds first: connections opened, caches filled (the vault's per-user key,
the executor's instruments, each ccxt instance's lazy set-up)."""
ROUND_TIMEOUT_S = float(os.environ.get("BENCH_EXECUTION_TIMEOUT_S", "180"))
PLAN_DELAY = {Plan.PRO: 0.0, Plan.FLEX: 1.0, Plan.TRIAL: 3.0}
SYMBOL, CCXT_SYMBOL = "XRPUSDT", "XRP/USDT"
TIER_CONCURRENCY = 128
"""Orders in flight: the executor's tier concurrency, and ccxt's bound."""
TRACK_INTERVAL_S = 600.0
"""The positions opened by earlier rounds are not re-checked inside later rounds: tracking
open positions is work per open position and minute, not per order placed."""
HTTP_CONNECTIONS = ExecutorSettings.model_fields["http_max_connections"].default
"""Connections to the exchange: the executor's default pool, and ccxt's connector limit."""
PYSPY = os.environ.get("BENCH_EXECUTION_PYSPY")
"""A py-spy binary: the executor and vault processes are profiled over the counted rounds
(raw, folded stacks) into ``BENCH_EXECUTION_PROFILE_DIR`` (default: the temp dir)."""
EXTRAS = os.environ.get("BENCH_EXECUTION_EXTRAS", "1") != "0"
COUNTS = os.environ.get("BENCH_EXECUTION_COUNTS", "1") != "0"
"""One more round after the counted ones (its time not counted) with PostgreSQL logging every
statement: SQL statements per order of each service, the stream frames the executor
handled and the events it published (``BENCH_EXECUTION_COUNTS=0`` leaves it out)."""
"""``0``: only the real path and the ccxt rows (no LocalSigner row, no limits-on round):
for paired before/after runs."""
TARGET_RATIO, TARGET_CPU_MS, TARGET_FANOUT_S = 1.0, 1.0, 1.0
EXECUTOR = "executor-bybit"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class User:
    user_id: str
    account: str
    api_key: str
    secret: str


@dataclass
class Figures:
    """One contender's rounds."""

    elapsed: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    """CPU seconds of the whole round (every process that counts)."""
    requests: list[int] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    filled: list[float] = field(default_factory=list)
    """t0 -> the last OrderFilled (the executor process: the fill comes from the stream)."""

    def add(self, elapsed: float, cpu: float, requests: int, **extra: float) -> None:
        self.elapsed.append(elapsed)
        self.cpu.append(cpu)
        self.requests.append(requests)
        for key, value in extra.items():
            self.extra.setdefault(key, []).append(value)

    def seconds(self) -> float:
        return statistics.median(self.elapsed)

    def rate(self, n: int) -> float:
        return n / self.seconds()

    def cpu_ms(self, n: int, key: str | None = None) -> float:
        values = self.cpu if key is None else self.extra[key]
        return statistics.median(values) * 1000 / n

    def per_order(self, n: int) -> float:
        return statistics.median(self.requests) / n

    def spread(self) -> str:
        return ", ".join(f"{t:.2f}" for t in sorted(self.elapsed))


def _progress(text: str) -> None:
    print(f"# execution: {text}", file=sys.stderr, flush=True)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_s(pid: int) -> float:
    """utime + stime of another process (proc(5): fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _listener_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:``port`` (proc(5): /proc/net/tcp, /proc/*/fd)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    return None


def _tree_cpu_s(pid: int) -> float:
    """CPU of ``pid`` and its children (PostgreSQL: the postmaster and every backend)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (proc / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(proc.name) == pid or int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return total


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


async def _users(admin: SimAdmin, n: int, *, ips: list[str] | None = None) -> list[User]:
    async def one(i: int) -> User:
        account = await admin.create_account()
        key, secret = await admin.create_api_key(account, ips=ips)
        await admin.fund(account, "USDT", Decimal(1000))
        return User(f"bench-{i}-{account}", account, key, secret)

    made: list[User] = []
    for start in range(0, n, 100):
        made += await asyncio.gather(*(one(i) for i in range(start, min(n, start + 100))))
    return made


async def _requests_seen(admin: SimAdmin) -> int:
    """Requests the simulator answered since its last stats reset (its own ground truth;
    the admin API is not counted)."""
    stats = await admin.stats()
    return sum(int(v) for v in stats["statuses"].values())


def _request(
    user_id: str, decision: uuid.UUID, plan: Plan, now: datetime, price: Decimal
) -> OrderRequested:
    return OrderRequested(
        event_id=request_id_for(decision, user_id),
        occurred_at=now,
        correlation_id=str(decision),
        request_id=request_id_for(decision, user_id),
        decision_id=decision,
        signal_id=decision,
        user_id=user_id,
        exchange=Exchange.BYBIT,
        symbol=SYMBOL,
        side=Side.BUY,
        plan=plan,
        priority={Plan.PRO: 1, Plan.FLEX: 2, Plan.TRIAL: 3}[plan],
        not_before=now + timedelta(seconds=PLAN_DELAY[plan]),
        risk_level=RiskLevel.MEDIUM,
        client_order_id=client_order_id_for(decision, user_id),
        # as decision sends it: the vault bounds an entry's limit by this price
        reference_price=price,
        requested_at=now,
        commission_rate=DEFAULT_PLANS[plan].commission_rate,
    )


async def _fan_out(
    bus: Bus, plans: dict[str, Plan], price: Decimal, *, fills: bool = False
) -> tuple[float, list[OrderPlaced], float]:
    """Publish one decision's fan-out; wait for every OrderPlaced (and, with ``fills``,
    every OrderFilled): (t0 -> last placed, the placed events, t0 -> last filled)."""
    decision = uuid.uuid4()
    placed: list[tuple[float, OrderPlaced]] = []
    filled: list[float] = []
    done, all_filled = asyncio.Event(), asyncio.Event()

    async def on_event(msg: Any) -> None:
        event = decode(msg.data)
        if isinstance(event, OrderPlaced) and event.decision_id == decision:
            placed.append((time.perf_counter(), event))
            if len(placed) == len(plans):
                done.set()
        elif isinstance(event, OrderFilled) and event.decision_id == decision:
            filled.append(time.perf_counter())
            if len(filled) == len(plans):
                all_filled.set()

    subs = [await bus.nc.subscribe(bus.subject("orders.bybit.OrderPlaced"), cb=on_event)]
    if fills:
        subs.append(await bus.nc.subscribe(bus.subject("orders.bybit.OrderFilled"), cb=on_event))
    await bus.nc.flush()
    now = datetime.now(UTC)
    started = time.perf_counter()
    try:
        await asyncio.gather(
            *(bus.publish(_request(u, decision, plan, now, price)) for u, plan in plans.items())
        )
        await asyncio.wait_for(done.wait(), timeout=ROUND_TIMEOUT_S)
        if fills:
            await asyncio.wait_for(all_filled.wait(), timeout=ROUND_TIMEOUT_S)
    finally:
        for sub in subs:
            await sub.unsubscribe()
    order = sorted(placed, key=lambda p: p[0])
    last_fill = max(filled) - started if filled else 0.0
    return order[-1][0] - started, [e for _, e in order], last_fill


# ---- the real path: the executor and the vault as their own processes ----------------------


@dataclass
class Processes:
    vault: subprocess.Popen[bytes]
    executor: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def stop(self) -> None:
        for process in (self.executor, self.vault):
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def check(self) -> None:
        for name, process in (("executor", self.executor), ("vault", self.vault)):
            if process is not None and process.poll() is not None:
                tails = "\n".join(p.read_text()[-3000:] for p in self.logs if p.exists())
                raise RuntimeError(f"the {name} exited with {process.returncode}:\n{tails}")


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


async def _wait_ready(url: str, processes: Processes, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            processes.check()
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready within {timeout:.0f}s")
            await asyncio.sleep(0.1)


async def _start_vault(
    nats_url: str, database_url: str, prefix: str, sim_url: str, tmp: Path
) -> tuple[Processes, int]:
    port = free_port()
    log = tmp / "keyvault.log"
    env = dict(
        os.environ,
        **service_env(nats_url, "keyvault"),
        DATABASE_URL=database_url,
        MARKETBOT_BUS_PREFIX=prefix,
        MARKETBOT_KEYVAULT_DB_SCHEMA=f"bench_kv_{uuid.uuid4().hex[:8]}",
        MARKETBOT_KEYVAULT_MASTER_KEYS=format_master_key(1, generate_master_key()),
        MARKETBOT_KEYVAULT_SEALING_KEY=SealingKey.generate().private_b64(),
        MARKETBOT_KEYVAULT_VENUE_URLS=json.dumps({"bybit": sim_url}),
        MARKETBOT_KEYVAULT_METRICS_PORT=str(port),
        LOG_LEVEL="INFO",
    )
    vault = _spawn([sys.executable, "-m", "marketbot.keyvault", "serve"], env, log)
    processes = Processes(vault, logs=[log])
    await _wait_ready(f"http://127.0.0.1:{port}/readyz", processes)
    return processes, port


async def _register(bus: Bus, users: list[User]) -> None:
    """Every user's key sealed to the vault and verified by it against the simulator."""
    client = VaultClient(bus, timeout=30)
    gate = asyncio.Semaphore(32)

    async def one(user: User) -> None:
        async with gate:
            for attempt in range(5):
                try:
                    reply = await client.register(
                        user.user_id, Exchange.BYBIT, user.api_key, user.secret
                    )
                    break
                except BusError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.5)
            if not reply.ok:
                raise RuntimeError(f"registering {user.user_id}: {reply.error}")

    await asyncio.gather(*(one(u) for u in users))


async def _start_executor(
    processes: Processes,
    nats_url: str,
    database_url: str,
    prefix: str,
    sim_url: str,
    tmp: Path,
) -> int:
    """Start the executor process; its metrics port."""
    port = free_port()
    log = tmp / "executor.log"
    settings = {
        "EXCHANGE_URL": sim_url,
        "DB_SCHEMA": f"bench_ex_{uuid.uuid4().hex[:8]}",
        "METRICS_PORT": str(port),
        "TIER_CONCURRENCY": str(TIER_CONCURRENCY),
        "FETCH_BATCH": str(TIER_CONCURRENCY),
        "ACK_WAIT_S": "30",
        "IDLE_POLL_S": "0.01",
        "TRACK_INTERVAL_S": str(TRACK_INTERVAL_S),
        "RATE_LIMIT_SAFETY": "0.98",
        # also scales the streams' documented connection budget (Bybit: 450 new
        # connections per 5 minutes per IP), so N accounts' streams come up in the warm-up
        "RATE_LIMIT_SCALE": "1000000",
        # The steady state (issue 19): fills, orders and balances from the private streams,
        # the create not read back; the stream warm-up happens before the counted rounds.
        "PRIVATE_STREAMS": "true",
    }
    env = dict(
        os.environ,
        **service_env(nats_url, EXECUTOR),
        **{f"MARKETBOT_EXECUTOR_BYBIT_{k}": v for k, v in settings.items()},
        DATABASE_URL=database_url,
        MARKETBOT_BUS_PREFIX=prefix,
        LOG_LEVEL="INFO",  # as deployed: the JSON log lines are part of the cost
    )
    processes.executor = _spawn([sys.executable, "-m", "marketbot.executor_bybit.app"], env, log)
    processes.logs.append(log)
    await _wait_ready(f"http://127.0.0.1:{port}/readyz", processes)
    return port


async def _metric(port: int, name: str) -> float:
    """A gauge's value (summed over its labels) from the executor's /metrics."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


async def _wait_streams(port: int, processes: Processes, n: int) -> float:
    """Wait until ``n`` private-stream connections are up; seconds waited."""
    started = time.perf_counter()
    deadline = started + ROUND_TIMEOUT_S
    while await _metric(port, "marketbot_exchange_stream_connections") < n:
        processes.check()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{n} private streams not up within {ROUND_TIMEOUT_S:.0f}s")
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


def _profile(processes: Processes, tmp: Path) -> list[subprocess.Popen[bytes]]:
    assert PYSPY
    assert processes.executor is not None
    out = Path(os.environ.get("BENCH_EXECUTION_PROFILE_DIR", str(tmp)))
    out.mkdir(parents=True, exist_ok=True)
    started = []
    for name, pid in (("executor", processes.executor.pid), ("vault", processes.vault.pid)):
        target = out / f"{name}.folded"
        argv = [PYSPY, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
        argv += os.environ.get("BENCH_EXECUTION_PYSPY_ARGS", "--nonblocking").split()
        started.append(subprocess.Popen([*argv, "-o", str(target)]))
        _progress(f"profiling the {name} into {target}")
    time.sleep(1.0)  # py-spy attached before the first counted round
    return started


async def _process_round(
    bus: Bus, admin: SimAdmin, processes: Processes, users: list[User], others: dict[str, int]
) -> tuple[float, int, dict[str, float], float]:
    """One fan-out through the executor process: (t0 -> last OrderPlaced, requests, CPU s
    per process, t0 -> last OrderFilled). The CPU is read once every fill is recorded (with
    the streams on, the fill comes after the acknowledgement, from the order topic)."""
    assert processes.executor is not None
    pids = {"executor": processes.executor.pid, "vault": processes.vault.pid, **others}
    await admin.clear_stats()
    before = {name: _tree_cpu_s(pid) for name, pid in pids.items()}
    price = await admin.price(SYMBOL)
    plans = dict.fromkeys((u.user_id for u in users), Plan.PRO)
    elapsed, _, filled = await _fan_out(bus, plans, price, fills=True)
    cpu = {name: _tree_cpu_s(pid) - before[name] for name, pid in pids.items()}
    processes.check()
    return elapsed, await _requests_seen(admin), cpu, filled


async def _stream_warmup(
    bus: Bus,
    admin: SimAdmin,
    processes: Processes,
    users: list[User],
    others: dict[str, int],
    port: int,
) -> list[dict[str, Any]]:
    """The streams' warm-up, before any counted round, and what it cost: the first order
    per account opens its private stream (polled meanwhile: the create is read back, the
    balance read by REST); once every stream is up, the second order reads each balance
    once (the wallet topic pushes on change, not on subscribe) and from then on the wallet
    stream keeps it. Printed as rows of their own, never mixed into the steady state."""
    rows = []
    for label in ("streams opened", "balance snapshots"):
        elapsed, requests, cpu, filled = await _process_round(bus, admin, processes, users, others)
        waited = await _wait_streams(port, processes, len(users)) if not rows else 0.0
        n = len(users)
        _progress(f"  stream warm-up ({label}): {elapsed:.2f}s, {requests / n:.2f} req/order")
        rows.append(
            {
                "name": f"execution: stream warm-up, {label} (not counted)",
                "value": elapsed,
                "unit": "s",
                "baseline": f"{requests / n:.2f} req/order; executor "
                f"{cpu['executor'] * 1000 / n:.2f} + vault {cpu['vault'] * 1000 / n:.2f} ms "
                f"CPU/order; last fill at {filled:.2f} s"
                + (f"; {n} streams up {waited:.1f} s later" if label == "streams opened" else ""),
                "ratio": None,
            }
        )
    return rows


def _other_processes(sim: int, nats_url: str, database_url: str) -> dict[str, int]:
    """The simulator, NATS and PostgreSQL processes this run talks to (found by port)."""
    found = {"sim": sim}
    for name, url in (("nats", nats_url), ("postgres", database_url)):
        pid = _listener_pid(_port(url))
        if pid is not None:
            found[name] = pid
    return found


async def _stream_frames(port: int) -> float:
    """Private-stream messages the executor handled (order, execution and wallet pushes)."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith("marketbot_execution_stream_reports_total{"):
            continue
        labels, value = line.rsplit(" ", 1)
        pushed = 'effect="received"' in labels and 'kind="price"' not in labels
        if pushed or 'kind="balance"' in labels:
            total += float(value)
    return total


async def _count_round(
    bus: Bus,
    admin: SimAdmin,
    processes: Processes,
    users: list[User],
    others: dict[str, int],
    port: int,
    database_url: str,
    tmp: Path,
) -> list[dict[str, Any]]:
    """Per order, counted in one more round: SQL statements of each service (PostgreSQL's
    own statement log, ``log_statement = all``, by ``application_name``: BEGIN and COMMIT
    count as statements), the stream frames the executor handled, the events published."""
    n = len(users)
    conn = await asyncpg.connect(database_url)
    try:
        data_dir = Path(await conn.fetchval("SHOW data_directory"))
        log_path = data_dir.parent / "postgres.log"  # runtime/infra.py: the server's output
        if not log_path.exists():
            return [
                {
                    "name": "execution: SQL statements per order",
                    "value": float("nan"),
                    "unit": "",
                    "baseline": f"no server log at {log_path} (not the embedded PostgreSQL)",
                    "ratio": None,
                }
            ]
        await conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        await conn.execute("ALTER SYSTEM SET log_line_prefix = '@@%a@@ '")
        await conn.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(1.0)
        events = bus.namespace.stream("ORDER_EVENTS")
        published = (await bus.js.stream_info(events)).state.messages
        frames = await _stream_frames(port)
        start = log_path.stat().st_size
        _progress("counting round (every SQL statement logged; not timed)")
        await _process_round(bus, admin, processes, users, others)
        await asyncio.sleep(2.0)  # the outbox deletes after the last publish
        end = log_path.stat().st_size
        published = (await bus.js.stream_info(events)).state.messages - published
        frames = await _stream_frames(port) - frames
    finally:
        with contextlib.suppress(Exception):
            await conn.execute("ALTER SYSTEM RESET log_statement")
            await conn.execute("ALTER SYSTEM RESET log_line_prefix")
            await conn.execute("SELECT pg_reload_conf()")
        await conn.close()
    with log_path.open("rb") as handle:
        handle.seek(start)
        text = handle.read(end - start).decode(errors="replace")
    counts: dict[str, int] = {}
    texts: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("@@"):
            continue
        if "LOG:  statement:" not in line and "LOG:  execute" not in line:
            continue
        app = line[2 : line.index("@@", 2)]
        counts[app] = counts.get(app, 0) + 1
        service = "executor" if "bench_ex_" in app else "vault" if "bench_kv_" in app else app
        key = f"{service:8} {line.split(': ', 2)[-1][:150]}"
        texts[key] = texts.get(key, 0) + 1
    detail = tmp / "sql-statements.txt"
    detail.write_text(
        "".join(f"{v / n:8.3f}  {k}\n" for k, v in sorted(texts.items(), key=lambda kv: -kv[1]))
    )
    _progress(f"  statements per order, by text: {detail}")
    executor = sum(v for k, v in counts.items() if k.startswith("marketbot-bench_ex_"))
    vault = sum(v for k, v in counts.items() if k.startswith("marketbot-bench_kv_"))
    return [
        {
            "name": "execution: SQL statements per order (counting round)",
            "value": (executor + vault) / n,
            "unit": "stmt/order",
            "baseline": f"executor {executor / n:.2f} + vault {vault / n:.2f} "
            "(BEGIN and COMMIT included)",
            "ratio": None,
        },
        {
            "name": "execution: stream frames handled and events published per order",
            "value": frames / n,
            "unit": "frames/order",
            "baseline": f"{published / n:.2f} events published per order (ORDER_EVENTS)",
            "ratio": None,
        },
    ]


# ---- ccxt ---------------------------------------------------------------------------------


@dataclass
class Ccxt:
    session: aiohttp.ClientSession
    clients: list[Any]
    price: Decimal
    quantity: Decimal


async def _ccxt_setup(sim_url: str, users: list[User], admin: SimAdmin) -> Ccxt:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=HTTP_CONNECTIONS))
    api = dict.fromkeys(("spot", "futures", "v2", "public", "private"), sim_url)
    config = {
        "session": session,
        "ssl_context": ssl.create_default_context(),
        "urls": {"api": api},
        "enableRateLimit": False,
        "timeout_on_exit": 0,  # close() would sleep this long (ms), per instance
        # Both known up front: ccxt's create_order would otherwise ask the account type
        # (/v5/user/query-api + /v5/account/info) once per instance (bybit.is_unified_enabled).
        "options": {
            "enableUnifiedAccount": True,
            "enableUnifiedMargin": False,
            "fetchMarkets": {"types": ["spot"]},
        },
    }
    first = ccxt_async.bybit(dict(config))
    markets = await first.load_markets()  # the one markets load
    clients = []
    for user in users:
        client = ccxt_async.bybit({**config, "apiKey": user.api_key, "secret": user.secret})
        client.set_markets(markets)
        # Each instance's lazy set-up at start, as a long-running bot pays it once, not
        # inside the first timed round (with the shared SSL context: ccxt's open() would
        # otherwise build one per instance, ~15 ms each).
        client.open()
        clients.append(client)
    await first.close()
    price = await admin.price(SYMBOL)
    bound = ExecutorSettings.model_fields["max_slippage_percent"].default
    return Ccxt(session, clients, price * (1 + bound / 100), Decimal(10))


async def _ccxt_round(
    setup: Ccxt, admin: SimAdmin, others: dict[str, int], *, balance: bool
) -> tuple[float, float, int, dict[str, float]]:
    gate = asyncio.Semaphore(TIER_CONCURRENCY)
    tag = uuid.uuid4().hex[:8]

    async def one(i: int, client: Any) -> None:
        async with gate:
            if balance:
                await client.fetch_balance()
            await client.create_order(
                CCXT_SYMBOL,
                "limit",
                "buy",
                float(setup.quantity),
                float(setup.price),
                {"timeInForce": "IOC", "orderLinkId": f"ccxt-{tag}-{i}"},
            )

    await admin.clear_stats()
    before = {name: _tree_cpu_s(pid) for name, pid in others.items()}
    cpu = _cpu_s()
    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(one(i, c) for i, c in enumerate(setup.clients))), ROUND_TIMEOUT_S
    )
    elapsed = time.perf_counter() - started
    cpu = _cpu_s() - cpu
    spent = {name: _tree_cpu_s(pid) - before[name] for name, pid in others.items()}
    return elapsed, cpu, await _requests_seen(admin), {"ccxt": cpu, **spent}


# ---- the executor in this process (LocalSigner; and the limits-on round) --------------------


async def _local_round(
    *,
    nats_url: str,
    database_url: str,
    sim_url: str,
    admin: SimAdmin,
    signers: dict[str, Signer],
    plans: dict[str, Plan],
    limits: bool,
) -> dict[str, Any]:
    namespace = BusNamespace(f"bench{uuid.uuid4().hex[:8]}")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    bus = await Bus.connect(nats_url, "bench", namespace)
    await bus.provision()
    pool = await create_pool(database_url, schema, max_size=30)
    await migrate_service(pool, schema, "execution", MIGRATIONS)
    settings = ExecutorSettings(
        service_name="bench-executor",
        tier_concurrency=TIER_CONCURRENCY,
        fetch_batch=TIER_CONCURRENCY,
        ack_wait_s=30.0,
        idle_poll_s=0.01,
        track_interval_s=TRACK_INTERVAL_S,
        rate_limit_safety=0.98,
        rate_limit_scale=1.0 if limits else 1e6,
        # The placement path itself, polled as before: each round is a first order per
        # account (no stream up yet). What the streams save is bench_streams.py's.
        private_streams=False,
    )
    venue = create_venue(Exchange.BYBIT, sim_url, settings=venue_settings(settings))
    running = await start_executor(
        bus=bus,
        pool=pool,
        venue=venue,
        signers=lambda user_id, exchange: signers[user_id],
        settings=settings,
    )
    await admin.clear_stats()
    cpu = _cpu_s()
    try:
        elapsed, placed, _ = await _fan_out(bus, plans, await admin.price(SYMBOL))
        cpu = _cpu_s() - cpu
        requests = await _requests_seen(admin)
    finally:
        await running.stop()
        await venue.aclose()
        await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()
        for spec in namespace.streams():
            await bus.js.delete_stream(spec.name)
        await bus.close()
    first_flex = next((i for i, e in enumerate(placed) if e.plan is not Plan.PRO), len(placed))
    pro_first = all(e.plan is Plan.PRO for e in placed[:first_flex]) and all(
        e.plan is not Plan.PRO for e in placed[first_flex:]
    )
    return {"elapsed": elapsed, "requests": requests, "pro_first": pro_first, "cpu": cpu}


# ---- the run --------------------------------------------------------------------------------


async def run() -> list[dict]:  # type: ignore[type-arg]
    nats_url, database_url = os.environ["NATS_URL"], os.environ["DATABASE_URL"]
    # This process's executor logs as a deployed one does (JSON lines), out of the way.
    devnull = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 - closed at the end of run()
    configure_logging("bench-execution", "INFO", stream=devnull)
    tmp = Path(tempfile.mkdtemp(prefix="bench-execution-"))
    prefix = f"bx{uuid.uuid4().hex[:8]}"
    process, urls = start_sim_process(limits=False)
    sim_url = urls["bybit"]
    admin = SimAdmin(sim_url)
    bus = await Bus.connect(nats_url, "bench", BusNamespace(prefix))
    await bus.provision()
    processes: Processes | None = None
    setup: Ccxt | None = None
    real, local, plain, with_balance = Figures(), Figures(), Figures(), Figures()
    try:
        users = await _users(admin, USERS, ips=["127.0.0.1"])
        signers: dict[str, Signer] = {u.user_id: LocalSigner(u.api_key, u.secret) for u in users}
        processes, _ = await _start_vault(nats_url, database_url, prefix, sim_url, tmp)
        registered = time.perf_counter()
        await _register(bus, users)
        _progress(
            f"{USERS} keys registered through the vault in {time.perf_counter() - registered:.1f}s"
        )
        port = await _start_executor(processes, nats_url, database_url, prefix, sim_url, tmp)
        others = _other_processes(process.pid, nats_url, database_url)
        warmup_rows = await _stream_warmup(bus, admin, processes, users, others, port)
        setup = await _ccxt_setup(sim_url, users, admin)
        # N ccxt instances are ~1 GB of long-lived objects: out of the collector's scans, so
        # neither contender pays for walking them (gc.freeze, Python's gc docs).
        gc.collect()
        gc.freeze()
        pro = dict.fromkeys((u.user_id for u in users), Plan.PRO)
        profilers: list[subprocess.Popen[bytes]] = []
        for i in range(WARMUP + ROUNDS):
            counted = i >= WARMUP
            if counted and PYSPY and not profilers:
                profilers = _profile(processes, tmp)
            _progress(f"round {i + 1} of {WARMUP + ROUNDS} ({'counted' if counted else 'warm-up'})")
            scratch = (Figures(), Figures(), Figures(), Figures())
            sink = (real, plain, with_balance, local) if counted else scratch
            elapsed, requests, cpu, filled = await _process_round(
                bus, admin, processes, users, others
            )
            sink[0].add(elapsed, cpu["executor"] + cpu["vault"], requests, **cpu)
            sink[0].filled.append(filled)
            _progress(
                f"  executor + vault: {elapsed:.2f}s (last fill {filled:.2f}s), "
                f"{requests / USERS:.2f} req/order"
            )
            for figures, balance in ((sink[1], False), (sink[2], True)):
                elapsed, cpu_s, requests, spent = await _ccxt_round(
                    setup, admin, others, balance=balance
                )
                figures.add(elapsed, cpu_s, requests, **spent)
            _progress(
                f"  ccxt: {sink[1].elapsed[-1]:.2f}s, with balance {sink[2].elapsed[-1]:.2f}s"
            )
            if not EXTRAS:
                continue
            result = await _local_round(
                nats_url=nats_url,
                database_url=database_url,
                sim_url=sim_url,
                admin=admin,
                signers=signers,
                plans=pro,
                limits=False,
            )
            sink[3].add(result["elapsed"], result["cpu"], result["requests"])
            _progress(f"  executor in-process, LocalSigner: {result['elapsed']:.2f}s")
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=30)
        rows = warmup_rows + _rows(real, local, plain, with_balance)
        if COUNTS:
            rows += await _count_round(
                bus, admin, processes, users, others, port, database_url, tmp
            )
        if not EXTRAS:
            return rows
        # --- limits on: the per-IP floor (in this process, LocalSigner) --------------------
        await admin.set_limits(True)
        limited = await _users(admin, USERS_LIMITED)
        await admin.set_limits(True)  # counters cleared after creating the users
        mixed = {
            u.user_id: Plan.PRO if i % 5 == 0 else Plan.FLEX if i % 5 < 3 else Plan.TRIAL
            for i, u in enumerate(limited)
        }
        result = await _local_round(
            nats_url=nats_url,
            database_url=database_url,
            sim_url=sim_url,
            admin=admin,
            signers={u.user_id: LocalSigner(u.api_key, u.secret) for u in limited},
            plans=mixed,
            limits=True,
        )
        rows += _limited_rows(result, real.per_order(USERS))
    finally:
        gc.unfreeze()
        if setup is not None:
            await asyncio.gather(*(client.close() for client in setup.clients))
            await setup.session.close()
            setup.clients.clear()
        if processes is not None:
            processes.stop()
        for spec in bus.namespace.streams():
            with contextlib.suppress(Exception):
                await bus.js.delete_stream(spec.name)
        await bus.close()
        await admin.aclose()
        stop_sim_process(process)
        configure_logging("bench", "INFO")
        devnull.close()
    return rows


def _rows(real: Figures, local: Figures, plain: Figures, balance: Figures) -> list[dict[str, Any]]:
    n = USERS
    ccxt_rate = plain.rate(n)
    real_cpu = real.cpu_ms(n)

    def contender(name: str, f: Figures, note: str = "") -> dict[str, Any]:
        sim = f"; sim {f.cpu_ms(n, 'sim'):.2f} ms/order" if "sim" in f.extra else ""
        return {
            "name": f"execution: {name}: orders/s (median)",
            "value": f.rate(n),
            "unit": "orders/s",
            "baseline": f"{f.cpu_ms(n):.2f} ms CPU/order; {f.per_order(n):.2f} req/order; "
            f"{n} orders in {f.spread()} s{sim}{note}",
            "ratio": f.rate(n) / ccxt_rate,
        }

    return [
        {
            "name": f"execution: {n} users, one signal, limits off, vault signing: fan-out "
            "published -> last order acknowledged (median)",
            "value": real.seconds(),
            "unit": "s",
            "baseline": f"<= {TARGET_FANOUT_S:g} s target (ratio = target / measured); "
            f"{ROUNDS} rounds: {real.spread()} s",
            "ratio": TARGET_FANOUT_S / real.seconds(),
        },
        {
            "name": f"execution: {n} users, vault signing: fan-out published -> last fill "
            "recorded from the private stream (median)",
            "value": statistics.median(real.filled),
            "unit": "s",
            "baseline": ", ".join(f"{t:.2f}" for t in sorted(real.filled)) + " s",
            "ratio": None,
        },
        {
            "name": "execution: executor requests per order, steady state (streams on)",
            "value": real.per_order(n),
            "unit": "req/order",
            "baseline": "1.0 expected: the create only (balance from the wallet stream, "
            "outcome and fills from the order and execution topics); ratio = 1 / measured",
            "ratio": 1.0 / real.per_order(n),
        },
        contender(
            "executor process, vault signing",
            real,
            f"; ratio = / ccxt plain (target >= {TARGET_RATIO:g})",
        ),
        {
            "name": "execution: executor CPU per order, vault signing included (median)",
            "value": real_cpu,
            "unit": "ms",
            "baseline": f"<= {TARGET_CPU_MS:g} ms target (ratio = target / measured); executor "
            f"{real.cpu_ms(n, 'executor'):.2f} + vault {real.cpu_ms(n, 'vault'):.2f}",
            "ratio": TARGET_CPU_MS / real_cpu,
        },
        {
            "name": "execution: CPU per order of every process on the path (vault signing)",
            "value": sum(real.cpu_ms(n, k) for k in real.extra),
            "unit": "ms",
            "baseline": "; ".join(f"{k} {real.cpu_ms(n, k):.2f}" for k in real.extra),
            "ratio": None,
        },
        contender("ccxt async, one instance per user, one session", plain),
        contender("ccxt, plus a balance read per user", balance),
        *(
            [
                contender(
                    "executor in the bench process, LocalSigner (extra row)",
                    local,
                    "; CPU includes the bench's publishing",
                )
            ]
            if local.elapsed
            else []
        ),
        {
            "name": "execution: executor (vault) orders/s / ccxt with a balance read",
            "value": real.rate(n) / balance.rate(n),
            "unit": "x",
            "baseline": f"ccxt + balance {balance.rate(n):,.0f} orders/s",
            "ratio": None,
        },
    ]


def _limited_rows(result: dict[str, Any], measured_per_order: float) -> list[dict[str, Any]]:
    budget = bybit.IP_LIMIT / bybit.IP_WINDOW_S
    per_order = result["requests"] / USERS_LIMITED if result["requests"] else measured_per_order
    # N requests through a budget of 600 per 5 s (sliding): N / 120 per second.
    floor = USERS_LIMITED * per_order / budget
    return [
        {
            "name": f"execution: {USERS_LIMITED} users, Bybit per-IP limit on, total time",
            "value": result["elapsed"],
            "unit": "s",
            "baseline": f"floor {floor:.2f}s = {USERS_LIMITED} orders x {per_order:.2f} "
            f"req / {budget:.0f} req/s per IP",
            "ratio": result["elapsed"] / floor if floor else None,
        },
        {
            "name": "execution: every PRO order placed before the first FLEX (limits on)",
            "value": 1.0 if result["pro_first"] else 0.0,
            "unit": "bool",
            "baseline": "1 = yes",
            "ratio": None,
        },
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="marketbot-bench-") as tmp:
        infra = None
        if "NATS_URL" not in os.environ or "DATABASE_URL" not in os.environ:
            infra = start_infra(Path(tmp), auth_prefix="*")
            os.environ["NATS_URL"] = infra.nats_url
            os.environ[CREDENTIALS_ENV] = str(infra.credentials_path or "")
            os.environ["DATABASE_URL"] = infra.database_url
        try:
            for row in asyncio.run(run()):
                print(row, file=sys.stdout)
        finally:
            if infra is not None:
                infra.stop()
