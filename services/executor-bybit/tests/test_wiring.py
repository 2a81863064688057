"""The Bybit executor is the shared engine with its own settings and venue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketbot.contracts import Exchange
from marketbot.execution.repository import MIGRATIONS
from marketbot.executor_bybit import app
from marketbot.executor_bybit.settings import BybitExecutorSettings


def test_settings_come_from_the_bybit_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETBOT_EXECUTOR_BYBIT_EXCHANGE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MARKETBOT_EXECUTOR_BYBIT_MAX_REQUEST_AGE_S", "30")
    monkeypatch.setenv("MARKETBOT_EXECUTOR_BYBIT_ACK_WAIT_S", "5")
    monkeypatch.setenv("MARKETBOT_EXECUTOR_BYBIT_BRL_PER_QUOTE", "5.25")
    monkeypatch.setenv("NATS_URL", "nats://example:4222")
    settings = BybitExecutorSettings()
    assert settings.service_name == "executor-bybit"
    assert settings.schema_name == "executor_bybit"
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
    assert seen["exchange"] is Exchange.BYBIT
    assert isinstance(seen["settings"], BybitExecutorSettings)
    assert (MIGRATIONS / "0001_execution.sql").exists()
