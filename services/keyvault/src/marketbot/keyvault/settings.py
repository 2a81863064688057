"""The vault's settings, read once from ``MARKETBOT_KEYVAULT_*`` (plus the shared ones)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field, SecretStr

from marketbot.contracts import Exchange
from marketbot.contracts.sizing import SizingSettings
from marketbot.keyvault.domain.bounds import BoundRules
from marketbot.runtime.settings import ServiceSettings, service_config


class KeyvaultSettings(ServiceSettings, SizingSettings):
    model_config = service_config("MARKETBOT_KEYVAULT_")

    service_name: str = "keyvault"

    # Master keys (key-encryption keys), versioned; the highest version wraps new data keys.
    master_keys: SecretStr | None = Field(
        default=None, description='"1:<base64 32 bytes>,2:<base64 32 bytes>"'
    )
    master_keys_file: Path | None = Field(
        default=None, description="a mounted file with the same format (one entry per line)"
    )
    master_passphrase: SecretStr | None = Field(
        default=None, description="derive one master key from a passphrase (PBKDF2-SHA256)"
    )
    master_passphrase_salt: str | None = Field(default=None, description="base64, >= 16 bytes")
    master_passphrase_version: int = Field(default=1, ge=1)
    master_passphrase_iterations: int = Field(default=600_000, ge=600_000)
    min_decrypt_version: int = Field(
        default=1, ge=1, description="master key versions below this are retired and refused"
    )

    # The X25519 key the gateway seals secrets to.
    sealing_key: SecretStr | None = Field(default=None, description="raw X25519 private, base64")
    sealing_key_file: Path | None = None

    # Verification
    require_ip_binding: bool = Field(
        default=False, description="refuse keys not bound to an IP (a warning is given either way)"
    )
    egress_ips: tuple[str, ...] = ()
    reverify_interval_s: float = Field(default=6 * 3600, gt=0)
    reverify_poll_s: float = Field(default=60.0, gt=0, description="how often to look for due keys")
    reverify_concurrency: int = Field(default=4, ge=1)
    venue_urls: dict[Exchange, str] = Field(
        default_factory=dict,
        description="per exchange: mainnet | testnet | demo | a base URL (e.g. the simulator)",
    )

    # Signing
    sign_cache_ttl_s: float = Field(default=60.0, ge=0)
    sign_cache_size: int = Field(default=10_000, ge=0)
    audit_flush_interval_s: float = Field(default=0.1, gt=0)
    audit_backlog_max: int = Field(default=200_000, ge=1)

    # Orders bounded by their request (domain/bounds.py). The sizing numbers (SizingSettings)
    # must be at least the executors' own (MARKETBOT_EXECUTOR_*), or the vault refuses what
    # they size.
    entry_slippage_percent: Decimal = Field(default=Decimal("0.5"), ge=0)
    max_entry_price_percent: Decimal = Field(default=Decimal(2), ge=0)
    max_signs_per_order: int = Field(default=6, ge=1)
    sign_concurrency: int = Field(
        default=256, ge=1, description="sign requests answered at once (a sent order waits on HTTP)"
    )
    http_read_timeout_s: float = Field(
        default=10.0, gt=0, description="read timeout of the requests the vault sends itself"
    )
    http_max_connections: int = Field(
        default=128, ge=1, description="connections per exchange for the requests the vault sends"
    )
    balance_max_age_s: float = Field(
        default=6 * 3600, gt=0, description="a stored balance older than this is read again"
    )
    request_wait_s: float = Field(default=1.0, ge=0)

    def bound_rules(self) -> BoundRules:
        return BoundRules(
            sizing=self.sizing_rules(),
            slippage_percent=self.entry_slippage_percent,
            max_entry_price_percent=self.max_entry_price_percent,
            max_signs=self.max_signs_per_order,
        )

    def venue_url(self, exchange: Exchange) -> str:
        return self.venue_urls.get(exchange, "mainnet")
