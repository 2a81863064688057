"""The system benchmark: webhook → last order acknowledged, through the real processes.

1,000 users (half Bybit, half Binance; PRO / FLEX / TRIAL mixed) are registered through the
gateway with keys verified by the vault. One TradingView alert is posted and the clock runs
until every user's order outcome (OrderFilled or OrderRejected) is on the bus.

- limits off: raw pipeline speed (the simulator meters nothing);
- limits on: the simulator's real per-IP limits. The executors restart (their own limiters
  back on) and open every followed account's private stream (Bybit: one connection per
  account, spread over ``EGRESS_IPS`` local addresses, each an egress IP with its own
  connection budget; Binance: one WS API connection) and reconcile it; the bench waits for
  that. The first alert after the restart is measured on its own (each account's balance
  snapshot kept across the restart sizes its order while the background refresh reads the
  balances again: no order reads one); once those refreshes are done and the per-IP
  windows have drained, the next alerts are the steady state. The floor those
  limits impose is computed from the requests each order costs (measured) and each
  exchange's per-IP budget; the figure is reported against it, and against the limits-off
  time (once an order is one request the pipeline's own speed binds, not the limits).
  TRIAL's 3 s dispatch delay is a floor too.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families

from marketbot.contracts import BusNamespace, OrderFilled, OrderRejected, decode
from marketbot.devstack.demo import Demo, DemoUser
from marketbot.devstack.stack import Stack, StackConfig
from marketbot.devstack.supervisor import Supervisor
from marketbot.exchanges.binance import constants as binance_constants
from marketbot.exchanges.binance.constants import WEIGHTS
from marketbot.exchanges.bybit import constants as bybit_constants
from marketbot.exchanges.bybit.stream import LIMITS as BYBIT_STREAM_LIMITS
from marketbot.runtime.bus import Bus
from marketbot.runtime.infra import start_infra
from marketbot.runtime.natsauth import CREDENTIALS_ENV, NatsAuth, strip_userinfo
from marketbot.sim.admin import SimAdmin

USERS = int(os.environ.get("MARKETBOT_BENCH_SYSTEM_USERS", "1000"))
UNLIMITED = {
    "bybit": "MARKETBOT_EXECUTOR_BYBIT_RATE_LIMIT_SCALE",
    "binance": "MARKETBOT_EXECUTOR_BINANCE_RATE_LIMIT_SCALE",
}
PLANS = ("PRO", "FLEX", "TRIAL")
BYBIT_IP_LIMIT, BYBIT_IP_WINDOW_S = bybit_constants.IP_LIMIT, bybit_constants.IP_WINDOW_S
BINANCE_WEIGHT_LIMIT = binance_constants.REQUEST_WEIGHT_LIMIT
BINANCE_WEIGHT_WINDOW_S = binance_constants.REQUEST_WEIGHT_WINDOW_S
BYBIT_ACCOUNTS = (USERS + 1) // 2
EGRESS_IPS = [
    f"127.0.0.{i + 1}"
    for i in range(max(1, math.ceil((BYBIT_ACCOUNTS + 1) / BYBIT_STREAM_LIMITS.budget)))
]
"""The Bybit executor's stream connections (one per account, plus the public one) are
spread over this many local addresses, each an egress IP with its own connection budget
(450 new connections per 5 minutes), as a deployment adds egress IPs: the simulator counts
each source address apart."""


PYSPY = os.environ.get("BENCH_SYSTEM_PYSPY")
"""A py-spy binary: every service process is profiled over the limits-off alert, into
``BENCH_SYSTEM_PROFILE_DIR`` (default: a temporary directory) as ``<service>.folded``."""
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` has used (proc(5): utime + stime)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def service_pids(stack: Stack) -> dict[str, int]:
    pids = {}
    for name in stack.supervisor.names:
        pid = stack.supervisor.process(name).process.pid
        if pid is not None:
            pids[name] = pid
    return pids


def profile(pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    assert PYSPY
    out = Path(os.environ.get("BENCH_SYSTEM_PROFILE_DIR", tempfile.gettempdir()))
    out.mkdir(parents=True, exist_ok=True)
    argv = [PYSPY, "record", "--rate", "100", "--format", "raw", "--nonblocking"]
    return [
        subprocess.Popen([*argv, "--pid", str(pid), "-o", str(out / f"{name}.folded")])
        for name, pid in pids.items()
    ]


def cpu_row(alert: dict[str, Any], label: str) -> dict[str, Any]:
    cpu = {name: 1000 * seconds / USERS for name, seconds in alert["cpu"].items()}
    top = sorted(cpu.items(), key=lambda kv: -kv[1])
    return {
        "name": f"system: CPU per order of the service processes, {label}",
        "value": sum(cpu.values()),
        "unit": "ms/order",
        "baseline": ", ".join(f"{name} {ms:.2f}" for name, ms in top)
        + f" (load average {os.getloadavg()[0]:.1f})",
        "ratio": None,
    }


def window_floor(used: float, limit: float, window_s: float) -> float:
    """Least time to spend ``used`` under "at most ``limit`` per ``window_s``": the first
    window's worth goes at once, the rest at ``limit / window_s`` per second."""
    return max(0.0, used - limit) / (limit / window_s)


