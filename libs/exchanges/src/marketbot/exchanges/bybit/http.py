"""Bybit V5 on the shared engine: JSON bodies, X-BAPI-* headers, retCode envelope."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from marketbot.contracts import Exchange, RejectReason
from marketbot.exchanges import metrics
from marketbot.exchanges.bybit import constants as c
from marketbot.exchanges.bybit.errors import error_for
from marketbot.exchanges.errors import IpBannedError, OutcomeUnknown, RateLimited, Rejected
from marketbot.exchanges.http import Costs, Endpoint, Params, VenueHttp, Wire
from marketbot.exchanges.ratelimit import PER_KEY, WindowBucket
from marketbot.exchanges.signer import Signature, SigningInput

TIME_ENDPOINT = Endpoint("GET", c.TIME)


class BybitHttp(VenueHttp):
    exchange = Exchange.BYBIT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ip = self.limiter.bucket(
            ("ip",), c.IP_LIMIT, c.IP_WINDOW_S, safety=self.settings.rate_limit_safety
        )
        self._recv_window = str(self.settings.recv_window_ms)
        # Per-endpoint per-UID limits: documented defaults, replaced by what X-Bapi-Limit says.
        self._key_limits: dict[str, int] = dict(c.KEY_LIMITS_PER_S)

    def encode(self, endpoint: Endpoint, params: Params, timestamp_ms: int | None) -> Wire:
        if endpoint.method == "POST":
            body = json.dumps(dict(params), separators=(",", ":"))
            return Wire("POST", endpoint.path, "", body, {"Content-Type": "application/json"})
        query = urlencode(list(params.items()), quote_via=quote, safe="")
        return Wire(endpoint.method, endpoint.path, query, "", {})

    def wire_for(self, request: SigningInput) -> Wire:
        headers = {"Content-Type": "application/json"} if request.method == "POST" else {}
        return Wire(request.method, request.path, request.query, request.body, headers)

    def attach_signed(self, wire: Wire, request: SigningInput, signature: Signature) -> None:
        self.attach(wire, request.timestamp_ms, signature)
        wire.headers["X-BAPI-RECV-WINDOW"] = str(request.recv_window_ms)

    def attach(self, wire: Wire, timestamp_ms: int, signature: Signature) -> None:
        wire.headers["X-BAPI-API-KEY"] = signature.api_key
        wire.headers["X-BAPI-TIMESTAMP"] = str(timestamp_ms)
        wire.headers["X-BAPI-SIGN"] = signature.signature
        wire.headers["X-BAPI-RECV-WINDOW"] = self._recv_window
        wire.headers["X-BAPI-SIGN-TYPE"] = c.SIGN_TYPE_HMAC

    def ip_costs(self, endpoint: Endpoint, params: Params) -> Costs:
        return [(self._ip, 1.0)]

    def key_costs(self, endpoint: Endpoint, api_key: str) -> Costs:
        limit = self._key_limits.get(endpoint.path)
        if limit is None:
            return []
        return [(self._key_bucket(api_key, endpoint.path, limit), 1.0)]

    def _key_bucket(self, api_key: str, path: str, limit: int) -> WindowBucket:
        return self.limiter.bucket(
            (PER_KEY, api_key, path), limit, 1.0, safety=self.settings.rate_limit_safety
        )

    def observe(self, endpoint: Endpoint, response: httpx.Response, api_key: str | None) -> None:
        status = response.status_code
        if status in (403, 429):
            metrics.LIMIT_ANSWERS.labels(self.exchange.value, str(status)).inc()
        if status == 429:
            # "429: system level frequency protection" (error.mdx); no Retry-After is
            # documented: hold everything for a second rather than keep knocking.
            self.limiter.hold(1.0)
        if api_key is None:
            return
        headers = response.headers
        limit_text = headers.get("x-bapi-limit")
        remaining_text = headers.get("x-bapi-limit-status")
        if not limit_text or not remaining_text:
            return
        try:
            limit = int(limit_text)
            remaining = int(remaining_text)
        except ValueError:
            return
        if limit <= 0:
            return
        self._key_limits[endpoint.path] = limit
        bucket = self._key_bucket(api_key, endpoint.path, limit)
        bucket.observe_used(limit - remaining)
        if remaining <= 0:
            # X-Bapi-Limit-Reset-Timestamp: when this key's limit for the endpoint resets
            # (rate-limit_rate-limit.mdx); requests already queued for it wait too.
            bucket.block_for(self._reset_in_s(response))
            if b'"retCode":10006' in response.content:
                metrics.LIMIT_ANSWERS.labels(self.exchange.value, "10006").inc()

    def _reset_in_s(self, response: httpx.Response) -> float:
        reset = response.headers.get("x-bapi-limit-reset-timestamp")
        try:
            reset_ms = int(reset) if reset else 0
        except ValueError:
            reset_ms = 0
        if reset_ms <= 0:
            return 1.0
        return min(5.0, max(0.0, (reset_ms - self.time.now_ms() - self.time.safety_ms) / 1000))

    def decode(self, endpoint: Endpoint, response: httpx.Response) -> Any:
        status = response.status_code
        if status == 403:
            ban = self.settings.ban_fallback_s or c.IP_BAN_S
            self.limiter.ban(ban)
            raise IpBannedError(
                "HTTP 403: IP rate limit breached (access too frequent); all traffic stopped",
                retry_after_s=ban,
                exchange=self.exchange,
                http_status=status,
            )
        if status == 429:
            raise RateLimited(
                "HTTP 429: system level frequency protection",
                retry_after_s=1.0,
                exchange=self.exchange,
                http_status=status,
            )
        if status >= 500:
            raise OutcomeUnknown(
                f"HTTP {status} on {endpoint.name}", exchange=self.exchange, http_status=status
            )
        if status == 401:
            raise Rejected(
                "HTTP 401: invalid API key or missing authentication",
                reason=RejectReason.INVALID_KEY,
                exchange=self.exchange,
                http_status=status,
            )
        try:
            payload = json.loads(response.content)
            code = int(payload["retCode"])
        except (ValueError, KeyError, TypeError) as exc:
            if status >= 400:
                raise Rejected(
                    f"HTTP {status} on {endpoint.name}",
                    reason=RejectReason.EXCHANGE,
                    exchange=self.exchange,
                    http_status=status,
                ) from exc
            raise OutcomeUnknown(
                f"unreadable response to {endpoint.name}",
                exchange=self.exchange,
                http_status=status,
            ) from exc
        if code == 0:
            return payload.get("result")
        retry_after = self._reset_in_s(response) if code == 10006 else 1.0
        raise error_for(
            code, str(payload.get("retMsg", "")), http_status=status, retry_after_s=retry_after
        )

    async def fetch_server_time_ms(self) -> int:
        result = await self.call(TIME_ENDPOINT)
        return int(result["timeNano"]) // 1_000_000
