"""The whole platform as separate processes: the simulator and the six services.

``Stack`` starts them with the supervisor in dependency order, each on free loopback ports,
all pointed at one NATS + PostgreSQL and at the simulator for every exchange and
market-data URL. The same stack serves ``make run``, the e2e tests and the system benchmark.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from marketbot.contracts import BusNamespace
from marketbot.devstack.supervisor import ProcessSpec, Supervisor
from marketbot.runtime.bus import Bus
from marketbot.runtime.infra import Infra, free_port

SERVICES = (
    "keyvault",
    "ledger",
    "decision",
    "executor-bybit",
    "executor-binance",
    "signal-gateway",
    "web",
)


def script(name: str) -> str:
    """A console script of this environment (installed beside the running Python)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed in {path.parent}: run make sync")
    return str(path)


@dataclass(frozen=True)
class SimUrls:
    bybit: str
    binance: str
    market: str


@dataclass
class StackConfig:
    data_dir: Path
    nats_url: str
    database_url: str
    bus_prefix: str = ""
    log_level: str = "INFO"
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    webhook_source: str = "tradingview"
    webhook_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    sim_limits: bool = True
    sim_seed: int = 42
    gateway_port: int = 0
    web_port: int = 0
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per-service environment overrides (by service name)."""
    stream_replicas: int = 1
    """JetStream replicas of every stream (3 on a cluster: ``nats_url`` lists its nodes)."""
    nats_server_url: str = ""
    """The URL services connect to (no credential in it); ``nats_url`` is the operator's,
    used to provision the streams before the services start."""
    nats_seeds: dict[str, str] = field(default_factory=dict)
    """Each service's own nkey seed (``NATS_NKEY_SEED``), from the infrastructure."""

    @classmethod
    def for_infra(cls, infra: Infra, **values: Any) -> StackConfig:
        seeds = dict(infra.nats_auth.seeds) if infra.nats_auth is not None else {}
        return cls(
            nats_url=infra.nats_url,
            database_url=infra.database_url,
            nats_server_url=infra.nats_server_url,
            nats_seeds=seeds,
            **values,
        )


@dataclass
class StackUrls:
    gateway: str
    sim: SimUrls
    metrics: dict[str, str]
    web: str = ""

    @property
    def webhook(self) -> str:
        return f"{self.gateway}/webhooks/tradingview"


def _secret_file(path: Path, make: Callable[[], str]) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(make())
    return path


def _new_sealing_key() -> str:
    raw = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def vault_key_files(secrets_dir: Path) -> tuple[Path, Path, str]:
    """The vault's master key and sealing key for a local run, made once and kept (0600),
    and the sealing key's public half (base64) that the gateway pins."""
    master = _secret_file(
        secrets_dir / "keyvault-master-keys",
        lambda: f"1:{base64.b64encode(os.urandom(32)).decode()}\n",
    )
    sealing = _secret_file(secrets_dir / "keyvault-sealing-key", _new_sealing_key)
    private = X25519PrivateKey.from_private_bytes(base64.b64decode(sealing.read_text().strip()))
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return master, sealing, base64.b64encode(public).decode()


def web_session_key(secrets_dir: Path) -> str:
    """The key that seals the web app's session cookies, made once and kept (0600), so a
    restarted web app keeps its users signed in."""
    path = _secret_file(
        secrets_dir / "web-session-key", lambda: base64.b64encode(os.urandom(32)).decode()
    )
    return path.read_text().strip()


