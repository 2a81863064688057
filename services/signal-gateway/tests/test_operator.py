"""The operator's reads: platform status scraped from real health servers, latest signals."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, Gauge

from marketbot.gateway.domain.status import PlatformStatus, samples
from marketbot.runtime.health import HealthServer
from marketbot.runtime.infra import free_port

from .helpers import SOURCE_TOKEN, AppFactory, admin_headers, bearer, client_for, create_user
from .helpers import make_settings as settings_with

EXECUTOR_METRICS = """\
# HELP marketbot_exchange_breaker_state Circuit breaker state
# TYPE marketbot_exchange_breaker_state gauge
marketbot_exchange_breaker_state{endpoint="POST /v5/order/create",exchange="bybit"} 2.0
# HELP marketbot_exchange_rate_limit_headroom_ratio headroom
# TYPE marketbot_exchange_rate_limit_headroom_ratio gauge
marketbot_exchange_rate_limit_headroom_ratio{bucket="order",exchange="bybit"} 0.25
# HELP marketbot_execution_unknown_outcomes_open unknown
# TYPE marketbot_execution_unknown_outcomes_open gauge
marketbot_execution_unknown_outcomes_open{exchange="bybit"} 3.0
# HELP other_metric ignored
# TYPE other_metric gauge
other_metric 7.0
"""


def test_status_picks_the_operator_gauges() -> None:
    status = PlatformStatus()
    status.add_metrics("executor-bybit", EXECUTOR_METRICS)
    assert status.breakers == [
        {
            "service": "executor-bybit",
            "exchange": "bybit",
            "endpoint": "POST /v5/order/create",
            "state": "open",
        }
    ]
    assert status.rate_limits == [
        {"service": "executor-bybit", "exchange": "bybit", "bucket": "order", "headroom": 0.25}
    ]
    assert status.unknown_outcomes == [
        {"service": "executor-bybit", "exchange": "bybit", "open": 3}
    ]
    assert [s.name for s in samples("not { a metric")] == []


@pytest.fixture
async def ledger_health() -> AsyncIterator[HealthServer]:
    registry = CollectorRegistry()
    lag = Gauge("marketbot_ledger_projection_lag_seconds", "lag", ["consumer"], registry=registry)
    pending = Gauge(
        "marketbot_ledger_consumer_pending_messages", "pending", ["consumer"], registry=registry
    )
    lag.labels("ledger_order_events").set(1.5)
    pending.labels("ledger_order_events").set(4)
    server = HealthServer("127.0.0.1", 0, registry=registry)
    server.add_check("database", lambda: False)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_admin_status_reads_each_service(
    make_app: AppFactory, ledger_health: HealthServer
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    app = make_app(settings_with(status_targets={"ledger": ledger_health.url, "decision": dead}))
    async with client_for(app) as api:
        response = await api.get("/admin/status", headers=admin_headers())
        assert response.status_code == 200, response.text
        body = response.json()
        services = {s["name"]: s for s in body["services"]}
        assert services["signal-gateway"]["ready"] is True
        assert services["ledger"]["ready"] is False
        assert services["ledger"]["checks"] == {"database": False}
        assert services["decision"]["ready"] is False
        assert services["decision"]["error"].startswith("no answer")
        assert body["ready"] is False
        assert body["ledger"] == [
            {
                "service": "ledger",
                "consumer": "ledger_order_events",
                "lag_seconds": 1.5,
                "pending": 4,
            }
        ]
        _, token = await create_user(api, "ana@example.com")
        assert (await api.get("/admin/status", headers=bearer(token))).status_code == 403


async def test_admin_signals_lists_the_newest_first(make_app: AppFactory) -> None:
    async with client_for(make_app()) as api:
        ids = []
        for price in ("95000", "95100", "95200"):
            response = await api.post(
                f"/webhooks/tradingview/tv?token={SOURCE_TOKEN}",
                json={
                    "symbol": "BTCUSDT",
                    "action": "buy",
                    "price": price,
                    "time": "2026-11-24T11:59:59Z",
                },
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["signal_id"])
        listed = await api.get("/admin/signals?limit=2", headers=admin_headers())
        assert listed.status_code == 200
        signals = listed.json()["signals"]
        assert [s["signal_id"] for s in signals] == [ids[2], ids[1]]
        assert signals[0]["price"] == "95200"
        assert signals[0]["symbol"] == "BTCUSDT"
        _, token = await create_user(api, "ana@example.com")
        assert (await api.get("/admin/signals", headers=bearer(token))).status_code == 403