def users() -> list[DemoUser]:
    return [
        DemoUser(
            user_id=f"bench-{i:05d}",
            display_name=f"bench {i}",
            plan=PLANS[i % 3],
            exchange="bybit" if i % 2 == 0 else "binance",
            risk_level="medium",
            funds=Decimal("5000"),
        )
        for i in range(USERS)
    ]


async def seed(demo: Demo, population: list[DemoUser], concurrency: int = 16) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(user: DemoUser) -> None:
        async with gate:
            seeded = await demo.seed_user(user)
            state = await demo.wait_verified(seeded, timeout=120)
        # The vault's client keeps to each exchange's per-IP budget (Binance: 6,000 weight a
        # minute, ~21 per verification), so a burst of registrations gets some
        # "verification_unavailable" answers; ask again, as a user would, until verified.
        for _ in range(60):
            if state == "verified" or "unavailable" not in state:
                break
            await asyncio.sleep(5)
            async with gate:
                state = await demo.verify(seeded)
        if state != "verified":
            raise RuntimeError(f"{user.user_id}: key {state}")

    await asyncio.gather(*(one(u) for u in population))


async def settled(bus: Bus) -> None:
    while True:
        busy = False
        for stream in ("ACCOUNTS", "KEYS"):
            for consumer in await bus.js.consumers_info(bus.stream(stream)):
                busy = busy or bool(consumer.num_pending or consumer.num_ack_pending)
        if not busy:
            return
        await asyncio.sleep(0.2)


