"""Gateway settings, from ``MARKETBOT_GATEWAY_*`` environment variables (plus the shared ones)."""

from __future__ import annotations

import base64
import ipaddress

from pydantic import Field, SecretStr, field_validator

from marketbot.gateway.domain.errors import ClientError
from marketbot.gateway.domain.network import TRADINGVIEW_IPS
from marketbot.gateway.domain.sources import check_source_name
from marketbot.runtime.settings import ServiceSettings, service_config


class GatewaySettings(ServiceSettings):
    model_config = service_config("MARKETBOT_GATEWAY_")

    service_name: str = "signal-gateway"
    http_port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")
    admin_token: SecretStr | None = Field(
        default=None, description="bearer token of the admin API; hashed at start"
    )
    webhook_sources: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='sources and their tokens, JSON: {"tradingview": "<token>"}; more can be '
        "created with POST /admin/sources",
    )
    ip_allowlist_enabled: bool = False
    ip_allowlist: tuple[str, ...] = TRADINGVIEW_IPS
    trusted_proxies: tuple[str, ...] = Field(
        default=(), description="addresses/CIDRs whose X-Forwarded-For is believed"
    )
    max_body_bytes: int = Field(default=4096, ge=64, le=1_048_576)
    max_alert_age_seconds: float = Field(
        default=120.0, gt=0, le=600, description="<= the 10-minute JetStream duplicate window"
    )
    max_clock_skew_seconds: float = Field(default=30.0, ge=0)
    untimed_dedup_seconds: int = Field(
        default=60, ge=1, le=600, description="de-duplication window for alerts without a time"
    )
    rate_limit_per_second: float = Field(default=10.0, ge=0)
    rate_limit_burst: int = Field(default=20, ge=1)
    publish_budget_seconds: float = Field(
        default=2.0,
        gt=0,
        le=2.9,
        description="time to store an alert in JetStream before answering 503 (TradingView "
        "gives up after 3 s)",
    )
    vault_public_key: str | None = Field(
        default=None,
        description="the key vault's X25519 public key (base64, from marketbot-keyvault "
        "public-key); pins it so a rogue NATS client cannot stand in for the vault",
    )
    request_timeout_seconds: float = Field(default=5.0, gt=0, description="vault/ledger replies")
    ws_queue_size: int = Field(default=1000, ge=1)
    ws_ring_size: int = Field(default=256, ge=1, description="recent events kept per user")
    ws_all_ring_size: int = Field(default=4096, ge=1, description="recent events kept for admins")
    ws_replay_limit: int = Field(default=10_000, ge=1, description="max events replayed by seq")
    session_ttl_seconds: int = Field(
        default=8 * 3600, ge=60, le=30 * 86400, description="life of a sign-in session token"
    )
    login_attempts_per_minute: float = Field(
        default=1.0, gt=0, description="sign-in attempts refilled per minute, per email"
    )
    login_attempts_burst: int = Field(default=5, ge=1, description="sign-in attempts in a row")
    market_data_urls: dict[str, str] = Field(
        default_factory=dict,
        description='public market data for the mark prices of open positions, JSON {"bybit": '
        '"mainnet", "binance": "https://..."} (an environment name or a base URL); empty: '
        "positions are shown without a mark",
    )
    status_targets: dict[str, str] = Field(
        default_factory=dict,
        description='services\' health servers for GET /admin/status, JSON {"ledger": '
        '"http://ledger:9090"}: their /readyz and /metrics are read',
    )

    @field_validator("ip_allowlist", "trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            ipaddress.ip_network(entry.strip(), strict=False)
        return value

    @field_validator("market_data_urls")
    @classmethod
    def _market_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for name, url in value.items():
            if name not in ("bybit", "binance"):
                raise ValueError(f"market_data_urls: {name!r} is not an exchange (bybit, binance)")
            if not url.startswith(("http://", "https://")) and url not in (
                "mainnet",
                "testnet",
                "demo",
            ):
                raise ValueError(
                    f"market_data_urls[{name!r}] must be a URL or mainnet/testnet/demo"
                )
        return value

    @field_validator("status_targets")
    @classmethod
    def _status_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for name, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"status target {name!r} must be an http(s) URL")
        return value

    @field_validator("webhook_sources")
    @classmethod
    def _source_names(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, token in value.items():
            try:
                check_source_name(name)
            except ClientError as exc:
                raise ValueError(f"source {name!r}: {exc.message}") from exc
            if len(token.get_secret_value()) < 16:
                raise ValueError(f"the token of source {name!r} must be at least 16 characters")
        return value

    @field_validator("vault_public_key")
    @classmethod
    def _x25519_key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                raw = base64.b64decode(value, validate=True)
            except ValueError as exc:
                raise ValueError("vault_public_key must be base64") from exc
            if len(raw) != 32:
                raise ValueError("vault_public_key must be a raw 32-byte X25519 key")
        return value

    def pinned_vault_key(self) -> bytes | None:
        return base64.b64decode(self.vault_public_key) if self.vault_public_key else None
