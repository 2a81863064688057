"""The platform's status, read from each service's health server (``/readyz``, ``/metrics``).

Pure: takes the texts a scrape returned and picks the few gauges an operator reads first
(breaker states, rate-limit headroom, unknown order outcomes, ledger lag). The metric names
are the ones the services export (libs/exchanges/.../metrics.py, libs/execution/.../metrics.py,
services/ledger/.../metrics.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

BREAKER = "marketbot_exchange_breaker_state"
HEADROOM = "marketbot_exchange_rate_limit_headroom_ratio"
BANNED = "marketbot_exchange_ip_banned"
UNKNOWN = "marketbot_execution_unknown_outcomes_open"
LEDGER_LAG = "marketbot_ledger_projection_lag_seconds"
LEDGER_PENDING = "marketbot_ledger_consumer_pending_messages"
WANTED = (BREAKER, HEADROOM, BANNED, UNKNOWN, LEDGER_LAG, LEDGER_PENDING)
BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def samples(exposition: str) -> list[Sample]:
    """The wanted gauges of a Prometheus text exposition (anything unreadable is skipped)."""
    found: list[Sample] = []
    try:
        for family in text_string_to_metric_families(exposition):
            if family.name not in WANTED:
                continue
            for sample in family.samples:
                if sample.name == family.name:
                    found.append(Sample(sample.name, dict(sample.labels), float(sample.value)))
    except ValueError:
        return found
    return found


@dataclass
class ServiceStatus:
    name: str
    ready: bool
    checks: dict[str, bool] = field(default_factory=dict)
    error: str | None = None


@dataclass
class PlatformStatus:
    services: list[ServiceStatus] = field(default_factory=list)
    breakers: list[dict[str, Any]] = field(default_factory=list)
    rate_limits: list[dict[str, Any]] = field(default_factory=list)
    unknown_outcomes: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)

    def add_metrics(self, service: str, exposition: str) -> None:
        by_consumer: dict[str, dict[str, Any]] = {}
        for s in samples(exposition):
            if s.name == BREAKER:
                self.breakers.append(
                    {
                        "service": service,
                        "exchange": s.labels.get("exchange"),
                        "endpoint": s.labels.get("endpoint"),
                        "state": BREAKER_STATES.get(int(s.value), str(s.value)),
                    }
                )
            elif s.name == HEADROOM:
                self.rate_limits.append(
                    {
                        "service": service,
                        "exchange": s.labels.get("exchange"),
                        "bucket": s.labels.get("bucket"),
                        "headroom": round(s.value, 4),
                    }
                )
            elif s.name == BANNED and s.value:
                self.breakers.append(
                    {"service": service, "exchange": s.labels.get("exchange"), "state": "banned"}
                )
            elif s.name == UNKNOWN:
                self.unknown_outcomes.append(
                    {"service": service, "exchange": s.labels.get("exchange"), "open": int(s.value)}
                )
            elif s.name in (LEDGER_LAG, LEDGER_PENDING):
                consumer = s.labels.get("consumer", "")
                entry = by_consumer.setdefault(consumer, {"service": service, "consumer": consumer})
                key = "lag_seconds" if s.name == LEDGER_LAG else "pending"
                entry[key] = round(s.value, 3) if key == "lag_seconds" else int(s.value)
        self.ledger.extend(by_consumer.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "ready": all(s.ready for s in self.services),
            "services": [
                {"name": s.name, "ready": s.ready, "checks": s.checks, "error": s.error}
                for s in self.services
            ],
            "breakers": self.breakers,
            "rate_limits": self.rate_limits,
            "unknown_outcomes": self.unknown_outcomes,
            "ledger": self.ledger,
        }
