"""Pytest plugin: ``pytest_plugins = ["marketbot.sim.testing"]``.

``sim`` (session) runs the real CLI in a subprocess on free ports, limits ON. Tests should make
their own accounts (``await sim.bybit_admin.create_account()``), which keeps them independent
without a reset; ``sim_reset`` (function) resets all three ports for tests that need a clean
exchange (prices back to the seed, faults cleared, limit counters cleared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from marketbot.sim.admin import SimAdmin


@dataclass
class RunningSim:
    bybit_url: str
    binance_url: str
    market_url: str
    bybit_admin: SimAdmin
    binance_admin: SimAdmin
    market_admin: SimAdmin
    process: subprocess.Popen[bytes]

    async def reset(self) -> None:
        await self.bybit_admin.reset()
        await self.binance_admin.reset()
        await self.market_admin.reset()


def start_sim_process(
    *, seed: int = 42, limits: bool = True, extra: list[str] | None = None, timeout: float = 20.0
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start ``python -m marketbot.sim`` and wait for its ready file."""
    ready = Path(tempfile.mkdtemp(prefix="marketbot-sim-")) / "ready.json"
    command = [
        sys.executable,
        "-m",
        "marketbot.sim",
        "--host",
        "127.0.0.1",
        "--seed",
        str(seed),
        "--ready-file",
        str(ready),
    ]
    if not limits:
        command.append("--no-limits")
    command.extend(extra or [])
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ)
    )
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"marketbot-sim exited with {process.returncode}: {stderr}")
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError("marketbot-sim did not become ready")
        time.sleep(0.02)
    return process, json.loads(ready.read_text())


def stop_sim_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def sim_process() -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    process, urls = start_sim_process()
    yield process, urls
    stop_sim_process(process)


@pytest_asyncio.fixture(scope="session")
async def sim(
    sim_process: tuple[subprocess.Popen[bytes], dict[str, str]],
) -> AsyncIterator[RunningSim]:
    process, urls = sim_process
    running = RunningSim(
        bybit_url=urls["bybit"],
        binance_url=urls["binance"],
        market_url=urls["market"],
        bybit_admin=SimAdmin(urls["bybit"]),
        binance_admin=SimAdmin(urls["binance"]),
        market_admin=SimAdmin(urls["market"]),
        process=process,
    )
    yield running
    for admin in (running.bybit_admin, running.binance_admin, running.market_admin):
        await admin.aclose()


@pytest_asyncio.fixture
async def sim_reset(sim: RunningSim) -> AsyncIterator[RunningSim]:
    await sim.reset()
    yield sim
