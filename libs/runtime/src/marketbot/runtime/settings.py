"""Frozen settings read once from the environment (blueprint rule 8).

Each service subclasses ``ServiceSettings`` with its own env prefix, e.g.
``model_config = service_config("MARKETBOT_LEDGER_")``. The shared connection settings
(``NATS_URL``, ``DATABASE_URL``, ``MARKETBOT_BUS_PREFIX``, ``LOG_LEVEL``) are read without the
prefix, so one environment serves every service.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from marketbot.contracts import BusNamespace, PlanTable
from marketbot.contracts.access import inbox_prefix
from marketbot.runtime.bus import NatsCredentials

REDELIVERY_SHARE_OF_MAX_AGE = 0.25
"""A redelivery window (ack wait) may be at most this share of the maximum age of what it
redelivers: a message lost by a crashed consumer then comes back while it is still young
enough to act on, even after a restart and a second lost attempt."""


def redelivery_window_error(field: str, window_s: float, max_age_s: float) -> str | None:
    """The error for a redelivery window not far shorter than ``max_age_s``, naming the field."""
    limit = max_age_s * REDELIVERY_SHARE_OF_MAX_AGE
    if window_s <= limit:
        return None
    return (
        f"{field}={window_s:g}s must be at most {REDELIVERY_SHARE_OF_MAX_AGE:.0%} of the "
        f"maximum request age {max_age_s:g}s (<= {limit:g}s): a message redelivered after "
        "it would already be stale"
    )


def service_config(env_prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=env_prefix,
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        env_nested_delimiter="__",
    )


class ServiceSettings(BaseSettings):
    model_config = service_config("MARKETBOT_")

    service_name: str = "marketbot"
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=AliasChoices("NATS_URL", "nats_url"),
        description="one URL, or every server of a cluster comma-separated",
    )
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
    )
    nats_nkey_seed: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("NATS_NKEY_SEED", "nats_nkey_seed"),
        description="this service's own NATS identity (an nkey user seed, SU...)",
    )
    nats_nkey_seed_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("NATS_NKEY_SEED_FILE", "nats_nkey_seed_file"),
        description="a file holding the seed (a mounted Kubernetes secret)",
    )
    nats_tls_ca_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("NATS_TLS_CA_FILE", "nats_tls_ca_file"),
        description="CA bundle that signed the NATS server's certificate (tls:// URLs)",
    )
    provision_streams: bool = Field(
        default=False,
        validation_alias=AliasChoices("MARKETBOT_PROVISION_STREAMS", "provision_streams"),
        description="create/update the streams at start (needs the operator's NATS rights); "
        "otherwise wait until they exist",
    )
    bus_prefix: str = Field(
        default="",
        validation_alias=AliasChoices("MARKETBOT_BUS_PREFIX", "bus_prefix"),
        description="prefix for every subject and stream; lets isolated copies share one NATS",
    )
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        validation_alias=AliasChoices("MARKETBOT_STREAM_REPLICAS", "stream_replicas"),
        description="JetStream replicas of every stream: 3 on a production cluster (R3)",
    )
    db_schema: str | None = Field(
        default=None,
        description="PostgreSQL schema owned by this service; defaults to the service name",
    )
    plans: PlanTable = Field(
        default_factory=PlanTable,
        validation_alias=AliasChoices("MARKETBOT_PLANS", "plans"),
        description="the plan table (priority, delay, commission rate): one value for all",
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL", "log_level"))
    gc_thresholds: tuple[int, int, int] = Field(
        default=(50_000, 20, 100),
        validation_alias=AliasChoices("MARKETBOT_GC_THRESHOLDS", "gc_thresholds"),
        description="the garbage collector's generation thresholds (gc.set_threshold; "
        "Python's default is 700, 10, 10); the objects alive once the service has started "
        "are frozen out of its scans (gc.freeze)",
    )
    http_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")

    @property
    def namespace(self) -> BusNamespace:
        return BusNamespace(self.bus_prefix)

    @property
    def nats_credentials(self) -> NatsCredentials:
        seed = self.nats_nkey_seed.get_secret_value() if self.nats_nkey_seed else None
        if seed is None and self.nats_nkey_seed_file is not None:
            seed = self.nats_nkey_seed_file.read_text().strip()
        return NatsCredentials(
            nkey_seed=seed,
            inbox_prefix=inbox_prefix(self.service_name),
            tls_ca_file=str(self.nats_tls_ca_file) if self.nats_tls_ca_file else None,
        )

    @property
    def schema_name(self) -> str:
        return self.db_schema or self.service_name.replace("-", "_")