async def one_alert(
    stack: Stack, demo: Demo, bus: Bus, symbol: str, *, profiled: bool = False
) -> dict[str, Any]:
    """Post one alert; seconds until every user has an outcome, counts, and the CPU each
    service process used meanwhile."""
    wanted = {u.user_id for u in users()}
    outcomes: dict[str, str] = {}
    reasons: dict[str, int] = {}
    last_by_plan: dict[str, float] = {}
    done = asyncio.Event()
    started = time.perf_counter()

    async def on_event(msg: Msg) -> None:
        event = decode(msg.data)
        if isinstance(event, OrderFilled | OrderRejected) and event.user_id in wanted:
            outcomes[event.user_id] = event.type
            last_by_plan[event.plan.value] = time.perf_counter() - started
            if isinstance(event, OrderRejected):
                reasons[event.reason.value] = reasons.get(event.reason.value, 0) + 1
            if len(outcomes) == len(wanted):
                done.set()

    subs = [
        await bus.nc.subscribe(bus.subject(f"orders.{ex}.{kind}"), cb=on_event)
        for ex in ("bybit", "binance")
        for kind in ("OrderFilled", "OrderRejected")
    ]
    price = await demo.price(symbol)
    body = {
        "symbol": symbol,
        "action": "buy",
        "price": str(price),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "strategy": "bench",
    }
    pids = service_pids(stack)
    profilers = profile(pids) if PYSPY and profiled else []
    if profilers:
        await asyncio.sleep(1.0)  # py-spy attached
    cpu = {name: cpu_s(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    await demo.send_alert(stack.config.webhook_source, stack.config.webhook_token, body)
    try:
        await asyncio.wait_for(done.wait(), timeout=900)
    finally:
        for sub in subs:
            await sub.unsubscribe()
    elapsed = time.perf_counter() - started
    cpu = {name: cpu_s(pid) - cpu[name] for name, pid in pids.items()}
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)
    return {
        "cpu": cpu,
        "seconds": elapsed,
        "filled": sum(1 for kind in outcomes.values() if kind == "OrderFilled"),
        "rejected": sum(1 for kind in outcomes.values() if kind == "OrderRejected"),
        "reasons": reasons,
        "last_by_plan": last_by_plan,
    }


def by_plan(alert: dict[str, Any]) -> str:
    """When each plan's last outcome came (its dispatch delay is 0, 1 and 3 s)."""
    last = alert["last_by_plan"]
    return ", ".join(f"last {plan} {last[plan]:.2f} s" for plan in PLANS if plan in last)


async def samples(http: httpx.AsyncClient, metrics_url: str, name: str) -> dict[str, float]:
    """One metric's samples from a process's /metrics, keyed by their labels (sorted)."""
    text = (await http.get(metrics_url)).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                key = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                found[key] = found.get(key, 0.0) + sample.value
    return found


BALANCE_ENDPOINTS = {"/v5/account/wallet-balance", "/api/v3/account"}


async def streams_warm(http: httpx.AsyncClient, metrics_url: str, timeout_s: float = 600) -> float:
    """Wait until every account the executor follows has had its stream come up and its
    start-up reconciliation run (its REST reads done: the executor's request count, but for
    the balance reads the background refresh goes on making, stops moving); seconds
    waited."""
    started = time.perf_counter()
    last, still = -1.0, 0
    while time.perf_counter() - started < timeout_s:
        accounts = sum(
            (await samples(http, metrics_url, "marketbot_exchange_stream_accounts")).values()
        )
        reconciled = sum(
            v
            for k, v in (
                await samples(http, metrics_url, "marketbot_execution_stream_reconciliations_total")
            ).items()
            if "cause=start" in k
        )
        sent = sum(
            n
            for (_, path), n in (await request_counts(http, metrics_url)).items()
            if path not in BALANCE_ENDPOINTS
        )
        if accounts and reconciled >= accounts:
            still = still + 1 if sent == last else 0
            if still >= 4:
                return time.perf_counter() - started
        last = sent
        await asyncio.sleep(0.5)
    raise TimeoutError(f"streams of {metrics_url} not up within {timeout_s:.0f} s")


async def request_counts(http: httpx.AsyncClient, metrics_url: str) -> dict[tuple[str, str], float]:
    """Exchange requests an executor has sent, by (method, path), from its own /metrics."""
    text = (await http.get(metrics_url)).text
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "marketbot_exchange_request_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                key = (sample.labels["method"], sample.labels["endpoint"])
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


async def refreshed(http: httpx.AsyncClient, metrics_url: str, timeout_s: float = 900) -> float:
    """Wait until no balance waits for its background refresh; seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        pending = await samples(http, metrics_url, "marketbot_execution_balance_refresh_pending")
        if not sum(pending.values()):
            return time.perf_counter() - started
        await asyncio.sleep(1.0)
    raise TimeoutError(f"balances of {metrics_url} not refreshed within {timeout_s:.0f} s")


async def balance_sources(http: httpx.AsyncClient, metrics: dict[str, str]) -> dict[str, float]:
    """Balances the executors sized orders from, by source (stream, snapshot, rest)."""
    found: dict[str, float] = {}
    for ex in ("bybit", "binance"):
        for key, n in (
            await samples(
                http, metrics[f"executor-{ex}"], "marketbot_execution_balance_reads_total"
            )
        ).items():
            source = key.split("source=")[1].split(",")[0]
            found[source] = found.get(source, 0.0) + n
    return found


def delta(
    after: dict[tuple[str, str], float], before: dict[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    return {key: n - before.get(key, 0.0) for key, n in after.items()}


def binance_weight(counts: dict[tuple[str, str], float]) -> float:
    """Request weight spent, by the documented weight of each (method, path)."""
    return sum(n * WEIGHTS.get(key, 1) for key, n in counts.items())


async def run() -> list[dict[str, Any]]:
    nats_url, database_url = os.environ["NATS_URL"], os.environ["DATABASE_URL"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-system-") as tmp:
        creds = os.environ.get(CREDENTIALS_ENV)
        auth = NatsAuth.load(Path(creds)) if creds else None
        config = StackConfig(
            data_dir=Path(tmp),
            nats_url=nats_url,
            nats_server_url=strip_userinfo(nats_url),
            nats_seeds=dict(auth.seeds) if auth else {},
            database_url=database_url,
            bus_prefix=f"bs{uuid.uuid4().hex[:6]}",
            sim_limits=False,
            log_level="WARNING",
            extra_env={
                # every gateway caller here is the benchmark itself: no per-source throttle
                "signal-gateway": {"MARKETBOT_GATEWAY_RATE_LIMIT_PER_SECOND": "0"},
                # raw pipeline speed: the executors' own per-IP limiters are lifted too
                **{f"executor-{ex}": {UNLIMITED[ex]: "1000000"} for ex in UNLIMITED},
            },
        )
        config.extra_env["executor-bybit"]["MARKETBOT_EXECUTOR_BYBIT_STREAM_SOURCE_IPS"] = ",".join(
            EGRESS_IPS
        )
        stack = Stack(config, Supervisor(log_dir=Path(tmp) / "logs", quiet=True))
        await stack.start()
        assert stack.urls is not None
        bus = await Bus.connect(nats_url, "bench-system", BusNamespace(config.bus_prefix))
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32)) as http:
            sims = {
                name: SimAdmin(url, client=http)
                for name, url in (
                    ("bybit", stack.urls.sim.bybit),
                    ("binance", stack.urls.sim.binance),
                    ("market", stack.urls.sim.market),
                )
            }
            demo = Demo(stack.urls.gateway, config.admin_token, sims, http)
            try:
                await demo.set_bullish_market()
                started = time.perf_counter()
                await seed(demo, users())
                await settled(bus)
                seeding = time.perf_counter() - started
                # The first alert opens every account's stream (and reads each balance once):
                # the limits-off figure is the next one, in the same steady state as the
                # limits-on one.
                cold = await one_alert(stack, demo, bus, "ETHUSDT")
                await asyncio.sleep(2.0)
                off = await one_alert(stack, demo, bus, "ETHUSDT", profiled=True)
                rows.append(
                    {
                        "name": f"system: webhook → last order ack, {USERS} users, limits off "
                        "(streams up, steady state)",
                        "value": off["seconds"],
                        "unit": "s",
                        "baseline": f"floor: TRIAL delay 3 s; {off['filled']} filled, "
                        f"{off['rejected']} rejected; {by_plan(off)}; the first alert "
                        f"(streams opened, balances read) {cold['seconds']:.1f} s",
                        "ratio": off["seconds"] / 3.0,
                    }
                )
                rows.append(
                    {
                        "name": "system: orders/s end to end, limits off",
                        "value": USERS / off["seconds"],
                        "unit": "orders/s",
                        "baseline": f"registration of {USERS} users took {seeding:.0f} s",
                        "ratio": None,
                    }
                )
                rows.append(cpu_row(off, "limits off"))
                for sim in (sims["bybit"], sims["binance"]):
                    await sim.set_limits(True)
                # the executors keep to the real per-IP budgets again
                for ex, setting in UNLIMITED.items():
                    config.extra_env[f"executor-{ex}"][setting] = "1"
                    await stack.restart(f"executor-{ex}")
                metrics = stack.urls.metrics
                # The restarted executors open every followed account's stream and
                # reconcile it (start-up); each account's balance snapshot, kept across the
                # restart, sizes its orders until the background refresh has read the
                # balance again. The first alert after the restart is measured as soon as
                # the streams are up; the steady state once the refreshes are done.
                restarted = time.perf_counter()
                await asyncio.gather(
                    *(streams_warm(http, metrics[f"executor-{ex}"]) for ex in ("bybit", "binance"))
                )
                warm_up_s = time.perf_counter() - restarted
                connections = await samples(
                    http, metrics["executor-bybit"], "marketbot_exchange_stream_connections_per_ip"
                )
                warm_before = {
                    ex: await request_counts(http, metrics[f"executor-{ex}"])
                    for ex in ("bybit", "binance")
                }
                pending_at_alert = sum(
                    [
                        sum(
                            (
                                await samples(
                                    http,
                                    metrics[f"executor-{ex}"],
                                    "marketbot_execution_balance_refresh_pending",
                                )
                            ).values()
                        )
                        for ex in ("bybit", "binance")
                    ]
                )
                sources_before = await balance_sources(http, metrics)
                warm = await one_alert(stack, demo, bus, "SOLUSDT")
                sources = {
                    k: v - sources_before.get(k, 0.0)
                    for k, v in (await balance_sources(http, metrics)).items()
                }
                warm_used = {
                    ex: delta(
                        await request_counts(http, metrics[f"executor-{ex}"]), warm_before[ex]
                    )
                    for ex in ("bybit", "binance")
                }
                # The steady state: every balance refreshed (Binance's account read weighs
                # 20, paced under half of the per-IP budget), and the per-IP windows
                # drained (Binance's request weight: one minute; Bybit's: 5 s).
                refresh_s = max(
                    [
                        await refreshed(http, metrics[f"executor-{ex}"])
                        for ex in ("bybit", "binance")
                    ]
                )
                await asyncio.sleep(BINANCE_WEIGHT_WINDOW_S + 1.0)
                before = {
                    ex: await request_counts(http, metrics[f"executor-{ex}"])
                    for ex in ("bybit", "binance")
                }
                on = await one_alert(stack, demo, bus, "SOLUSDT")
                used = {
                    ex: delta(await request_counts(http, metrics[f"executor-{ex}"]), before[ex])
                    for ex in ("bybit", "binance")
                }
                # The machine is shared: a second alert with limits on, then one with the
                # simulator's limits off again (the executors' limiters stay on; they do not
                # bind at one request per order), so both figures are medians of two alerts
                # close in time.
                await asyncio.sleep(BYBIT_IP_WINDOW_S)
                on2 = await one_alert(stack, demo, bus, "SOLUSDT")
                for sim in (sims["bybit"], sims["binance"]):
                    await sim.set_limits(False)
                await asyncio.sleep(BYBIT_IP_WINDOW_S)
                off2 = await one_alert(stack, demo, bus, "ETHUSDT")
                on_s = statistics.median([on["seconds"], on2["seconds"]])
                off_s = statistics.median([off["seconds"], off2["seconds"]])
                rows.append(
                    {
                        "name": f"system: webhook → last order ack, {USERS} users, limits off, "
                        "median of two",
                        "value": off_s,
                        "unit": "s",
                        "baseline": f"before the restart {off['seconds']:.1f} s, after the "
                        f"limits-on alerts (simulator limits off, executors' limiters on) "
                        f"{off2['seconds']:.1f} s",
                        "ratio": off_s / 3.0,
                    }
                )
                # The floor the per-IP limits impose on the requests this alert really cost
                # (counted by the executors, tracking polls included), and TRIAL's 3 s delay.
                bybit_used = sum(used["bybit"].values())  # Bybit meters requests
                binance_used = binance_weight(used["binance"])
                bybit_floor = window_floor(bybit_used, BYBIT_IP_LIMIT, BYBIT_IP_WINDOW_S)
                binance_floor = window_floor(
                    binance_used, BINANCE_WEIGHT_LIMIT, BINANCE_WEIGHT_WINDOW_S
                )
                floor = max(bybit_floor, binance_floor, 3.0)
                half = USERS / 2
                top = sorted(
                    ((f"{ex} {m} {path}", n) for ex in used for (m, path), n in used[ex].items()),
                    key=lambda kv: -kv[1],
                )[:4]
                per_order = (
                    f"{bybit_used / half:.2f} Bybit req/order, "
                    f"{binance_used / half:.2f} Binance weight/order ("
                    + ", ".join(f"{k} {n:.0f}" for k, n in top)
                    + ")"
                )
                rows.append(cpu_row(on, "limits on"))
                bound = max(floor, off_s)
                rows.append(
                    {
                        "name": f"system: webhook → last order ack, {USERS} users, limits on "
                        "(streams up, steady state)",
                        "value": on_s,
                        "unit": "s",
                        "baseline": f"floor {floor:.1f} s = max(TRIAL delay 3 s, Bybit per-IP "
                        f"{bybit_floor:.1f} s = max(0, {bybit_used:.0f} req - "
                        f"{BYBIT_IP_LIMIT}) / ({BYBIT_IP_LIMIT} per {BYBIT_IP_WINDOW_S:.0f} s), "
                        f"Binance per-IP {binance_floor:.1f} s = max(0, {binance_used:.0f} weight "
                        f"- {BINANCE_WEIGHT_LIMIT}) / ({BINANCE_WEIGHT_LIMIT} per "
                        f"{BINANCE_WEIGHT_WINDOW_S:.0f} s)) from {per_order}; median of "
                        f"{on['seconds']:.1f} s and {on2['seconds']:.1f} s; {on['filled']} "
                        f"filled, {on['rejected']} rejected; {by_plan(on)}",
                        "ratio": on_s / floor,
                    }
                )
                rows.append(
                    {
                        "name": "system: limits on / max(limits floor, limits-off time)",
                        "value": on_s / bound,
                        "unit": "ratio",
                        "baseline": f"target <= 1.10; {on_s:.1f} s / max({floor:.1f} s, "
                        f"{off_s:.1f} s) (medians); limits on / limits off "
                        f"{on_s / off_s:.2f}, limits on / floor {on_s / floor:.2f}",
                        "ratio": on_s / bound / 1.10,
                    }
                )
                warm_bybit = sum(warm_used["bybit"].values()) / half
                warm_binance = binance_weight(warm_used["binance"]) / half
                stale = warm["reasons"].get("STALE", 0)
                used_from = ", ".join(f"{k} {v:.0f}" for k, v in sorted(sources.items()) if v)
                rows.append(
                    {
                        "name": "system: first alert after an executor restart, limits on "
                        "(streams up, balances from the kept snapshots)",
                        "value": warm["seconds"],
                        "unit": "s",
                        "baseline": f"{warm['filled']} filled, {stale} STALE, "
                        f"{warm['rejected']} rejected {warm['reasons']}; steady state "
                        f"{on_s:.1f} s; {warm_bybit:.2f} Bybit req/order, {warm_binance:.2f} "
                        f"Binance weight/order (both executors' requests meanwhile, the "
                        f"background balance refresh included); balances sized from: "
                        f"{used_from}; {pending_at_alert:.0f} balances waiting for their "
                        f"refresh at the alert, all refreshed {refresh_s:.0f} s after it",
                        "ratio": warm["seconds"] / on_s,
                    }
                )
                per_ip = ", ".join(
                    f"{k.split('egress_ip=')[1].split(',')[0]}: {v:.0f}"
                    for k, v in sorted(connections.items())
                    if v
                )
                rows.append(
                    {
                        "name": "system: executors restarted, limits on: every followed "
                        "account's stream up and reconciled",
                        "value": warm_up_s,
                        "unit": "s",
                        "baseline": f"Bybit stream connections per egress IP: {per_ip} (budget "
                        f"{BYBIT_STREAM_LIMITS.budget} new per "
                        f"{BYBIT_STREAM_LIMITS.window_s:.0f} s each)",
                        "ratio": None,
                    }
                )
            finally:
                await bus.close()
                await stack.stop()
    return rows


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        infra = start_infra(Path(tmp), auth_prefix="*")
        os.environ.setdefault("NATS_URL", infra.nats_url)
        os.environ.setdefault(CREDENTIALS_ENV, str(Path(tmp) / "nats" / "credentials.json"))
        os.environ.setdefault("DATABASE_URL", infra.database_url)
        try:
            for row in asyncio.run(run()):
                print(row)
        finally:
            infra.stop()
    sys.exit(0)
