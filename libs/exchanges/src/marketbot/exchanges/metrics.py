"""Prometheus metrics of the exchange clients (metric objects, not clients: no I/O here)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUEST_LATENCY = Histogram(
    "marketbot_exchange_request_seconds",
    "Latency of exchange HTTP requests (method + endpoint: Binance weighs GET and POST apart)",
    ["exchange", "method", "endpoint", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RATE_LIMIT_HEADROOM = Gauge(
    "marketbot_exchange_rate_limit_headroom_ratio",
    "Fraction of a rate-limit budget still free (1 = idle, 0 = at the limit)",
    ["exchange", "bucket"],
)
RATE_LIMIT_WAIT = Counter(
    "marketbot_exchange_rate_limit_wait_seconds_total",
    "Time spent waiting for rate-limit budget",
    ["exchange"],
)
BREAKER_STATE = Gauge(
    "marketbot_exchange_breaker_state",
    "Circuit breaker state per endpoint: 0 closed, 1 half-open, 2 open",
    ["exchange", "endpoint"],
)
CLOCK_OFFSET = Gauge(
    "marketbot_exchange_clock_offset_ms",
    "Measured server time minus local time, in milliseconds",
    ["exchange"],
)
RETRIES = Counter(
    "marketbot_exchange_retries_total",
    "Requests sent again after a retryable failure",
    ["exchange", "endpoint", "reason"],
)
BANNED = Gauge(
    "marketbot_exchange_ip_banned",
    "1 while the exchange has banned this IP and all traffic is stopped",
    ["exchange"],
)
RATE_LIMIT_HOLDS = Counter(
    "marketbot_exchange_rate_limit_holds_total",
    "Times every request to the exchange was held after a per-IP 429 (until its Retry-After)",
    ["exchange"],
)
LIMIT_ANSWERS = Counter(
    "marketbot_exchange_limit_answers_total",
    "Rate-limit answers received: 429 / 418 / 403, and Bybit's per-UID 10006",
    ["exchange", "status"],
)
STREAM_CONNECTIONS = Gauge(
    "marketbot_exchange_stream_connections",
    "Private-stream WebSocket connections up (authenticated and subscribed)",
    ["exchange"],
)
STREAM_RECONNECTS = Counter(
    "marketbot_exchange_stream_reconnects_total",
    "Private-stream connections lost or refused and opened again (after a backoff)",
    ["exchange"],
)
STREAM_CONNECT_ATTEMPTS = Counter(
    "marketbot_exchange_stream_connect_attempts_total",
    "WebSocket connections opened (each counts against the exchange's per-IP connection limit)",
    ["exchange"],
)
STREAM_IP_CONNECTIONS = Gauge(
    "marketbot_exchange_stream_connections_per_ip",
    "Stream connections up, per executor replica and the egress IP it connects from",
    ["exchange", "replica", "egress_ip"],
)
STREAM_CONNECT_HEADROOM = Gauge(
    "marketbot_exchange_stream_connect_headroom_ratio",
    "Fraction of the per-IP connection budget (connections per 5 minutes) still free",
    ["exchange"],
)
STREAM_CONNECT_WAIT = Counter(
    "marketbot_exchange_stream_connect_wait_seconds_total",
    "Time spent waiting for the per-IP connection budget before opening a connection",
    ["exchange"],
)
STREAM_SUBSCRIPTIONS = Gauge(
    "marketbot_exchange_stream_accounts",
    "Accounts whose private events this process receives (Bybit: one connection each; "
    "Binance: subscriptions over shared connections)",
    ["exchange"],
)
