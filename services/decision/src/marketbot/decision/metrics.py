"""Prometheus metrics of the decision service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DECISIONS = Counter("marketbot_decision_decisions_total", "Decisions made, by action", ["action"])
CONFIDENCE = Histogram(
    "marketbot_decision_confidence",
    "Confidence of each decision (0-100)",
    buckets=(10, 20, 30, 40, 50, 60, 70, 80, 90, 100),
)
PROVIDER_SECONDS = Histogram(
    "marketbot_decision_provider_seconds",
    "Time of one market-data fetch, by provider (cache hits excluded)",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
PROVIDER_ERRORS = Counter(
    "marketbot_decision_provider_errors_total",
    "Market-data fetches that failed, by provider and kind (timeout, http, parse, exchange)",
    ["provider", "kind"],
)
PROVIDER_READS = Counter(
    "marketbot_decision_provider_reads_total",
    "Market-data reads, by provider and what was served (fresh, cached, stale, missing)",
    ["provider", "status"],
)
PROVIDER_STALENESS = Gauge(
    "marketbot_decision_provider_staleness_seconds",
    "Age of the value last served by each provider",
    ["provider"],
)
TICKER_FALLBACKS = Counter(
    "marketbot_decision_ticker_fallbacks_total",
    "Ticker reads served by a fallback exchange, by the exchange that failed",
    ["failed"],
)
FANOUT_SIZE = Histogram(
    "marketbot_decision_fanout_size",
    "OrderRequested published per decision",
    buckets=(0, 1, 10, 100, 1000, 5000, 10_000, 50_000, 100_000),
)
FANOUT_SECONDS = Histogram(
    "marketbot_decision_fanout_seconds",
    "Time from loading the eligible users to the last OrderRequested acknowledged",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
FANOUTS = Counter(
    "marketbot_decision_fanouts_total",
    "Decisions handled by the fan-out, by outcome (published, hold, already_done, failed)",
    ["outcome"],
)
