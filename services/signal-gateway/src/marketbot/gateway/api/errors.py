"""Every refusal is JSON ``{"error": {"code", "message", "field"}}`` with the right status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from marketbot.gateway.domain.errors import (
    ClientError,
    InvalidFieldError,
    MalformedError,
    UnsupportedMediaError,
)
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.gateway.api")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers

    @classmethod
    def from_client_error(cls, exc: ClientError) -> ApiError:
        if isinstance(exc, MalformedError):
            status = 400
        elif isinstance(exc, UnsupportedMediaError):
            status = 415
        elif isinstance(exc, InvalidFieldError):
            status = 422
        else:
            status = 400
        return cls(status, exc.code, exc.message, exc.field)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message, exc.field), status_code=exc.status, headers=exc.headers
    )


ERROR_SCHEMA = {
    "description": "refused: the body names the field and the rule",
    "content": {
        "application/json": {
            "example": error_body("missing", "symbol is required, e.g. BTCUSDT", "symbol")
        }
    },
}

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def _field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or (str(loc[0]) if loc else None)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def on_client_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ClientError)
        return error_response(ApiError.from_client_error(exc))

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        first = errors[0] if errors else {"type": "invalid", "msg": "invalid request", "loc": ()}
        code = str(first.get("type", "invalid"))
        status = 400 if code == "json_invalid" else 422
        field = _field(tuple(first.get("loc", ())))
        message = f"{field}: {first.get('msg', 'invalid')}" if field else str(first.get("msg"))
        return JSONResponse(error_body(code, message, field), status_code=status)

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", error=repr(exc), exc_info=exc)
        return JSONResponse(
            error_body("internal", "the gateway failed; try again"), status_code=500
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(ClientError, on_client_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
