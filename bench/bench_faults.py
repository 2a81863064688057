"""Fault scenarios at the issue's size: 300 users (150 Bybit, 150 Binance, 50 per plan on
each), one fresh stack per scenario (its own NATS and PostgreSQL), counted against the
simulator's ground truth.

The same scenarios as ``tests/e2e/test_faults.py`` (``faults.SCENARIOS``): the decision
killed mid fan-out, 30 % of creates timing out, 30 % executing late after a timeout, the
simulator's limits at a reduced budget, NATS killed and restarted. Prints one line of counts
per scenario (lost, duplicated, unprotected, bans, stale, the simulator's 429/418/403
answers) and reports the seconds to the last outcome as the figure. The target for every
scenario: 0 lost, 0 duplicated, 0 unprotected, 0 bans, nothing past its maximum age.
``MARKETBOT_BENCH_FAULT_USERS`` and ``MARKETBOT_BENCH_FAULT_SCENARIOS`` (comma-separated
names) narrow or widen a run.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from marketbot.devstack import faults

USERS = int(os.environ.get("MARKETBOT_BENCH_FAULT_USERS", "300"))
WANTED = [s for s in os.environ.get("MARKETBOT_BENCH_FAULT_SCENARIOS", "").split(",") if s.strip()]


async def one_scenario(name: str) -> faults.Counts:
    with tempfile.TemporaryDirectory(prefix=f"bench-faults-{name}-") as tmp:
        async with faults.FaultStack(Path(tmp)) as harness:
            users = faults.population(USERS, f"b{name[:6]}")
            await faults.seed(harness.demo, users)
            await faults.settled(harness.bus)
            return await faults.run(harness, faults.SCENARIOS[name], users, "ETHUSDT")


async def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in WANTED or list(faults.SCENARIOS):
        counts = await one_scenario(name)
        print(counts.line())
        rows.append(
            {
                "name": f"faults: {name}, {counts.users} users",
                "value": counts.seconds,
                "unit": "s",
                "baseline": (
                    f"{'MET' if counts.target_met() else 'MISSED'}: lost {counts.lost}, "
                    f"duplicated {counts.duplicated}, unprotected {counts.unprotected}, bans "
                    f"{counts.bans}, stale {counts.stale}, past max age {counts.late}, "
                    f"429 {counts.limit_answers.get('429', 0)}"
                ),
                "ratio": None,
            }
        )
    return rows


if __name__ == "__main__":
    for row in asyncio.run(run()):
        print(row)
    sys.exit(0)
