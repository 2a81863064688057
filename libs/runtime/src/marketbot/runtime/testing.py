"""Pytest plugin shared by every package's tests (loaded with ``-p marketbot.runtime.testing``).

Session fixtures for the embedded NATS and PostgreSQL land here (see infra.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import asyncpg
import pytest

from marketbot.contracts import BusNamespace
from marketbot.runtime.bus import Bus
from marketbot.runtime.db import create_pool
from marketbot.runtime.infra import Infra, start_infra
from marketbot.runtime.logs import configure_logging
from marketbot.runtime.natsauth import ANY_PREFIX

T = TypeVar("T")


async def eventually(
    condition: Callable[[], Awaitable[T] | T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition never became true",
) -> T:
    """Poll ``condition`` until it returns a truthy value; never a bare sleep in tests."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        last = result
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)


# --- fixtures: one embedded NATS + PostgreSQL per test session (per xdist worker) ---------
# A test gets its own bus namespace (stream prefix) and its own database schema, so tests
# never see each other's data while sharing the two servers.


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """NATS_URL / DATABASE_URL when set, else embedded servers started for this session.

    The embedded NATS runs with authentication and the generated permissions, rendered for
    any bus prefix (each test has its own); ``nats_url`` is the operator's (the harness).
    """
    data_dir = tmp_path_factory.mktemp("infra")
    started = start_infra(data_dir, durable=False, auth_prefix=ANY_PREFIX)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def nats_url(infra: Infra) -> str:
    return infra.nats_url


@pytest.fixture(scope="session")
def database_url(infra: Infra) -> str:
    return infra.database_url


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def bus_namespace() -> BusNamespace:
    return BusNamespace(unique_name("t"))


@pytest.fixture
async def bus(nats_url: str, bus_namespace: BusNamespace) -> AsyncIterator[Bus]:
    """A connected bus whose streams exist under this test's own prefix."""
    connected = await Bus.connect(nats_url, "test", bus_namespace)
    await connected.provision()
    try:
        yield connected
    finally:
        for spec in bus_namespace.streams():
            with contextlib.suppress(Exception):
                await connected.js.delete_stream(spec.name)
        await connected.close()


@pytest.fixture
def pg_schema() -> str:
    return unique_name("test_")


@pytest.fixture
async def pg_pool(database_url: str, pg_schema: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh schema, dropped after the test."""
    pool = await create_pool(database_url, pg_schema, max_size=5)
    try:
        yield pool
    finally:
        with contextlib.suppress(Exception):
            await pool.execute(f'DROP SCHEMA IF EXISTS "{pg_schema}" CASCADE')
        await pool.close()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Configure JSON logging into a buffer the test can read."""
    buffer = io.StringIO()
    configure_logging("test", "DEBUG", stream=buffer)
    try:
        yield buffer
    finally:
        configure_logging("test", "INFO")


REPORT_PROPERTY = "report_line"
"""``record_property(REPORT_PROPERTY, text)`` in a test: the line is printed at the end of
the run (also under xdist, where a worker's stdout is not shown), e.g. a scenario's counts."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        str(value)
        for outcome in ("passed", "failed", "xfailed")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "when", "call") == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == REPORT_PROPERTY
    ]
    if lines:
        terminalreporter.section("reported by the tests")
        for line in lines:
            terminalreporter.line(line)
