"""Fan-out speed of one executor process against the simulator (Bybit dialect).

Issue 8's figures, one executor process (engine + venue client in this process), the
simulator in its own process:

1. Limits off, zero latency: 1,000 users, one signal. The decision's fan-out (1,000
   OrderRequested, all PRO) is published at t0; the figure is t0 -> the last OrderPlaced
   (the order acknowledged by the exchange and committed), and orders/s. The executor's
   own client-side limiter is scaled out of the way too (``rate_limit_scale``), as the
   simulator meters nothing. ``ROUNDS_OFF`` rounds on fresh schemas; the median is reported
   (the machine is shared and noisy), with the spread and the process's CPU per order.
2. The simulator's real per-IP limit on (Bybit: 600 requests / 5 s): a mixed-plan fan-out
   (PRO, FLEX +1 s, TRIAL +3 s). The floor the limit imposes is
   requests / per-IP budget (120/s), requests = orders x requests per order (measured); the
   ratio of the measured total time to that floor is reported (target <= 1.10), and whether
   every PRO order was placed before the first FLEX order.

Every wait is bounded (``ROUND_TIMEOUT_S``): a stuck round fails the benchmark instead of
hanging it; the whole run takes about a minute.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from marketbot.contracts import (
    DEFAULT_PLANS,
    BusNamespace,
    Exchange,
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
from marketbot.runtime.bus import Bus
from marketbot.runtime.db import create_pool, migrate_service
from marketbot.runtime.infra import start_infra
from marketbot.sim.admin import SimAdmin
from marketbot.sim.testing import start_sim_process, stop_sim_process

USERS = 1000
USERS_LIMITED = int(os.environ.get("BENCH_EXECUTION_LIMITED_USERS", "600"))
ROUNDS_OFF = int(os.environ.get("BENCH_EXECUTION_ROUNDS", "3"))
ROUND_TIMEOUT_S = float(os.environ.get("BENCH_EXECUTION_TIMEOUT_S", "60"))
PLAN_DELAY = {Plan.PRO: 0.0, Plan.FLEX: 1.0, Plan.TRIAL: 3.0}


async def _users(admin: SimAdmin, n: int) -> dict[str, tuple[str, Signer]]:
    async def one(i: int) -> tuple[str, tuple[str, Signer]]:
        account = await admin.create_account()
        key, secret = await admin.create_api_key(account)
        await admin.fund(account, "USDT", Decimal(1000))
        return f"bench-{i}-{account}", (account, LocalSigner(key, secret))

    made: dict[str, tuple[str, Signer]] = {}
    for start in range(0, n, 100):
        made.update(await asyncio.gather(*(one(i) for i in range(start, min(n, start + 100)))))
    return made


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _request(user_id: str, decision: uuid.UUID, plan: Plan, now: datetime) -> OrderRequested:
    return OrderRequested(
        event_id=request_id_for(decision, user_id),
        occurred_at=now,
        correlation_id=str(decision),
        request_id=request_id_for(decision, user_id),
        decision_id=decision,
        signal_id=decision,
        user_id=user_id,
        exchange=Exchange.BYBIT,
        symbol="XRPUSDT",
        side=Side.BUY,
        plan=plan,
        priority={Plan.PRO: 1, Plan.FLEX: 2, Plan.TRIAL: 3}[plan],
        not_before=now + timedelta(seconds=PLAN_DELAY[plan]),
        risk_level=RiskLevel.MEDIUM,
        client_order_id=client_order_id_for(decision, user_id),
        requested_at=now,
        commission_rate=DEFAULT_PLANS[plan].commission_rate,
    )


async def _round(
    *,
    nats_url: str,
    database_url: str,
    sim_url: str,
    admin: SimAdmin,
    users: dict[str, tuple[str, Signer]],
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
        tier_concurrency=128,
        fetch_batch=128,
        ack_wait_s=30.0,
        idle_poll_s=0.01,
        track_interval_s=30.0,
        rate_limit_safety=0.98,
        rate_limit_scale=1.0 if limits else 1e6,
        # The placement path itself, polled as before: each round is a first order per
        # account (no stream up yet). What the streams save is bench_streams.py's.
        private_streams=False,
    )
    venue = create_venue(Exchange.BYBIT, sim_url, settings=venue_settings(settings))
    requests_before = await _requests_seen(admin)
    placed: list[tuple[float, OrderPlaced]] = []
    done = asyncio.Event()

    async def on_event(msg: Any) -> None:
        event = decode(msg.data)
        if isinstance(event, OrderPlaced):
            placed.append((time.perf_counter(), event))
            if len(placed) == len(users):
                done.set()

    sub = await bus.nc.subscribe(bus.subject("orders.bybit.OrderPlaced"), cb=on_event)
    await bus.nc.flush()
    running = await start_executor(
        bus=bus,
        pool=pool,
        venue=venue,
        signers=lambda user_id, exchange: users[user_id][1],
        settings=settings,
    )
    decision = uuid.uuid4()
    now = datetime.now(UTC)
    cpu_before = _cpu_s()
    started = time.perf_counter()
    try:
        await asyncio.gather(*(bus.publish(_request(u, decision, plans[u], now)) for u in users))
        await asyncio.wait_for(done.wait(), timeout=ROUND_TIMEOUT_S)
        elapsed = placed[-1][0] - started
        cpu = _cpu_s() - cpu_before
        requests = await _requests_seen(admin) - requests_before
    finally:
        await running.stop()
        await sub.unsubscribe()
        await venue.aclose()
        await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()
        for spec in namespace.streams():
            await bus.js.delete_stream(spec.name)
        await bus.close()
    order = sorted(placed, key=lambda p: p[0])
    first_flex = next((i for i, (_, e) in enumerate(order) if e.plan is not Plan.PRO), len(order))
    pro_first = all(e.plan is Plan.PRO for _, e in order[:first_flex]) and all(
        e.plan is not Plan.PRO for _, e in order[first_flex:]
    )
    return {"elapsed": elapsed, "requests": requests, "pro_first": pro_first, "cpu": cpu}


async def _requests_seen(admin: SimAdmin) -> int:
    """Requests this process sent to Bybit (every one counts against the per-IP limit)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "marketbot_exchange_request_seconds":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels.get("exchange") == "bybit":
                total += sample.value
    return int(total)


