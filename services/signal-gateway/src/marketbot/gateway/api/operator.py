"""What the operator's pages read: the platform's status and the latest signals.

``GET /admin/status`` asks each service's health server named in ``STATUS_TARGETS`` for
``/readyz`` and ``/metrics`` (concurrently, 2 s each) and reports readiness, breaker states,
rate-limit headroom, open unknown outcomes and ledger lag; a service that does not answer is
shown not ready with the error, never a 5xx. ``GET /admin/signals`` lists the newest
``SignalReceived`` in the SIGNALS stream, newest first (the ids to open a trace with).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Query
from nats.js.errors import NotFoundError

from marketbot.contracts import ContractError, SignalReceived, decode
from marketbot.gateway.api.context import Caller, Gateway, admin, gateway
from marketbot.gateway.api.errors import ERROR_SCHEMA, ApiError
from marketbot.gateway.domain.status import PlatformStatus, ServiceStatus

router = APIRouter(
    prefix="/admin", tags=["admin"], responses={401: ERROR_SCHEMA, 403: ERROR_SCHEMA}
)
AdminDep = Depends(admin)
GatewayDep = Depends(gateway)
SCRAPE_TIMEOUT = 2.0


async def _scrape(
    client: httpx.AsyncClient, name: str, base: str
) -> tuple[ServiceStatus, str | None]:
    base = base.rstrip("/")
    try:
        ready, metrics = await asyncio.gather(
            client.get(f"{base}/readyz"), client.get(f"{base}/metrics")
        )
    except httpx.HTTPError as exc:
        return ServiceStatus(name, False, error=f"no answer: {type(exc).__name__}"), None
    checks: dict[str, bool] = {}
    with contextlib.suppress(ValueError):
        body = ready.json()
        if isinstance(body, dict) and isinstance(body.get("checks"), dict):
            checks = {str(k): bool(v) for k, v in body["checks"].items()}
    error = None if ready.status_code == 200 else f"/readyz answered {ready.status_code}"
    text = metrics.text if metrics.status_code == 200 else None
    return ServiceStatus(name, ready.status_code == 200, checks, error), text


@router.get("/status")
async def platform_status(_who: Caller = AdminDep, gw: Gateway = GatewayDep) -> dict[str, Any]:
    status = PlatformStatus()
    nats_ok = gw.bus is not None and gw.bus.nc.is_connected
    status.services.append(ServiceStatus("signal-gateway", nats_ok, {"nats": nats_ok}))
    targets = sorted(gw.settings.status_targets.items())
    async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT) as client:
        results = await asyncio.gather(*(_scrape(client, n, url) for n, url in targets))
    for service, exposition in results:
        status.services.append(service)
        if exposition is not None:
            status.add_metrics(service.name, exposition)
    body = status.as_dict()
    body["configured"] = bool(targets)
    return body


def _signal_out(event: SignalReceived) -> dict[str, Any]:
    return {
        "signal_id": str(event.signal_id),
        "source": event.source,
        "symbol": event.symbol,
        "action": event.action.value,
        "price": format(event.price, "f") if event.price is not None else None,
        "exchange": event.exchange.value if event.exchange else None,
        "strategy": event.strategy,
        "received_at": event.received_at.isoformat(),
    }


@router.get("/signals")
async def recent_signals(
    limit: int = Query(default=20, ge=1, le=200),
    _who: Caller = AdminDep,
    gw: Gateway = GatewayDep,
) -> dict[str, Any]:
    if gw.bus is None:
        raise ApiError(503, "unavailable", "the gateway has no bus connection", None)
    name = gw.bus.stream("SIGNALS")
    try:
        info = await gw.bus.js.stream_info(name)
    except Exception as exc:
        raise ApiError(
            503, "unavailable", "the signal stream did not answer", None, {"Retry-After": "1"}
        ) from exc
    signals: list[dict[str, Any]] = []
    seq = info.state.last_seq
    while seq >= max(info.state.first_seq, 1) and len(signals) < limit:
        with contextlib.suppress(NotFoundError, ContractError):
            message = await gw.bus.js.get_msg(name, seq)
            event = decode(message.data or b"")
            if isinstance(event, SignalReceived):
                signals.append(_signal_out(event))
        seq -= 1
    return {"signals": signals}
