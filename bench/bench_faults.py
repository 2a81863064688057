"""Fault scenarios at the issue's size: 300 users (150 Bybit, 150 Binance, 50 per plan on
each), one fresh stack per scenario, counted against the simulator's ground truth.

Prints one line of counts per scenario (lost, duplicated, unprotected, bans, stale, the
simulator's 429/418/403 answers) and reports the seconds to the last outcome as the figure.
The target for every scenario: 0 lost, 0 duplicated, 0 unprotected, 0 bans, nothing past
its maximum age. ``MARKETBOT_BENCH_FAULT_USERS`` and ``MARKETBOT_BENCH_FAULT_SCENARIOS``
(comma-separated names) narrow a run.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx

from marketbot.contracts import BusNamespace
from marketbot.devstack import faults
from marketbot.devstack.demo import Demo
from marketbot.devstack.stack import Stack, StackConfig
from marketbot.devstack.supervisor import Supervisor
from marketbot.runtime.bus import Bus
from marketbot.runtime.infra import start_infra
from marketbot.runtime.natsauth import CREDENTIALS_ENV, NatsAuth, strip_userinfo
from marketbot.sim.admin import SimAdmin

USERS = int(os.environ.get("MARKETBOT_BENCH_FAULT_USERS", "300"))
WANTED = [s for s in os.environ.get("MARKETBOT_BENCH_FAULT_SCENARIOS", "").split(",") if s.strip()]


async def one_scenario(name: str, nats_url: str, database_url: str) -> faults.Counts:
    with tempfile.TemporaryDirectory(prefix=f"bench-faults-{name}-") as tmp:
        prefix = f"bf{uuid.uuid4().hex[:6]}"
        # the services run as themselves (their own nkey); the harness as the operator
        creds = os.environ.get(CREDENTIALS_ENV)
        auth = NatsAuth.load(Path(creds)) if creds else None
        config = StackConfig(
            data_dir=Path(tmp),
            nats_url=nats_url,
            nats_server_url=strip_userinfo(nats_url),
            nats_seeds=dict(auth.seeds) if auth else {},
            database_url=database_url,
            bus_prefix=prefix,
            log_level="WARNING",
            extra_env={
                "signal-gateway": {"MARKETBOT_GATEWAY_RATE_LIMIT_PER_SECOND": "0"},
                **faults.EXECUTOR_ENV,
            },
        )
        stack = Stack(config, Supervisor(log_dir=Path(tmp) / "logs", quiet=True))
        urls = await stack.start()
        bus = await Bus.connect(nats_url, "bench-faults", BusNamespace(prefix))
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32)) as http:
            sims = {
                "bybit": SimAdmin(urls.sim.bybit, client=http),
                "binance": SimAdmin(urls.sim.binance, client=http),
                "market": SimAdmin(urls.sim.market, client=http),
            }
            demo = Demo(urls.gateway, config.admin_token, sims, http)
            harness = faults.Harness(
                demo, bus, sims, config.webhook_source, config.webhook_token, restart=stack.restart
            )
            try:
                await demo.set_bullish_market()
                users = faults.population(USERS, f"b{name[:6]}")
                await faults.seed(demo, users)
                await faults.settled(bus)
                return await faults.run(harness, faults.SCENARIOS[name], users, "ETHUSDT")
            finally:
                await bus.close()
                await stack.stop()


async def run() -> list[dict[str, Any]]:
    nats_url, database_url = os.environ["NATS_URL"], os.environ["DATABASE_URL"]
    rows: list[dict[str, Any]] = []
    for name in WANTED or list(faults.SCENARIOS):
        counts = await one_scenario(name, nats_url, database_url)
        print(counts.line())
        target = (
            counts.lost == 0
            and counts.duplicated == 0
            and counts.unprotected == 0
            and counts.bans == 0
            and counts.late == 0
        )
        rows.append(
            {
                "name": f"faults: {name}, {counts.users} users",
                "value": counts.seconds,
                "unit": "s",
                "baseline": (
                    f"{'MET' if target else 'MISSED'}: lost {counts.lost}, duplicated "
                    f"{counts.duplicated}, unprotected {counts.unprotected}, bans "
                    f"{counts.bans}, stale {counts.stale}, past max age {counts.late}, "
                    f"429 {counts.limit_answers.get('429', 0)}"
                ),
                "ratio": None,
            }
        )
    return rows


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        infra = start_infra(Path(tmp), auth_prefix="*")
        os.environ.setdefault("NATS_URL", infra.nats_url)
        os.environ.setdefault(CREDENTIALS_ENV, str(infra.credentials_path or ""))
        os.environ.setdefault("DATABASE_URL", infra.database_url)
        try:
            for row in asyncio.run(run()):
                print(row)
        finally:
            infra.stop()
    sys.exit(0)
