"""POST /webhooks/tradingview/{source}: an alert in, a SignalReceived durably in JetStream out."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from marketbot.contracts import SignalReceived
from marketbot.gateway.api.context import Gateway, gateway
from marketbot.gateway.api.errors import ERROR_SCHEMA, ApiError, error_response
from marketbot.gateway.domain.alerts import (
    RawAlert,
    canonical,
    check_fresh,
    read_body,
    signal_id_for,
    validate_alert,
)
from marketbot.gateway.domain.auth import token_matches
from marketbot.gateway.domain.errors import ClientError
from marketbot.gateway.domain.sources import SOURCE_NAME
from marketbot.runtime.bus import BusError
from marketbot.runtime.logs import correlation, get_logger

log = get_logger("marketbot.gateway.webhooks")

WEBHOOKS = Counter(
    "marketbot_gateway_webhook_requests_total",
    "TradingView webhook requests by HTTP status and outcome code",
    ["status", "code"],
)
WEBHOOK_SECONDS = Histogram(
    "marketbot_gateway_webhook_seconds",
    "Webhook handling time, from the request to the answer (202 after the JetStream ack)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3),
)
DEDUPLICATED = Counter(
    "marketbot_gateway_webhook_deduplicated_total",
    "Alerts JetStream already had (TradingView resends, duplicated deliveries)",
)

router = APIRouter(tags=["webhooks"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["symbol", "action"],
                    "properties": {
                        "symbol": {"type": "string", "example": "BTCUSDT"},
                        "action": {"type": "string", "enum": ["buy", "sell", "close"]},
                        "price": {"type": "string", "example": "95000"},
                        "time": {"type": "string", "example": "2026-11-24T12:00:00Z"},
                        "strategy": {"type": "string"},
                        "sl": {"type": "string", "description": "stop loss, percent"},
                        "tp": {"type": "string", "description": "take profit, percent"},
                        "exchange": {"type": "string", "enum": ["bybit", "binance"]},
                        "passphrase": {"type": "string", "description": "the source token"},
                    },
                }
            },
            "text/plain": {
                "schema": {"type": "string", "example": "BUY BTCUSDT @ 95000 sl=2 tp=4"}
            },
        },
    }
}


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, "token")


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the body is over {limit} bytes", "body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the body is over {limit} bytes", "body")
        chunks.append(chunk)
    return b"".join(chunks)


async def _authenticate(gw: Gateway, source: str, url_token: str | None, raw: RawAlert) -> None:
    token = url_token or raw.passphrase
    if not token:
        raise _unauthorized(
            "missing_token", "put the source token in the URL (?token=...) or as 'passphrase'"
        )
    stored = await gw.source_token_hash(source) if SOURCE_NAME.match(source) else None
    if not token_matches(token, stored):
        raise _unauthorized("invalid_token", "unknown source or wrong token")


async def accept_alert(gw: Gateway, source: str, request: Request, url_token: str | None) -> Any:
    settings = gw.settings
    peer = request.client.host if request.client else None
    # Every X-Forwarded-For line, in order: several lines are one comma-joined list
    # (RFC 9110 5.3); reading only the first would let a hop appended in a second line
    # (by a proxy that adds lines) go unseen.
    forwarded = ",".join(request.headers.getlist("x-forwarded-for")) or None
    address = gw.ip_policy.client_address(peer, forwarded)
    if not gw.ip_policy.permits(address):
        raise ApiError(
            403,
            "ip_not_allowed",
            f"{address or 'the caller'} is not on the allow-list",
            "client_ip",
        )
    body = await _read_limited(request, settings.max_body_bytes)
    raw = read_body(body, request.headers.get("content-type"))
    await _authenticate(gw, source, url_token, raw)
    wait = gw.limiter.take(source, gw.clock.monotonic())
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"too many alerts for source {source!r}; retry in {wait:.1f} s",
            "source",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )
    alert = validate_alert(raw)
    now = gw.clock.now()
    check_fresh(
        alert,
        now,
        timedelta(seconds=settings.max_alert_age_seconds),
        timedelta(seconds=settings.max_clock_skew_seconds),
    )
    body_text = canonical(alert, now, timedelta(seconds=settings.untimed_dedup_seconds))
    signal_id = signal_id_for(source, body_text)
    try:
        signal = SignalReceived(
            event_id=signal_id,
            occurred_at=now,
            correlation_id=str(signal_id),
            signal_id=signal_id,
            source=source,
            symbol=alert.symbol,
            action=alert.action,
            price=alert.price,
            alert_time=alert.alert_time,
            received_at=now,
            strategy=alert.strategy,
            stop_loss_percent=alert.stop_loss_percent,
            take_profit_percent=alert.take_profit_percent,
            exchange=alert.exchange,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or None
        raise ApiError(
            422, str(first.get("type", "invalid")), str(first.get("msg")), field
        ) from exc
    with correlation(str(signal_id), source=source):
        try:
            duplicate = await gw.publish_signal(signal)
        except BusError as exc:
            log.warning("signal not stored; answering 503", error=str(exc))
            raise ApiError(
                503,
                "unavailable",
                "the signal could not be stored; retry",
                None,
                {"Retry-After": "1"},
            ) from exc
        if duplicate:
            DEDUPLICATED.inc()
    return {"signal_id": str(signal_id), "duplicate": duplicate, "status": "accepted"}


@router.post(
    "/webhooks/tradingview/{source}",
    status_code=202,
    summary="Receive a TradingView alert",
    openapi_extra=_BODY_DOC,
    responses={
        202: {
            "description": "stored in JetStream; the same alert always gets the same signal id",
            "content": {
                "application/json": {
                    "example": {
                        "signal_id": "0b6f...",
                        "duplicate": False,
                        "status": "accepted",
                    }
                }
            },
        },
        **{code: ERROR_SCHEMA for code in (400, 401, 403, 413, 415, 422, 429)},
        503: {"description": "not stored; TradingView resends and the resend is de-duplicated"},
    },
)
async def tradingview_webhook(
    source: str,
    request: Request,
    token: str | None = Query(default=None, description="the source token (or 'passphrase')"),
) -> JSONResponse:
    gw = gateway(request)
    started = time.perf_counter()
    try:
        result = await accept_alert(gw, source, request, token)
    except ClientError as exc:
        response = error_response(ApiError.from_client_error(exc))
        WEBHOOKS.labels(str(response.status_code), exc.code).inc()
    except ApiError as exc:
        response = error_response(exc)
        WEBHOOKS.labels(str(exc.status), exc.code).inc()
    else:
        response = JSONResponse(result, status_code=202)
        WEBHOOKS.labels("202", "duplicate" if result["duplicate"] else "accepted").inc()
    WEBHOOK_SECONDS.observe(time.perf_counter() - started)
    return response
