"""Web app settings, from ``MARKETBOT_WEB_*`` environment variables.

The web app has no database and no bus: everything it shows comes from the gateway's HTTP
API and WebSocket (``GATEWAY_URL``). ``NATS_URL`` / ``DATABASE_URL`` of the shared settings
are ignored.
"""

from __future__ import annotations

import base64
import ipaddress

from pydantic import Field, SecretStr, field_validator

from marketbot.runtime.settings import ServiceSettings, service_config


class WebSettings(ServiceSettings):
    model_config = service_config("MARKETBOT_WEB_")

    service_name: str = "web"
    http_port: int = Field(default=8090, ge=0, le=65535, description="0 picks a free port")
    gateway_url: str = Field(
        default="http://127.0.0.1:8080", description="the signal gateway's HTTP API, seen from here"
    )
    public_gateway_url: str | None = Field(
        default=None,
        description="the gateway's public URL, shown in the TradingView webhook templates "
        "(defaults to GATEWAY_URL)",
    )
    session_key: SecretStr | None = Field(
        default=None,
        description="base64 of 32 random bytes that seal the session cookies (AES-256-GCM); "
        "every replica needs the same one. Unset: a new key at each start (sessions end "
        "at restart)",
    )
    cookie_secure: bool = Field(
        default=True, description="mark cookies Secure (HTTPS only); false only for local HTTP"
    )
    operator_session_minutes: int = Field(default=60, ge=5, le=24 * 60)
    login_attempts_per_minute: float = Field(
        default=6.0, gt=0, description="sign-in attempts refilled per minute, per client IP"
    )
    login_attempts_burst: int = Field(default=10, ge=1)
    trusted_proxies: tuple[str, ...] = Field(
        default=(), description="addresses/CIDRs whose X-Forwarded-For names the client"
    )
    gateway_timeout_seconds: float = Field(default=20.0, gt=0)
    marks_interval_seconds: float = Field(
        default=5.0, ge=1, le=300, description="how often /live sends open positions' mark prices"
    )
    history_export_limit: int = Field(
        default=5000, ge=1, le=100_000, description="most operations in one CSV export"
    )

    @field_validator("session_key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                raw = base64.b64decode(value.get_secret_value(), validate=True)
            except ValueError as exc:
                raise ValueError("session_key must be base64") from exc
            if len(raw) != 32:
                raise ValueError("session_key must be 32 bytes (base64 of os.urandom(32))")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            ipaddress.ip_network(entry.strip(), strict=False)
        return value

    @field_validator("gateway_url", "public_gateway_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/") if value else value

    def session_key_bytes(self) -> bytes | None:
        return base64.b64decode(self.session_key.get_secret_value()) if self.session_key else None
