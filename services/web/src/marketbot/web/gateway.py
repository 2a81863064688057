"""The one way the web app reaches the platform: the signal gateway's HTTP API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class GatewayError(Exception):
    """The gateway refused (4xx/5xx with its ``{"error": {code, message, field}}``) or did
    not answer (status 503, code ``unavailable``)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


@dataclass
class GatewayClient:
    base_url: str
    http: httpx.AsyncClient

    async def call(
        self,
        method: str,
        path: str,
        token: str | None,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self.http.request(
                method,
                f"{self.base_url}{path}",
                headers=headers,
                json=json,
                params={k: v for k, v in (params or {}).items() if v not in (None, "")},
            )
        except httpx.HTTPError as exc:
            raise GatewayError(
                503, "unavailable", f"the platform did not answer ({type(exc).__name__})"
            ) from exc
        if response.status_code >= 400:
            error: dict[str, Any] = {}
            try:
                body = response.json()
                if isinstance(body, dict) and isinstance(body.get("error"), dict):
                    error = body["error"]
            except ValueError:
                pass
            raise GatewayError(
                response.status_code,
                str(error.get("code") or "error"),
                str(error.get("message") or f"the platform answered {response.status_code}"),
                error.get("field"),
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def get(self, path: str, token: str, **params: Any) -> Any:
        return await self.call("GET", path, token, params=params)
