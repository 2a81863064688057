from __future__ import annotations

import io
import sys

import pytest

from marketbot.devstack.supervisor import ProcessSpec, Supervisor, SupervisorError, condense


async def test_processes_are_prefixed_and_stopped_in_reverse_order() -> None:
    out = io.StringIO()
    supervisor = Supervisor(out=out, colour=False)
    script = (
        "import json, signal, sys, time\n"
        "print(json.dumps({'level': 'info', 'event': 'hello', 'correlation_id': 's1'}))\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('bye'), sys.exit(0)))\n"
        "time.sleep(30)\n"
    )
    await supervisor.start(ProcessSpec("alpha", [sys.executable, "-c", script]))
    await supervisor.start(ProcessSpec("beta", [sys.executable, "-c", script]))
    import asyncio

    for _ in range(100):
        if out.getvalue().count("hello") == 2:
            break
        await asyncio.sleep(0.05)
    await supervisor.stop()
    text = out.getvalue()
    assert "alpha           | INFO hello correlation_id=s1" in text
    assert "beta            | bye" in text
    assert supervisor.names == []


async def test_a_process_that_dies_before_ready_is_reported_with_its_output() -> None:
    supervisor = Supervisor(out=io.StringIO())
    spec = ProcessSpec(
        "broken",
        [sys.executable, "-c", "print('cannot start: no config'); raise SystemExit(3)"],
        ready_url="http://127.0.0.1:9/readyz",
        ready_timeout=10,
    )
    with pytest.raises(SupervisorError, match="cannot start: no config"):
        await supervisor.start(spec)
    await supervisor.stop()


def test_condense_keeps_what_a_person_reads() -> None:
    line = '{"level": "warning", "event": "order rejected", "user_id": "u1", "x": 1}'
    assert condense(line) == "WARN order rejected user_id=u1"
    assert condense("plain text") == "plain text"
