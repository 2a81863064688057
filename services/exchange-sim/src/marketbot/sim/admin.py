"""``SimAdmin``: the async client of the simulator's admin API (``/__admin/`` on every port)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx


class SimAdminError(Exception):
    """The admin API refused a request."""


class SimAdmin:
    """Admin client for one simulator port (Bybit, Binance or market data)."""

    def __init__(self, base_url: str, *, client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=10.0)
        self._owns_client = client is None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> SimAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(
        self,
        method: str,
        route: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        response = await self._client.request(
            method, f"{self.base_url}/__admin/{route}", json=json, params=params
        )
        if response.status_code != 200:
            raise SimAdminError(f"{method} {route}: {response.status_code} {response.text}")
        return response.json()

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "health")
        return result

    async def create_account(self, account_id: str | None = None) -> str:
        result = await self._call("POST", "accounts", json={"account_id": account_id})
        return str(result["account_id"])

    async def create_api_key(
        self,
        account_id: str,
        *,
        read: bool = True,
        trade: bool = True,
        withdraw: bool = False,
        ips: list[str] | None = None,
        expires_at_ms: int | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        extra_permissions: list[str] | None = None,
    ) -> tuple[str, str]:
        """A new key; ``api_key``/``api_secret`` pin them (e.g. the docs' test vectors)."""
        result = await self._call(
            "POST",
            "keys",
            json={
                "account_id": account_id,
                "read": read,
                "trade": trade,
                "withdraw": withdraw,
                "ips": ips,
                "expires_at_ms": expires_at_ms,
                "api_key": api_key,
                "api_secret": api_secret,
                "extra_permissions": extra_permissions or [],
            },
        )
        return str(result["api_key"]), str(result["api_secret"])

    async def set_key_permissions(
        self, api_key: str, extra_permissions: list[str], *, withdraw: bool | None = None
    ) -> None:
        """Change what an existing key may do, as its owner would on the exchange."""
        body: dict[str, Any] = {"api_key": api_key, "extra_permissions": extra_permissions}
        if withdraw is not None:
            body["withdraw"] = withdraw
        await self._call("POST", "keys/permissions", json=body)

    async def fund(self, account_id: str, asset: str, amount: Decimal) -> None:
        await self._call(
            "POST", "fund", json={"account_id": account_id, "asset": asset, "amount": str(amount)}
        )

    async def balances_detail(self, account_id: str) -> dict[str, dict[str, Decimal]]:
        """Per asset ``{"free": ..., "locked": ...}``."""
        result = await self._call("GET", "balances", params={"account_id": account_id})
        return {
            asset: {"free": Decimal(v["free"]), "locked": Decimal(v["locked"])}
            for asset, v in result["balances"].items()
        }

    async def balances(self, account_id: str) -> dict[str, Decimal]:
        """Total balance (free + locked) per asset."""
        detail = await self.balances_detail(account_id)
        return {asset: v["free"] + v["locked"] for asset, v in detail.items()}

    async def set_price(self, symbol: str, price: Decimal) -> None:
        await self._call("POST", "prices", json={"symbol": symbol, "price": str(price)})

    async def set_liquidity(self, symbol: str, max_qty: Decimal | None) -> None:
        """Cap what one taker order can execute (``None`` lifts the cap): the rest of an IOC
        or market order then ends unfilled, as with a thin order book."""
        await self._call(
            "POST",
            "liquidity",
            json={"symbol": symbol, "max_qty": None if max_qty is None else str(max_qty)},
        )

    async def hold_triggers(self, hold: bool) -> int:
        """Hold triggered orders unexecuted in TRIGGERED (Bybit "Triggered": the instant
        between a conditional order's trigger and its order, made observable); ``False``
        executes the held ones at the current price. Returns how many were released."""
        result = await self._call("POST", "triggers", json={"hold": hold})
        return int(result["released"])

    async def step_prices(self, steps: int = 1) -> dict[str, Decimal]:
        result = await self._call("POST", "prices/step", json={"steps": steps})
        return {s: Decimal(p) for s, p in result["prices"].items()}

    async def prices(self) -> dict[str, Decimal]:
        result = await self._call("GET", "prices")
        return {s: Decimal(p) for s, p in result["prices"].items()}

    async def price(self, symbol: str) -> Decimal:
        return (await self.prices())[symbol]

    async def set_fault(
        self,
        kind: str,
        *,
        rate: float | None = None,
        next_n: int | None = None,
        latency_ms: int | None = None,
        path: str | None = None,
        status: int = 503,
        method: str | None = None,
    ) -> None:
        """kind: latency | http_5xx | drop | executed_5xx | executed_drop | executed_late |
        executed_slow (executed at once, answered ``latency_ms`` later).

        ``path`` matches exactly, or as a prefix when it ends with ``*``; ``method`` (GET,
        POST, DELETE, ...) narrows the rule to one method (``None``: every method).
        ``latency`` delays the answer (the signed timestamp was checked on arrival, so a
        create delayed past the client's read timeout still executes: late execution after
        a client-side timeout); ``executed_late`` answers the venue's timeout error at once
        and executes the request ``latency_ms`` later. On the other kinds ``latency_ms``
        delays the fault (``drop`` after 3 s: a client timeout with nothing executed).
        """
        await self._call(
            "POST",
            "faults",
            json={
                "kind": kind,
                "rate": rate,
                "next_n": next_n,
                "latency_ms": latency_ms,
                "path": path,
                "status": status,
                "method": method,
            },
        )

    async def clear_faults(self) -> None:
        await self._call("DELETE", "faults")

    async def stats(self) -> dict[str, Any]:
        """Ground truth since the last reset: ``statuses`` (count per HTTP status),
        ``limit_answers`` ("429" / "418" / "403" / Bybit "10006" counts), ``limit_events``
        (``[server_ms, what]`` each), ``late_executions`` (late-executed requests that
        succeeded) and ``late_pending`` (still waiting to execute)."""
        result: dict[str, Any] = await self._call("GET", "stats")
        return result

    async def requests(self, *, since_ms: int = 0, account_id: str | None = None) -> dict[str, Any]:
        """The request log (every non-admin HTTP request) since ``since_ms`` (server time),
        optionally of one account: ``requests`` [[ms, method, path, account]], ``counts``
        per "METHOD path", ``total``. Cleared with the stats."""
        params = {"since_ms": str(since_ms)}
        if account_id is not None:
            params["account_id"] = account_id
        result: dict[str, Any] = await self._call("GET", "requests", params=params)
        return result

    async def server_ms(self) -> int:
        """The exchange's clock now (for ``requests(since_ms=...)``)."""
        result = await self._call("POST", "clock/now", json={})
        return int(result["server_time"])

    async def clear_stats(self) -> None:
        await self._call("DELETE", "stats")

    async def set_limits(
        self, enabled: bool, *, ban_seconds: int | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """Switch rate limits; ``ban_seconds`` shortens the IP ban (Bybit 403, Binance 418 base).

        Other overrides: Bybit ``ip_limit``, ``uid_limits``; Binance ``weight_limit``,
        ``orders_10s``, ``orders_1d``. Counters and bans are cleared.
        """
        result: dict[str, Any] = await self._call(
            "POST", "limits", json={"enabled": enabled, "ban_seconds": ban_seconds, **overrides}
        )
        return result

    async def set_clock_offset(self, offset_ms: int) -> None:
        """Shift the exchange's server time (both venues share one clock)."""
        await self._call("POST", "clock", json={"offset_ms": offset_ms})

    async def orders(self, account_id: str | None = None) -> list[dict[str, Any]]:
        params = {"account_id": account_id} if account_id is not None else None
        result = await self._call("GET", "orders", params=params)
        orders: list[dict[str, Any]] = result["orders"]
        return orders

    async def set_market_data(
        self,
        *,
        fear_greed: int | None = None,
        classification: str | None = None,
        btc_dominance: float | None = None,
        eth_dominance: float | None = None,
        market_cap_change_24h: float | None = None,
        changes_24h: dict[str, float] | None = None,
        all_changes_24h: float | None = None,
    ) -> dict[str, Any]:
        """Market-data port only. ``changes_24h`` maps a CoinGecko id or symbol to a % change."""
        result: dict[str, Any] = await self._call(
            "POST",
            "market-data",
            json={
                "fear_greed": fear_greed,
                "classification": classification,
                "btc_dominance": btc_dominance,
                "eth_dominance": eth_dominance,
                "market_cap_change_24h": market_cap_change_24h,
                "changes_24h": changes_24h,
                "all_changes_24h": all_changes_24h,
            },
        )
        return result

    async def streams(self) -> dict[str, Any]:
        """The open private-stream connections: ids, accounts, topics or subscriptions."""
        result: dict[str, Any] = await self._call("GET", "streams")
        return result

    async def disconnect_streams(
        self, account_id: str | None = None, *, after_events: int = 0, mode: str = "drop"
    ) -> list[str]:
        """Cut the private streams of ``account_id`` (all when None) now, or once each has
        sent ``after_events`` more events; the cut connection ids. ``mode``: "drop" (no
        close frame), "close" (1001), "stall" (open and silent: events and answers stop)."""
        body: dict[str, Any] = {"after_events": after_events, "mode": mode}
        if account_id is not None:
            body["account_id"] = account_id
        result = await self._call("POST", "streams/disconnect", json=body)
        return [str(c) for c in result["cut"]]

    async def stream_settings(self, **settings: Any) -> dict[str, Any]:
        """Change the streams' expiries for a test: ``lifetime_s`` (Binance 24 h),
        ``idle_s`` (Bybit 10 minutes), ``scan_s`` (how often checked, 30 s), ``accepting``
        (False: refuse every new connection, an outage). Restored by ``reset``."""
        result: dict[str, Any] = await self._call("POST", "streams/expiry", json=settings)
        return result

    async def shutdown_streams(self) -> list[str]:
        """Every stream is told the server shuts down (Binance ``serverShutdown``) and
        closed."""
        result = await self._call("POST", "streams/shutdown", json={})
        return [str(c) for c in result["shut"]]

    async def reset(self, *, prices: bool = True) -> None:
        await self._call("POST", "reset", json={"prices": prices})
