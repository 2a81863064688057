"""The crash suite's infrastructure kills at the issue's scale: 1,000 users.

Runs ``tests/e2e/test_crashes.py`` (its own 3-node NATS cluster with R3 streams and its own
PostgreSQL) with ``MARKETBOT_CRASH_USERS`` (default 1,000) for the scenarios that kill
NATS and PostgreSQL in the middle of the fan-out, and reports what each run printed: lost
and duplicated orders against the simulator's ground truth (both must be 0; the baseline).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
USERS = os.environ.get("MARKETBOT_BENCH_CRASH_USERS", "1000")
SCENARIOS = "one_nats_node or whole_nats_cluster or postgres_killed"
LINE = re.compile(
    r"^(?P<what>.+): (?P<users>\d+) users, filled (?P<filled>\d+), rejected (?P<rejected>.+), "
    r"lost (?P<lost>\d+), duplicated (?P<dup>\d+)$"
)


async def run() -> list[dict[str, Any]]:
    env = {**os.environ, "MARKETBOT_CRASH_USERS": USERS}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "tests/e2e/test_crashes.py",
        "-q",
        "-s",
        "-n",
        "0",
        "-p",
        "no:cacheprovider",
        "-o",
        "timeout=1800",
        "-k",
        SCENARIOS,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    seconds = time.monotonic() - started
    text = output.decode(errors="replace")
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        match = LINE.match(line.strip())
        if match:
            for kind, label in (("lost", "lost"), ("dup", "duplicated"), ("filled", "filled")):
                rows.append(
                    {
                        "name": f"crash {match['what']} ({match['users']} users): {label}",
                        "value": float(match[kind]),
                        "unit": "orders",
                        "baseline": "0 (ground truth on the simulator)"
                        if kind != "filled"
                        else f"{match['users']} (rejected: {match['rejected']})",
                        "ratio": None,
                    }
                )
    if process.returncode != 0 or not rows:
        raise RuntimeError(f"the crash suite failed after {seconds:.0f}s:\n{text[-4000:]}")
    rows.append(
        {
            "name": "crash suite wall time (NATS node, NATS cluster, PostgreSQL kills)",
            "value": seconds,
            "unit": "s",
            "baseline": "",
            "ratio": None,
        }
    )
    return rows
