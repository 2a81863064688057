"""JetStream streams as code, and the bus namespace that prefixes every subject and stream.

A namespace lets many isolated copies of the system share one NATS server: tests give each
test its own prefix, production uses the empty one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class Retention(StrEnum):
    LIMITS = "limits"
    INTEREST = "interest"
    WORK_QUEUE = "workqueue"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: Retention = Retention.LIMITS
    max_age: timedelta = timedelta(days=30)
    duplicate_window: timedelta = timedelta(minutes=10)
    replicas: int = 1
    description: str = ""


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec("SIGNALS", ("signals.>",), description="SignalReceived from the gateway"),
    StreamSpec("DECISIONS", ("decisions.>",), description="DecisionMade"),
    StreamSpec(
        "ORDER_REQUESTS",
        ("orders.requested.>",),
        # Order requests go stale in minutes; the window covers every redelivery of a signal.
        max_age=timedelta(days=7),
        description="OrderRequested, one subject per exchange and plan",
    ),
    StreamSpec(
        "ORDER_EVENTS",
        ("orders.bybit.>", "orders.binance.>"),
        description="OrderPlaced, OrderFilled, OrderRejected, OrderOutcomeUnknown, PositionClosed",
    ),
    StreamSpec(
        "ACCOUNTS", ("accounts.>",), max_age=timedelta(0), description="user and plan events"
    ),
    StreamSpec("KEYS", ("keys.>",), max_age=timedelta(0), description="API key lifecycle"),
    StreamSpec(
        "LEDGER",
        ("ledger.CommissionAccrued", "ledger.OperationStatusChanged"),
        description="ledger outputs for live push",
    ),
)
"""max_age 0 keeps events forever: account and key streams are the source for projections."""


@dataclass(frozen=True)
class BusNamespace:
    """Prefixes subjects and stream names: ``t1`` gives ``t1.signals.received`` / ``t1_SIGNALS``."""

    prefix: str = ""

    def __post_init__(self) -> None:
        if self.prefix and not self.prefix.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"bus prefix must be alphanumeric (with - or _), got {self.prefix!r}")

    def subject(self, subject: str) -> str:
        return f"{self.prefix}.{subject}" if self.prefix else subject

    def unprefixed(self, subject: str) -> str:
        if self.prefix and subject.startswith(self.prefix + "."):
            return subject[len(self.prefix) + 1 :]
        return subject

    def stream(self, name: str) -> str:
        return f"{self.prefix}_{name}".replace("-", "_") if self.prefix else name

    def durable(self, name: str) -> str:
        return f"{self.prefix}_{name}".replace("-", "_") if self.prefix else name

    def streams(self) -> tuple[StreamSpec, ...]:
        return tuple(
            StreamSpec(
                name=self.stream(s.name),
                subjects=tuple(self.subject(x) for x in s.subjects),
                retention=s.retention,
                max_age=s.max_age,
                duplicate_window=s.duplicate_window,
                replicas=s.replicas,
                description=s.description,
            )
            for s in STREAMS
        )
