"""The services as the deploy tests see them: folder, package, console script, settings."""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Deployment name (= services/<folder>) -> settings class (module:attr); the exchange
# simulator takes command-line flags, not settings.
SETTINGS = {
    "signal-gateway": "marketbot.gateway.settings:GatewaySettings",
    "decision": "marketbot.decision.settings:DecisionSettings",
    "executor-bybit": "marketbot.executor_bybit.settings:BybitExecutorSettings",
    "executor-binance": "marketbot.executor_binance.settings:BinanceExecutorSettings",
    "keyvault": "marketbot.keyvault.settings:KeyvaultSettings",
    "ledger": "marketbot.ledger.settings:LedgerSettings",
    "web": "marketbot.web.settings:WebSettings",
}
# The services deployed in every environment (the simulator is dev-only).
DEPLOYED = tuple(SETTINGS)
# The web app has no database and no bus: it reaches the platform only through the gateway.
WITH_DATABASE = tuple(name for name in DEPLOYED if name != "web")


@dataclass(frozen=True)
class Service:
    folder: str
    package: str
    script: str
    entry_module: str

    @property
    def path(self) -> Path:
        return ROOT / "services" / self.folder

    @property
    def import_root(self) -> str:
        """``marketbot.<pkg>`` of the console script's module."""
        return ".".join(self.entry_module.split(".")[:2])

    def composition_modules(self) -> list[str]:
        """The console script's module and, when it exists, the package's ``app`` module.

        A CLI may import its app lazily (per sub-command); the app is what ``serve`` runs.
        """
        modules = [self.entry_module]
        app = f"{self.import_root}.app"
        if (
            app != self.entry_module
            and (self.path / "src" / Path(*app.split("."))).with_suffix(".py").exists()
        ):
            modules.append(app)
        return modules


def services() -> dict[str, Service]:
    out = {}
    for pyproject in sorted((ROOT / "services").glob("*/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text())
        project = data["project"]
        scripts = project.get("scripts", {})
        if len(scripts) != 1:
            raise AssertionError(f"{pyproject}: expected one console script, got {scripts}")
        ((script, target),) = scripts.items()
        out[pyproject.parent.name] = Service(
            folder=pyproject.parent.name,
            package=project["name"],
            script=script,
            entry_module=target.split(":")[0],
        )
    return out


def settings_class(name: str) -> type:
    module, _, attr = SETTINGS[name].partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
