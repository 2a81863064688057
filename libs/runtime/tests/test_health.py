from __future__ import annotations

import json

import httpx
from prometheus_client import CollectorRegistry, Counter

from marketbot.runtime.health import HealthServer


async def test_health_ready_and_metrics_endpoints() -> None:
    registry = CollectorRegistry()
    Counter("demo_things_total", "things", registry=registry).inc(3)
    server = HealthServer(registry=registry)
    ready = {"nats": True}
    server.add_check("nats", lambda: ready["nats"])
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/healthz")).status_code == 200
            response = await client.get("/readyz")
            assert response.status_code == 200
            ready["nats"] = False
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert json.loads(response.text)["checks"] == {"nats": False}
            metrics = await client.get("/metrics")
            assert "demo_things_total 3.0" in metrics.text
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/healthz")).status_code == 405
    finally:
        await server.stop()