async def run() -> list[dict]:  # type: ignore[type-arg]
    nats_url, database_url = os.environ["NATS_URL"], os.environ["DATABASE_URL"]
    rows: list[dict[str, Any]] = []
    process, urls = start_sim_process(limits=False)
    admin = SimAdmin(urls["bybit"])
    try:
        users = await _users(admin, USERS)
        plans = dict.fromkeys(users, Plan.PRO)
        results = [
            await _round(
                nats_url=nats_url,
                database_url=database_url,
                sim_url=urls["bybit"],
                admin=admin,
                users=users,
                plans=plans,
                limits=False,
            )
            for _ in range(ROUNDS_OFF)
        ]
        times = sorted(r["elapsed"] for r in results)
        median = statistics.median(times)
        cpu_ms = statistics.median(r["cpu"] for r in results) * 1000 / USERS
        per_order = statistics.median(r["requests"] for r in results) / USERS
        spread = ", ".join(f"{t:.2f}" for t in times)
        rows.append(
            {
                "name": f"execution: {USERS} users, one signal, limits off: fan-out published "
                "-> last order acknowledged (median)",
                "value": median,
                "unit": "s",
                "baseline": f"{ROUNDS_OFF} rounds: {spread} s",
                "ratio": None,
            }
        )
        rows.append(
            {
                "name": "execution: orders/s, one executor process (limits off, median)",
                "value": USERS / median,
                "unit": "orders/s",
                "baseline": f"{per_order:.2f} req/order; {cpu_ms:.1f} ms CPU/order in-process",
                "ratio": None,
            }
        )
        # --- limits on: the per-IP floor --------------------------------------------
        await admin.set_limits(True)
        limited = dict(list((await _users(admin, USERS_LIMITED)).items()))
        await admin.set_limits(True)  # counters cleared after creating the users
        names = list(limited)
        mixed = {
            u: Plan.PRO if i % 5 == 0 else Plan.FLEX if i % 5 < 3 else Plan.TRIAL
            for i, u in enumerate(names)
        }
        result = await _round(
            nats_url=nats_url,
            database_url=database_url,
            sim_url=urls["bybit"],
            admin=admin,
            users=limited,
            plans=mixed,
            limits=True,
        )
        budget = bybit.IP_LIMIT / bybit.IP_WINDOW_S
        per_order = 3.0  # wallet-balance, order/create, order/realtime (instrument/ticker cached)
        if result["requests"]:
            per_order = result["requests"] / USERS_LIMITED
        # N requests through a budget of 600 per 5 s (sliding): N / 120 per second.
        floor = USERS_LIMITED * per_order / budget
        rows.append(
            {
                "name": f"execution: {USERS_LIMITED} users, Bybit per-IP limit on, total time",
                "value": result["elapsed"],
                "unit": "s",
                "baseline": f"floor {floor:.2f}s = {USERS_LIMITED} orders x {per_order:.2f} "
                f"req / {budget:.0f} req/s per IP",
                "ratio": result["elapsed"] / floor if floor else None,
            }
        )
        rows.append(
            {
                "name": "execution: every PRO order placed before the first FLEX (limits on)",
                "value": 1.0 if result["pro_first"] else 0.0,
                "unit": "bool",
                "baseline": "1 = yes",
                "ratio": None,
            }
        )
    finally:
        await admin.aclose()
        stop_sim_process(process)
    return rows


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="marketbot-bench-") as tmp:
        if "NATS_URL" not in os.environ or "DATABASE_URL" not in os.environ:
            infra = start_infra(Path(tmp), auth_prefix="*")
            os.environ.setdefault("NATS_URL", infra.nats_url)
            os.environ.setdefault("DATABASE_URL", infra.database_url)
        for row in asyncio.run(run()):
            print(row, file=sys.stdout)
