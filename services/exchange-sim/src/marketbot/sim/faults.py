"""Injected faults: latency, 5xx, dropped connections, "executed but answered 5xx", the
late execution (``executed_late``: answered with the venue's timeout error now, executed
``latency_ms`` later) and the slow answer (``executed_slow``: executed at once, answered
``latency_ms`` later, so the order exists before its answer leaves).

A rule matches by method (``None``: any) and path (exact, or a prefix ending in ``*``), so a
fault on ``POST /v5/order/create`` leaves the queries and cancels of the same orders alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

KINDS = (
    "latency",
    "http_5xx",
    "drop",
    "executed_5xx",
    "executed_drop",
    "executed_late",
    "executed_slow",
)
METHODS = ("GET", "POST", "PUT", "DELETE")


@dataclass(slots=True)
class Fault:
    kind: str
    rate: float | None
    next_n: int | None
    latency_ms: int
    path: str | None
    status: int
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and method != self.method:
            return False
        if self.path is None:
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rate": self.rate,
            "next_n": self.next_n,
            "latency_ms": self.latency_ms,
            "path": self.path,
            "status": self.status,
            "method": self.method,
        }


@dataclass(slots=True)
class Decision:
    latency_ms: int = 0
    # http_5xx | drop | executed_5xx | executed_drop | executed_late | executed_slow
    action: str | None = None
    status: int = 503
    execute_after_ms: int = 0
    """executed_late: how long after the timeout answer the order executes."""
    answer_after_ms: int = 0
    """executed_slow: the request is executed at once, its answer sent this much later."""


NO_FAULT = Decision()


class Faults:
    """Rules are checked in the order they were set; ``next_n`` rules expire when used up."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rng = random.Random(seed)
        self.rules: list[Fault] = []

    def add(
        self,
        kind: str,
        *,
        rate: float | None = None,
        next_n: int | None = None,
        latency_ms: int | None = None,
        path: str | None = None,
        status: int = 503,
        method: str | None = None,
    ) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {KINDS}")
        if rate is None and next_n is None:
            raise ValueError("give rate or next_n")
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        if kind in ("latency", "executed_late", "executed_slow") and not latency_ms:
            raise ValueError(f"{kind} needs latency_ms")
        if method is not None and method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}")
        if not 500 <= status <= 599:
            raise ValueError("status must be a 5xx code")
        fault = Fault(kind, rate, next_n, latency_ms or 0, path, status, method)
        self.rules.append(fault)
        return fault

    def clear(self) -> None:
        self.rules.clear()
        self._rng = random.Random(self._seed)

    def decide(self, method: str, path: str) -> Decision:
        if not self.rules:
            return NO_FAULT
        decision = Decision()
        for fault in list(self.rules):
            if not fault.matches(method, path):
                continue
            if fault.kind != "latency" and decision.action is not None:
                continue
            if fault.next_n is not None:
                if fault.next_n <= 0:
                    continue
                fault.next_n -= 1
                if fault.next_n == 0:
                    self.rules.remove(fault)
            elif fault.rate is not None and self._rng.random() >= fault.rate:
                continue
            if fault.kind == "latency":
                decision.latency_ms += fault.latency_ms
            else:
                decision.action = fault.kind
                decision.status = fault.status
                if fault.kind == "executed_late":
                    decision.execute_after_ms = fault.latency_ms
                elif fault.kind == "executed_slow":
                    decision.answer_after_ms = fault.latency_ms
                else:  # e.g. a drop after 3 s: the client's read timeout fires first
                    decision.latency_ms += fault.latency_ms
        return decision
