"""JetStream streams as code, and the bus namespace that prefixes every subject and stream.

A namespace lets many isolated copies of the system share one NATS server: tests give each
test its own prefix, production uses the empty one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from marketbot.contracts.enums import Exchange

KEEP = timedelta(0)
"""A stream ``max_age`` of zero: JetStream keeps the messages with no age limit."""


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
    # The ledger is rebuilt by replaying these streams, so everything it reads is kept
    # (max_age 0 = no age limit); archiving old events is an operations decision.
    StreamSpec("SIGNALS", ("signals.>",), max_age=KEEP, description="SignalReceived"),
    StreamSpec("DECISIONS", ("decisions.>",), max_age=KEEP, description="DecisionMade"),
    StreamSpec(
        "ORDER_REQUESTS",
        ("orders.requested.>",),
        max_age=KEEP,
        description="OrderRequested, one subject per exchange and plan",
    ),
    StreamSpec(
        "ORDER_EVENTS",
        tuple(f"orders.{exchange.value}.>" for exchange in Exchange),
        max_age=KEEP,
        description=(
            "OrderPlaced, OrderFilled, OrderRejected, OrderOutcomeUnknown, PositionReduced, "
            "PositionClosed"
        ),
    ),
    StreamSpec("ACCOUNTS", ("accounts.>",), max_age=KEEP, description="user and plan events"),
    StreamSpec("KEYS", ("keys.>",), max_age=KEEP, description="API key lifecycle"),
    StreamSpec(
        "LEDGER",
        ("ledger.CommissionAccrued", "ledger.OperationStatusChanged"),
        max_age=timedelta(days=30),
        description="ledger outputs for live push (derived: a rebuild recomputes them)",
    ),
    StreamSpec(
        "DEAD_LETTERS",
        ("deadletters.>",),
        max_age=KEEP,
        description="MessageDeadLettered: messages a consumer gave up on, with reason and history",
    ),
)


@dataclass(frozen=True)
class BusNamespace:
    """Prefixes subjects and stream names: ``t1`` gives ``t1.signals.received`` / ``t1_SIGNALS``."""

    prefix: str = ""

    def __post_init__(self) -> None:
        if self.prefix and not self.prefix.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"bus prefix must be alphanumeric (with - or _), got {self.prefix!r}")

    def subject(self, subject: str) -> str:
        return f"{self.prefix}.{subject}" if self.prefix else subject

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
