"""Faults injected into a 300-user fan-out over every plan on both exchanges (issue 18).

Each scenario runs on a fresh stack of its own (``faults.FaultStack``: its own NATS and
database, the simulator, every service, executors with a 2 s read timeout) and is counted
against the simulator's ground truth; the counts are printed at the end of the run. Each
test is its own xdist group, so ``make test`` (``--dist loadgroup``) spreads them over the
workers. ``MARKETBOT_FAULT_TEST_USERS`` changes the population (default 300: 150 Bybit,
150 Binance, 50 per plan on each); ``bench/bench_faults.py`` runs the same scenarios.

The target for every scenario: 0 lost, 0 duplicated, 0 unprotected, 0 bans, and every
order placed or rejected with its reason before its maximum age.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from marketbot.devstack import faults
from marketbot.runtime.infra import Infra
from marketbot.runtime.testing import REPORT_PROPERTY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

USERS = int(os.environ.get("MARKETBOT_FAULT_TEST_USERS", "300"))


async def run_scenario(
    infra: Infra,
    tmp_path: Path,
    scenario: faults.Scenario,
    record: Callable[[str, object], None],
) -> faults.Counts:
    # its own NATS; its own database on the worker's PostgreSQL server
    async with faults.FaultStack(tmp_path, postgres_url=infra.database_url) as harness:
        users = faults.population(USERS, f"{scenario.name[:6]}{uuid.uuid4().hex[:4]}")
        await faults.seed(harness.demo, users)
        await faults.settled(harness.bus)
        counts = await faults.run(harness, scenario, users, "ETHUSDT")
    print(counts.line())
    record(REPORT_PROPERTY, counts.line())  # printed at the end of the run, also under xdist
    return counts


def assert_target(counts: faults.Counts) -> None:
    """0 lost, 0 duplicated, 0 unprotected, 0 bans; every outcome before its maximum age."""
    assert counts.requested == counts.users, counts.line()
    assert counts.lost == 0, (counts.line(), counts.lost_users)
    assert counts.mismatched == 0, counts.line()
    assert counts.duplicated == 0, counts.line()
    assert counts.unprotected == 0, (counts.line(), counts.unprotected_users)
    assert counts.bans == 0, counts.line()
    assert counts.late == 0, counts.line()
    assert counts.target_met(), counts.line()


@pytest.mark.xdist_group("faults-decision")
async def test_decision_killed_mid_fan_out(
    infra: Infra, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    counts = await run_scenario(
        infra, tmp_path, faults.SCENARIOS["decision_killed"], record_property
    )
    assert_target(counts)
    assert counts.stale == 0, (counts.line(), counts.stale_messages)


@pytest.mark.xdist_group("faults-timeouts")
async def test_30_percent_of_creates_timing_out(
    infra: Infra, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    counts = await run_scenario(
        infra, tmp_path, faults.SCENARIOS["create_timeouts"], record_property
    )
    assert_target(counts)
    assert counts.unknown_events > 0, "the fault never fired: nothing was tested"


@pytest.mark.xdist_group("faults-late")
async def test_30_percent_of_creates_executing_late_after_a_timeout(
    infra: Infra, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    counts = await run_scenario(
        infra, tmp_path, faults.SCENARIOS["late_execution"], record_property
    )
    # Protection included: an entry found by lookup after an unknown outcome is sized from
    # its trade records (fees in the asset charged), then protected like any other.
    assert_target(counts)
    assert counts.late_executions > 0, "no create executed late: nothing was tested"


@pytest.mark.xdist_group("faults-limits")
async def test_the_simulators_limits_at_a_reduced_budget(
    infra: Infra, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    # Half the documented Binance weight (3,000 a minute, not 6,000), 2 Bybit creates a
    # second per UID, half Bybit's per-IP limit. The bench runs 1,500 a minute, where 150
    # Binance orders (about 22 weight each: account, order, OCO) no longer fit in their
    # 120 s and some are rejected STALE, each with the budget as the reason.
    scenario = faults.reduced_limits(3000)
    counts = await run_scenario(infra, tmp_path, scenario, record_property)
    assert_target(counts)
    assert counts.most_429_in_a_minute <= 1, counts.line()


@pytest.mark.xdist_group("faults-nats")
async def test_nats_killed_and_restarted(
    infra: Infra, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    counts = await run_scenario(infra, tmp_path, faults.SCENARIOS["nats_killed"], record_property)
    assert_target(counts)
    assert counts.resumed_after_s is not None, counts.line()
