"""The Binance executor is the shared engine with its own settings and venue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketbot.contracts import Exchange
from marketbot.execution.repository import MIGRATIONS
from marketbot.executor_binance import app
from marketbot.executor_binance.settings import BinanceExecutorSettings


def test_settings_come_from_the_binance_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETBOT_EXECUTOR_BINANCE_EXCHANGE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MARKETBOT_EXECUTOR_BINANCE_MAX_REQUEST_AGE_S", "30")
    monkeypatch.setenv("MARKETBOT_EXECUTOR_BINANCE_ACK_WAIT_S", "5")
    monkeypatch.setenv("MARKETBOT_EXECUTOR_BINANCE_BRL_PER_QUOTE", "5.25")
    monkeypatch.setenv("NATS_URL", "nats://example:4222")
    settings = BinanceExecutorSettings()
    assert settings.service_name == "executor-binance"
    assert settings.schema_name == "executor_binance"
    assert settings.exchange_url == "http://127.0.0.1:9"
    assert settings.max_request_age_s == 30
    assert settings.sizing_rules().brl_per_quote == Decimal("5.25")
    assert settings.nats_url == "nats://example:4222"


def test_the_service_runs_the_shared_engine_on_its_venue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, object] = {}

    def fake_run(exchange: Exchange, settings: object) -> None:
        seen["exchange"] = exchange
        seen["settings"] = settings

    monkeypatch.setattr(app, "run_executor", fake_run)
    app.main()
    assert seen["exchange"] is Exchange.BINANCE
    assert isinstance(seen["settings"], BinanceExecutorSettings)
    assert (MIGRATIONS / "0001_execution.sql").exists()
