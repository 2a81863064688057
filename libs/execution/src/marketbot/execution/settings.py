"""Executor settings: each executor service subclasses with its own env prefix.

``MARKETBOT_EXECUTOR_BYBIT_*`` / ``MARKETBOT_EXECUTOR_BINANCE_*`` (plus the shared
``NATS_URL``, ``DATABASE_URL``, ``MARKETBOT_BUS_PREFIX``, ``LOG_LEVEL``).
"""

from __future__ import annotations

import ipaddress
from decimal import Decimal

from pydantic import Field, field_validator, model_validator

from marketbot.contracts.sizing import SizingSettings
from marketbot.runtime.settings import (
    REDELIVERY_SHARE_OF_MAX_AGE,
    ServiceSettings,
    redelivery_window_error,
    service_config,
)

BALANCE_SNAPSHOT_MAX_AGE_LIMIT_S = 6 * 3600.0


class ExecutorSettings(ServiceSettings, SizingSettings):
    model_config = service_config("MARKETBOT_EXECUTOR_")

    service_name: str = "executor"
    exchange_url: str = Field(
        default="mainnet",
        description="mainnet | testnet | demo, or a base URL (e.g. the simulator's)",
    )
    rate_limit_safety: float = Field(
        default=0.9, gt=0, le=1, description="share of the exchange's per-IP budget to use"
    )
    http_max_connections: int = Field(
        default=20,
        ge=1,
        description="pooled connections to the exchange (and requests in flight); about "
        "request rate x round trip is enough",
    )
    rate_limit_scale: float = Field(
        default=1.0,
        gt=0,
        description="multiplies every documented exchange limit; only for a simulator run "
        "with its limits off (never against a real exchange)",
    )
    # the exchange's HTTP timeouts (a create unanswered within the read timeout is an
    # unknown outcome, resolved by looking its client order id up)
    http_connect_timeout_s: float = Field(default=5.0, gt=0, description="TCP + TLS connect")
    http_read_timeout_s: float = Field(
        default=10.0, gt=0, description="waiting for the answer; past it the outcome is unknown"
    )
    http_write_timeout_s: float = Field(default=10.0, gt=0)
    http_pool_timeout_s: float = Field(
        default=10.0, gt=0, description="waiting for a pooled connection (nothing sent)"
    )
    rate_limits_refresh_s: float = Field(
        default=300.0,
        gt=0,
        description="ask the exchange for its own limits (Binance exchangeInfo.rateLimits) "
        "before the first request and this often after",
    )
    # consumption
    max_request_age_s: float = Field(
        default=120.0,
        gt=0,
        description="a request older than this, counted from when it became runnable "
        "(requested_at = not_before), is rejected STALE and never sent",
    )
    tier_concurrency: int = Field(default=64, ge=1, description="orders in flight within a tier")
    fetch_batch: int = Field(default=64, ge=1)
    ack_wait_s: float = Field(
        default=20.0,
        gt=0,
        description="redelivery window of an unacknowledged request; at most "
        f"{REDELIVERY_SHARE_OF_MAX_AGE:.0%} of max_request_age_s, so a request lost by a "
        "crashed executor is redelivered while it can still be sent",
    )
    order_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="how long a replica owns an order it is sending or reconciling; longer "
        "than one placement with its lookups and resubmission (read timeout x 2 + 2 x the "
        "receive window), so no other replica acts on it meanwhile",
    )
    idle_poll_s: float = Field(default=0.05, gt=0)
    max_deliver: int = Field(
        default=10, ge=1, description="deliveries of a failing request before it is dead-lettered"
    )
    redelivery_backoff_s: tuple[float, ...] = Field(
        default=(1.0, 5.0, 15.0, 30.0),
        min_length=1,
        description="wait before each redelivery of a failed request (the last repeats)",
    )
    # exactly once
    unknown_settle_s: float = Field(
        default=15.0,
        ge=0,
        description="after a maybe-sent attempt, 'not found' is conclusive only this much later "
        "(beyond the signed request's receive window; the venue never resubmits on its own)",
    )
    unknown_poll_s: float = Field(default=1.0, gt=0)
    retry_backoff_s: float = Field(default=0.5, gt=0)
    # unknown outcomes: resolved by the reconciler (reconcile.py), never by the request
    reconcile_poll_s: float = Field(
        default=5.0,
        gt=0,
        description="how often an order whose outcome is unknown is looked up by client id "
        "until its settle time (the last lookup is at the settle time)",
    )
    reconcile_interval_s: float = Field(
        default=0.5, gt=0, description="the reconciler's pass interval (and it wakes at a hand-off)"
    )
    reconcile_batch: int = Field(default=200, ge=1)
    reconcile_concurrency: int = Field(default=16, ge=1)
    # sizing (blueprint formula): SizingSettings
    max_slippage_percent: Decimal = Field(
        default=Decimal("0.5"),
        gt=0,
        le=10,
        description="an entry is an IOC limit order at the reference price plus this percent "
        "(a buy); it fills at that price or better, or not at all; shown on the operation",
    )
    protect_settle_s: float = Field(
        default=15.0,
        ge=0,
        description="after a protect attempt with an unknown outcome, 'no exit legs found' is "
        "conclusive only this much later (beyond the signed request's receive window)",
    )
    # tracking
    track_interval_s: float = Field(default=2.0, gt=0)
    track_max_interval_s: float = Field(default=30.0, gt=0)
    track_concurrency: int = Field(default=32, ge=1)
    track_batch: int = Field(default=200, ge=1)
    # private streams (issue 17)
    private_streams: bool = Field(
        default=True,
        description="fills, exits and balances from the exchange's private streams (REST "
        "only to reconcile); off: every open position and acknowledged order is polled",
    )
    stream_egress_ip: str = Field(
        default="default",
        description="the egress IP this replica connects from (a label on the stream "
        "connection metrics: the exchanges' connection limits are per IP)",
    )
    stream_source_ips: str = Field(
        default="",
        description="local addresses the stream connections are opened from, each mapped to "
        "an egress IP of its own with its own connection budget (comma-separated, e.g. "
        "10.0.1.5,10.0.1.6); empty: the system's choice, one egress IP (stream_egress_ip)",
    )
    stream_replica: str = Field(default="", description="replica label (default: service name)")
    stream_ping_interval_s: float = Field(
        default=20.0,
        gt=0,
        description="heartbeat of the streams (Bybit: 'send the ping heartbeat packet every "
        "20 seconds'); a missing answer within stream_pong_timeout_s reconnects",
    )
    stream_pong_timeout_s: float = Field(default=10.0, gt=0)
    stream_fill_grace_s: float = Field(default=2.0, gt=0)
    stream_leg_grace_s: float = Field(default=2.0, gt=0)
    stream_stale_order_s: float = Field(
        default=30.0,
        gt=0,
        description="an acknowledged order no stream report finished within this long is "
        "looked up by REST (and counted as a correction)",
    )
    stream_follow_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="one replica follows an account's stream: its lease lasts this long "
        "unless renewed; another replica takes a lapsed one over",
    )
    stream_lease_renew_s: float = Field(
        default=5.0,
        gt=0,
        description="how often the leases are renewed (and lapsed ones taken over)",
    )
    balance_snapshot_max_age_s: float = Field(
        default=900.0,
        description="a balance snapshot kept from before a restart (persisted) or a stream "
        "reconnect sizes the account's orders until its background REST refresh only while "
        "it was known current less than this long ago; older, the order reads the balance "
        "itself. 0: never (every restart reads each balance before its first order); at "
        f"most {BALANCE_SNAPSHOT_MAX_AGE_LIMIT_S:.0f} s (the key vault's size cap trusts a "
        "balance up to 6 h old)",
    )
    sign_batch_max: int = Field(
        default=128,
        ge=0,
        le=256,
        description="sign requests of concurrent orders sent to the key vault in one NATS "
        "request (one batch per event-loop tick, at most this many); 0: one request each",
    )
    outbox_relay_s: float = Field(default=2.0, gt=0)
    db_pool_size: int = Field(default=20, ge=2)

    @field_validator("stream_source_ips")
    @classmethod
    def _source_ips(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                try:
                    ipaddress.ip_address(part.strip())
                except ValueError:
                    raise ValueError(
                        f"stream_source_ips: {part.strip()!r} is not an IP address "
                        "(comma-separated local addresses)"
                    ) from None
        return value

    @field_validator("balance_snapshot_max_age_s")
    @classmethod
    def _snapshot_age(cls, value: float) -> float:
        if not 0 <= value <= BALANCE_SNAPSHOT_MAX_AGE_LIMIT_S:
            raise ValueError(
                f"balance_snapshot_max_age_s: {value} s must be between 0 (never use a kept "
                f"snapshot) and {BALANCE_SNAPSHOT_MAX_AGE_LIMIT_S:.0f} s"
            )
        return value

    @property
    def source_ips(self) -> tuple[str, ...]:
        """``stream_source_ips`` as a list."""
        return tuple(p.strip() for p in self.stream_source_ips.split(",") if p.strip())

    @model_validator(mode="after")
    def _redelivery_far_shorter_than_max_age(self) -> ExecutorSettings:
        error = redelivery_window_error("ack_wait_s", self.ack_wait_s, self.max_request_age_s)
        if error:
            raise ValueError(error)
        if self.stream_lease_renew_s * 2 > self.stream_follow_lease_s:
            raise ValueError(
                f"stream_lease_renew_s ({self.stream_lease_renew_s}) must be at most half of "
                f"stream_follow_lease_s ({self.stream_follow_lease_s}): a lease must be "
                "renewed before it lapses, with a renewal to spare"
            )
        return self
