"""Binance Spot on the shared engine: signed query strings, X-MBX-APIKEY, request weights."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from marketbot.contracts import Exchange, RejectReason
from marketbot.exchanges import metrics
from marketbot.exchanges.binance import constants as c
from marketbot.exchanges.binance.errors import error_for
from marketbot.exchanges.errors import (
    ExchangeError,
    IpBannedError,
    OutcomeUnknown,
    RateLimited,
    Rejected,
)
from marketbot.exchanges.http import Costs, Endpoint, Params, VenueHttp, Wire
from marketbot.exchanges.ratelimit import PER_KEY, WindowBucket
from marketbot.exchanges.signer import Signature
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.exchanges.binance")

TIME_ENDPOINT = Endpoint("GET", c.TIME)
LIMITS_ENDPOINT = Endpoint("GET", c.EXCHANGE_INFO)
# -1015 "Too many new orders": the per-account order count, not the IP's weight (errors.md).
_ORDER_COUNT_CODE = -1015
_INTERVAL_S = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}
_LETTER_S = {"S": 1.0, "M": 60.0, "H": 3600.0, "D": 86400.0}
_ORDER_COUNT = re.compile(r"x-mbx-order-count-(\d+)([smhd])")


class BinanceHttp(VenueHttp):
    exchange = Exchange.BINANCE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recv_window = str(self.settings.recv_window_ms)
        self._weight: WindowBucket = self.limiter.bucket(
            ("ip", "weight"),
            c.REQUEST_WEIGHT_LIMIT,
            c.REQUEST_WEIGHT_WINDOW_S,
            safety=self.settings.rate_limit_safety,
        )
        self._raw: list[WindowBucket] = []
        self.order_limits: list[tuple[int, float]] = [(c.ORDERS_LIMIT, c.ORDERS_WINDOW_S)]
        # the highest used weight an accepted response reported, and when (monotonic)
        self._accepted_used = (0.0, -1e18)
        self._limits_due = 0.0 if self.settings.limits_refresh_s is not None else None
        self._limits_lock = asyncio.Lock()

    async def before_send(self, endpoint: Endpoint) -> None:
        """Learn the exchange's own limits (``exchangeInfo.rateLimits``) before spending."""
        due = self._limits_due
        if due is None or endpoint.path in (c.EXCHANGE_INFO, c.TIME):
            return
        if self.clock.monotonic() < due:
            return
        async with self._limits_lock:
            if self._limits_due is None or self.clock.monotonic() < self._limits_due:
                return
            refresh = self.settings.limits_refresh_s or 300.0
            try:
                payload = await self.call(LIMITS_ENDPOINT, {"symbol": "BTCUSDT"})
            except ExchangeError as exc:
                log.warning("could not load the exchange's rate limits", error=str(exc))
                self._limits_due = self.clock.monotonic() + min(refresh, 10.0)
                return
            if isinstance(payload, dict):
                self.apply_rate_limits(payload.get("rateLimits", []))
            self._limits_due = self.clock.monotonic() + refresh

    def apply_rate_limits(self, rate_limits: Iterable[Mapping[str, Any]]) -> None:
        """Adopt ``exchangeInfo.rateLimits`` instead of the documented defaults."""
        safety = self.settings.rate_limit_safety
        orders: list[tuple[int, float]] = []
        raw: list[WindowBucket] = []
        for item in rate_limits:
            window = _INTERVAL_S.get(str(item.get("interval")), 0.0) * int(
                item.get("intervalNum", 1)
            )
            limit = int(item.get("limit", 0))
            if window <= 0 or limit <= 0:
                continue
            kind = item.get("rateLimitType")
            if kind == "REQUEST_WEIGHT" and window == c.REQUEST_WEIGHT_WINDOW_S:
                self._weight = self.limiter.bucket(("ip", "weight"), limit, window, safety=safety)
            elif kind == "RAW_REQUESTS":
                raw.append(
                    self.limiter.bucket(("ip", "raw", str(window)), limit, window, safety=safety)
                )
            elif kind == "ORDERS":
                orders.append((limit, window))
        self._raw = raw
        if orders:
            self.order_limits = orders

    def encode(self, endpoint: Endpoint, params: Params, timestamp_ms: int | None) -> Wire:
        items = list(params.items())
        if timestamp_ms is not None:
            items.append(("recvWindow", self._recv_window))
            items.append(("timestamp", str(timestamp_ms)))
        query = urlencode(items, quote_via=quote, safe="")
        return Wire(endpoint.method, endpoint.path, query, "", {})

    def attach(self, wire: Wire, timestamp_ms: int, signature: Signature) -> None:
        wire.query = f"{wire.query}&signature={signature.signature}"
        wire.headers["X-MBX-APIKEY"] = signature.api_key

    def weight(self, endpoint: Endpoint, params: Params) -> int:
        key = (endpoint.method, endpoint.path)
        if "symbol" not in params and key in c.WEIGHTS_WITHOUT_SYMBOL:
            return c.WEIGHTS_WITHOUT_SYMBOL[key]
        if "orderId" in params and key in c.WEIGHTS_WITH_ORDER_ID:
            return c.WEIGHTS_WITH_ORDER_ID[key]
        return c.WEIGHTS.get(key, 1)

    def ip_costs(self, endpoint: Endpoint, params: Params) -> Costs:
        costs: Costs = [(self._weight, float(self.weight(endpoint, params)))]
        costs.extend((bucket, 1.0) for bucket in self._raw)
        return costs

    async def spend_weight(self, weight: int) -> None:
        """Charge the per-IP weight budget for a WS API request or connection: "Weight is
        accumulated per IP address and is shared by all connections from that address"
        (web-socket-api.md "IP limits"; connecting costs 2, a user data subscription 2)."""
        tokens = await self.limiter.acquire([(self._weight, float(weight))])
        tokens.settle()

    def _order_bucket(self, api_key: str, limit: int, window: float) -> WindowBucket:
        return self.limiter.bucket(
            (PER_KEY, api_key, "orders", str(window)),
            limit,
            window,
            safety=self.settings.rate_limit_safety,
        )

    def key_costs(self, endpoint: Endpoint, api_key: str) -> Costs:
        count = c.ORDER_COUNTED.get((endpoint.method, endpoint.path))
        if not count:
            return []
        return [
            (self._order_bucket(api_key, limit, window), float(count))
            for limit, window in self.order_limits
        ]

    def observe(self, endpoint: Endpoint, response: httpx.Response, api_key: str | None) -> None:
        headers = response.headers
        used = headers.get(c.USED_WEIGHT_HEADER)
        status = response.status_code
        if used is not None and used.isdigit():
            self._weight.observe_used(float(used))
            if status < 400:
                now = self.clock.monotonic()
                best, at = self._accepted_used
                if float(used) >= best or now - at > self._weight.window_s:
                    self._accepted_used = (float(used), now)
        if status in (418, 429):
            self._on_limit_answer(response, api_key)
        if api_key is None or (endpoint.method, endpoint.path) not in c.ORDER_COUNTED:
            return
        for name, value in headers.items():
            match = _ORDER_COUNT.fullmatch(name.lower())
            if match is None or not value.isdigit():
                continue
            window = int(match.group(1)) * _LETTER_S[match.group(2).upper()]
            for limit, limit_window in self.order_limits:
                if limit_window == window:
                    self._order_bucket(api_key, limit, window).observe_used(float(value))

    def _on_limit_answer(self, response: httpx.Response, api_key: str | None) -> None:
        """A 429 or 418: hold (or ban) before anything else is sent, and lower the budget."""
        status = response.status_code
        metrics.LIMIT_ANSWERS.labels(self.exchange.value, str(status)).inc()
        if status == 418:
            return  # decode() bans for the Retry-After
        wait = self._retry_after(response, 1.0)
        code: object = None
        try:
            payload = json.loads(response.content)
            code = payload.get("code") if isinstance(payload, dict) else None
        except ValueError:
            pass
        if code == _ORDER_COUNT_CODE and api_key is not None:
            # "Unfilled Order Count ... tracked for each account": only this key waits.
            for limit, window in self.order_limits:
                self._order_bucket(api_key, limit, window).block_for(wait)
            return
        # The IP's request weight (-1003): "back off and not spam the API" (rest-api.md
        # LIMITS). Nothing leaves until Retry-After, and the exchange has just shown where
        # its limit is: never plan above the highest weight it accepted in this window.
        self.limiter.hold(wait)
        best, at = self._accepted_used
        if best > 0 and self.clock.monotonic() - at <= self._weight.window_s:
            self._weight.lower_budget(best * self.settings.rate_limit_safety)
        if self._limits_due is not None:
            self._limits_due = 0.0  # ask for the exchange's limits again after the hold

    def _retry_after(self, response: httpx.Response, default: float) -> float:
        text = response.headers.get(c.RETRY_AFTER_HEADER)
        try:
            return max(0.0, float(text)) if text else default
        except ValueError:
            return default

    def decode(self, endpoint: Endpoint, response: httpx.Response) -> Any:
        status = response.status_code
        if status == 418:
            ban = self._retry_after(response, self.settings.ban_fallback_s or c.DEFAULT_BAN_S)
            self.limiter.ban(ban)
            raise IpBannedError(
                f"HTTP 418: IP auto-banned for {ban:.0f}s; all traffic stopped",
                retry_after_s=ban,
                exchange=self.exchange,
                http_status=status,
            )
        if status == 429:
            wait = self._retry_after(response, 1.0)
            raise RateLimited(
                f"HTTP 429: request rate limit broken; back off {wait:.0f}s",
                retry_after_s=wait,
                exchange=self.exchange,
                http_status=status,
            )
        if status >= 500:
            raise OutcomeUnknown(
                f"HTTP {status} on {endpoint.name}: execution status unknown",
                exchange=self.exchange,
                http_status=status,
            )
        try:
            payload = json.loads(response.content)
        except ValueError as exc:
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
        if status < 400:
            return payload
        if isinstance(payload, dict) and isinstance(payload.get("code"), int):
            raise error_for(
                payload["code"],
                str(payload.get("msg", "")),
                http_status=status,
                retry_after_s=self._retry_after(response, 1.0),
            )
        raise Rejected(
            f"HTTP {status} on {endpoint.name}",
            reason=RejectReason.EXCHANGE,
            exchange=self.exchange,
            http_status=status,
        )

    async def fetch_server_time_ms(self) -> int:
        payload = await self.call(TIME_ENDPOINT)
        return int(payload["serverTime"])
