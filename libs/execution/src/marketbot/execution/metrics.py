"""Executor metrics (Prometheus, default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ORDERS = Counter(
    "marketbot_execution_orders_total",
    "Order outcomes by exchange, plan and outcome (placed, filled, rejected, stale, closed, "
    "reduced: part of a position sold)",
    ["exchange", "plan", "outcome"],
)
ACK_LATENCY = Histogram(
    "marketbot_execution_signal_to_ack_seconds",
    "From the request's requested_at to the exchange's acknowledgement, by plan",
    ["exchange", "plan"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120),
)
QUEUE_DEPTH = Gauge(
    "marketbot_execution_queue_depth",
    "Requests waiting or in flight per tier (consumer pending + ack pending)",
    ["exchange", "plan"],
)
UNKNOWN_OPEN = Gauge(
    "marketbot_execution_unknown_outcomes_open",
    "Orders sent whose outcome is not yet resolved",
    ["exchange"],
)
RECONCILIATIONS = Counter(
    "marketbot_execution_reconciliations_total",
    "Lookups of an order by client id after an unknown outcome or a redelivery, by result",
    ["exchange", "result"],
)
PAUSES = Counter(
    "marketbot_execution_pauses_total",
    "Times the executor paused sending (ban, rate limit, open breaker), by cause",
    ["exchange", "cause"],
)
OPEN_POSITIONS = Gauge(
    "marketbot_execution_positions_tracked", "Open positions being tracked", ["exchange"]
)
UNPROTECTED = Gauge(
    "marketbot_execution_positions_unprotected",
    "Open positions whose exit legs are not confirmed working on the exchange",
    ["exchange"],
)
PROTECT_FAILURES = Counter(
    "marketbot_execution_protect_failures_total",
    "Protect attempts the exchange refused (the position stays UNPROTECTED and is retried)",
    ["exchange", "cause"],
)
STREAM_LAG = Histogram(
    "marketbot_execution_stream_lag_seconds",
    "From the exchange's time of a fill (or order event) to its report arriving on the stream",
    ["exchange"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STREAM_REPORTS = Counter(
    "marketbot_execution_stream_reports_total",
    "Private-stream reports handled, by kind (order, trade, balance, price) and effect",
    ["exchange", "kind", "effect"],
)
STREAM_CORRECTIONS = Counter(
    "marketbot_execution_stream_corrections_total",
    "What REST reconciliation found that the streams had not reported (an order or exit "
    "leg that moved on meanwhile); 0 while the streams deliver everything",
    ["exchange", "kind"],
)
STREAM_RECONCILIATIONS = Counter(
    "marketbot_execution_stream_reconciliations_total",
    "REST reconciliations of one account's orders and positions, by cause (start, reconnect)",
    ["exchange", "cause"],
)
BALANCE_READS = Counter(
    "marketbot_execution_balance_reads_total",
    "Balances used to size an order, by source (stream: kept current by the wallet stream; "
    "snapshot: kept from before a restart or reconnect, until its background refresh; rest: "
    "read from the exchange because no usable snapshot exists)",
    ["exchange", "source"],
)
BALANCE_REFRESH_PENDING = Gauge(
    "marketbot_execution_balance_refresh_pending",
    "Accounts whose balance snapshot waits for its background REST refresh (after a "
    "restart or reconnect; paced under half of the per-IP budget)",
    ["exchange"],
)
HANDED_OFF = Counter(
    "marketbot_execution_unknown_outcomes_total",
    "Orders whose outcome became unknown (timeout, 5xx, lost answer) and were handed to the "
    "reconciler, by plan",
    ["exchange", "plan"],
)
UNKNOWN_RESOLVED = Counter(
    "marketbot_execution_unknown_resolved_total",
    "Unknown outcomes the reconciler ended, by result: found (recorded as the exchange "
    "reports it), resent (not found after its settle time, sent again), expired (not found, "
    "too old to send again: rejected STALE)",
    ["exchange", "result"],
)
UNKNOWN_RESOLUTION = Histogram(
    "marketbot_execution_unknown_resolution_seconds",
    "From an order's outcome becoming unknown to the reconciler's lookup that resolved it",
    ["exchange"],
    buckets=(0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120),
)
