"""The ledger's own metrics, next to the runtime's per-consumer applied/lag figures."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_PROJECTED = Counter(
    "marketbot_ledger_events_applied_total",
    "Events applied to the ledger projection, by consumer and event type",
    ["consumer", "type"],
)
PROJECTION_LAG_SECONDS = Gauge(
    "marketbot_ledger_projection_lag_seconds",
    "Now minus the occurred_at of the last event a consumer applied",
    ["consumer"],
)
PENDING = Gauge(
    "marketbot_ledger_consumer_pending_messages",
    "Messages in the stream not yet delivered to the ledger's durable consumer",
    ["consumer"],
)
STATUS_CHANGES = Counter(
    "marketbot_ledger_status_changes_total",
    "Operation status changes projected, by the new status",
    ["status"],
)
COMMISSIONS = Counter(
    "marketbot_ledger_commissions_accrued_total",
    "Commissions accrued (or corrected), by plan and currency",
    ["plan", "currency"],
)