class Stack:
    def __init__(self, config: StackConfig, supervisor: Supervisor) -> None:
        self.config = config
        self.supervisor = supervisor
        self.urls: StackUrls | None = None
        self._metrics_ports = {name: free_port() for name in SERVICES}
        self._gateway_port = config.gateway_port or free_port()
        self._web_port = config.web_port or free_port()

    def _common_env(self) -> dict[str, str]:
        return {
            "NATS_URL": self.config.nats_server_url or self.config.nats_url,
            "DATABASE_URL": self.config.database_url,
            "MARKETBOT_BUS_PREFIX": self.config.bus_prefix,
            "MARKETBOT_STREAM_REPLICAS": str(self.config.stream_replicas),
            "LOG_LEVEL": self.config.log_level,
        }

    def _service(self, name: str, argv: list[str], env: dict[str, str]) -> ProcessSpec:
        prefix = "MARKETBOT_" + name.replace("-", "_").upper().replace("SIGNAL_", "") + "_"
        port = self._metrics_ports[name]
        seed = self.config.nats_seeds.get(name)
        full_env = {
            **self._common_env(),
            **({"NATS_NKEY_SEED": seed} if seed else {}),
            f"{prefix}METRICS_PORT": str(port),
            **env,
            **self.config.extra_env.get(name, {}),
        }
        return ProcessSpec(
            name=name,
            argv=argv,
            env=full_env,
            ready_url=f"http://127.0.0.1:{port}/readyz",
            ready_timeout=90,
        )

    def sim_spec(self) -> tuple[ProcessSpec, SimUrls]:
        ports = [free_port() for _ in range(3)]
        urls = SimUrls(*(f"http://127.0.0.1:{p}" for p in ports))
        argv = [
            script("marketbot-sim"),
            "--bybit-port",
            str(ports[0]),
            "--binance-port",
            str(ports[1]),
            "--market-port",
            str(ports[2]),
            "--seed",
            str(self.config.sim_seed),
        ]
        if not self.config.sim_limits:
            argv.append("--no-limits")
        spec = ProcessSpec("exchange-sim", argv, ready_url=f"{urls.bybit}/v5/market/time")
        return spec, urls

    def service_specs(self, sim: SimUrls) -> list[ProcessSpec]:
        master, sealing, vault_public = vault_key_files(self.config.data_dir / "secrets")
        session_key = web_session_key(self.config.data_dir / "secrets")
        # The operator's status page: every service's health server, read by the gateway.
        status_targets = {
            name: f"http://127.0.0.1:{port}"
            for name, port in self._metrics_ports.items()
            if name not in ("signal-gateway", "web")
        }
        gateway_port = self._gateway_port
        venue_urls = {
            "MARKETBOT_KEYVAULT_VENUE_URLS": json.dumps(
                {"bybit": sim.bybit, "binance": sim.binance}
            )
        }
        return [
            self._service(
                "keyvault",
                [script("marketbot-keyvault"), "serve"],
                {
                    "MARKETBOT_KEYVAULT_MASTER_KEYS_FILE": str(master),
                    "MARKETBOT_KEYVAULT_SEALING_KEY_FILE": str(sealing),
                    **venue_urls,
                },
            ),
            self._service("ledger", [script("marketbot-ledger"), "serve"], {}),
            self._service(
                "decision",
                [script("marketbot-decision"), "serve"],
                {
                    "MARKETBOT_DECISION_FEAR_GREED_URL": sim.market,
                    "MARKETBOT_DECISION_COINGECKO_URL": sim.market,
                    "MARKETBOT_DECISION_BYBIT_URL": sim.bybit,
                    "MARKETBOT_DECISION_BINANCE_URL": sim.binance,
                },
            ),
            self._service(
                "executor-bybit",
                [script("marketbot-executor-bybit")],
                {
                    "MARKETBOT_EXECUTOR_BYBIT_EXCHANGE_URL": sim.bybit,
                },
            ),
            self._service(
                "executor-binance",
                [script("marketbot-executor-binance")],
                {
                    "MARKETBOT_EXECUTOR_BINANCE_EXCHANGE_URL": sim.binance,
                },
            ),
            self._service(
                "signal-gateway",
                [script("marketbot-gateway")],
                {
                    "MARKETBOT_GATEWAY_HTTP_PORT": str(gateway_port),
                    "MARKETBOT_GATEWAY_ADMIN_TOKEN": self.config.admin_token,
                    "MARKETBOT_GATEWAY_VAULT_PUBLIC_KEY": vault_public,
                    "MARKETBOT_GATEWAY_WEBHOOK_SOURCES": json.dumps(
                        {self.config.webhook_source: self.config.webhook_token}
                    ),
                    "MARKETBOT_GATEWAY_STATUS_TARGETS": json.dumps(status_targets),
                    # mark prices of open positions: the simulator's public tickers
                    "MARKETBOT_GATEWAY_MARKET_DATA_URLS": json.dumps(
                        {"bybit": sim.bybit, "binance": sim.binance}
                    ),
                },
            ),
            self._service(
                "web",
                [script("marketbot-web")],
                {
                    "MARKETBOT_WEB_HTTP_PORT": str(self._web_port),
                    "MARKETBOT_WEB_GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
                    "MARKETBOT_WEB_SESSION_KEY": session_key,
                    # plain HTTP on loopback: a Secure cookie would not be sent back
                    "MARKETBOT_WEB_COOKIE_SECURE": "false",
                },
            ),
        ]

    async def provision(self) -> None:
        """Create the streams with the operator's credential (services cannot)."""
        bus = await Bus.connect(
            self.config.nats_url, "provision", BusNamespace(self.config.bus_prefix)
        )
        try:
            await bus.provision(self.config.stream_replicas)
        finally:
            await bus.close()

    async def start(self) -> StackUrls:
        await self.provision()
        sim_spec, sim_urls = self.sim_spec()
        await self.supervisor.start(sim_spec)
        for spec in self.service_specs(sim_urls):
            await self.supervisor.start(spec)
        self.urls = StackUrls(
            gateway=f"http://127.0.0.1:{self._gateway_port}",
            sim=sim_urls,
            metrics={n: f"http://127.0.0.1:{p}/metrics" for n, p in self._metrics_ports.items()},
            web=f"http://127.0.0.1:{self._web_port}",
        )
        return self.urls

    async def restart(self, name: str) -> None:
        """Restart one service with the stack's current configuration (e.g. changed
        ``extra_env``), on the same ports."""
        assert self.urls is not None, "the stack is not started"
        (spec,) = [s for s in self.service_specs(self.urls.sim) if s.name == name]
        await self.supervisor.replace(spec)

    async def stop(self) -> None:
        await self.supervisor.stop()
