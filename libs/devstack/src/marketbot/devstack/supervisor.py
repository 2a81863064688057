"""A small process supervisor: start services in order, prefix their logs, stop them cleanly.

Each process gets a name; every line it prints is shown as ``name | line`` (JSON log lines are
condensed to the fields a person reads). Readiness is an HTTP GET answering 200 (the
service's ``/readyz``). ``stop`` sends SIGTERM in reverse start order, waits, then kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

COLOURS = ("36", "33", "35", "32", "34", "31", "96", "93", "95")
KEEP = ("level", "event", "correlation_id", "symbol", "action", "user_id", "status", "error")


class SupervisorError(RuntimeError):
    pass


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    """GET this until it answers 200; None = ready once started."""
    ready_timeout: float = 60.0


@dataclass
class Running:
    spec: ProcessSpec
    process: asyncio.subprocess.Process
    pump: asyncio.Task[None]
    lines: list[str] = field(default_factory=list)


def condense(line: str) -> str:
    """Make a JSON log line readable; anything else passes through."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return line
    if not isinstance(record, dict):
        return line
    parts = [str(record.get("level", "")).upper()[:4], str(record.get("event", ""))]
    parts += [f"{k}={record[k]}" for k in KEEP[2:] if k in record]
    return " ".join(p for p in parts if p)


class Supervisor:
    def __init__(
        self,
        *,
        out: TextIO | None = None,
        log_dir: Path | None = None,
        quiet: bool = False,
        colour: bool | None = None,
        keep_lines: int = 2000,
    ) -> None:
        self._out = out or sys.stdout
        self._log_dir = log_dir
        self._quiet = quiet
        self._colour = self._out.isatty() if colour is None else colour
        self._keep = keep_lines
        self._running: list[Running] = []
        self.on_line: Callable[[str, str], None] | None = None

    @property
    def names(self) -> list[str]:
        return [r.spec.name for r in self._running]

    def process(self, name: str) -> Running:
        for running in self._running:
            if running.spec.name == name:
                return running
        raise KeyError(name)

    async def start(self, spec: ProcessSpec) -> Running:
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        colour = COLOURS[len(self._running) % len(COLOURS)]
        running = Running(spec, process, asyncio.create_task(asyncio.sleep(0)))
        running.pump = asyncio.create_task(self._pump(running, colour))
        self._running.append(running)
        if spec.ready_url:
            await self._wait_ready(running)
        return running

    async def _pump(self, running: Running, colour: str) -> None:
        assert running.process.stdout is not None
        log_file = None
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            log_file = open(self._log_dir / f"{running.spec.name}.log", "a")  # noqa: SIM115, ASYNC230
        try:
            while True:
                raw = await running.process.stdout.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\n")
                running.lines.append(line)
                del running.lines[: -self._keep]
                if log_file is not None:
                    log_file.write(line + "\n")
                    log_file.flush()
                if self.on_line is not None:
                    self.on_line(running.spec.name, line)
                if not self._quiet:
                    name = running.spec.name.ljust(16)
                    prefix = f"\x1b[{colour}m{name}|\x1b[0m" if self._colour else f"{name}|"
                    self._out.write(f"{prefix} {condense(line)}\n")
                    self._out.flush()
        finally:
            if log_file is not None:
                log_file.close()

    async def _wait_ready(self, running: Running) -> None:
        spec = running.spec
        assert spec.ready_url is not None
        deadline = time.monotonic() + spec.ready_timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if running.process.returncode is not None:
                    # the exit can be seen before the output is read: drain it first
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(running.pump), timeout=2)
                    tail = "\n".join(running.lines[-30:])
                    raise SupervisorError(
                        f"{spec.name} exited with {running.process.returncode}:\n{tail}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(spec.ready_url)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        tail = "\n".join(running.lines[-30:])
        raise SupervisorError(f"{spec.name} not ready within {spec.ready_timeout}s:\n{tail}")

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Stop one process abruptly (for failure tests); it stays in the list, dead."""
        running = self.process(name)
        if running.process.returncode is None:
            running.process.send_signal(sig)
            await running.process.wait()

    async def restart(self, name: str) -> Running:
        return await self.replace(self.process(name).spec)

    async def replace(self, spec: ProcessSpec) -> Running:
        """Stop the process named ``spec.name`` and start ``spec`` in its place."""
        running = self.process(spec.name)
        await self.kill(spec.name, signal.SIGTERM)
        self._running.remove(running)
        return await self.start(spec)

    async def stop(self, timeout: float = 15.0) -> None:
        for running in reversed(self._running):
            if running.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    running.process.send_signal(signal.SIGTERM)
        for running in reversed(self._running):
            try:
                await asyncio.wait_for(running.process.wait(), timeout=timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    running.process.kill()
                await running.process.wait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running.pump, timeout=2)
        self._running.clear()
