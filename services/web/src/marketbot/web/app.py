"""Composition root: settings -> the gateway client -> the FastAPI app; ``main`` serves it
under uvicorn beside the runtime's health server (``/metrics``, ``/healthz``, ``/readyz``)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import Counter
from starlette.exceptions import HTTPException as StarletteHTTPException

from marketbot.runtime.clock import Clock, SystemClock
from marketbot.runtime.health import HealthServer
from marketbot.runtime.logs import configure_logging, get_logger
from marketbot.web import auth, live, operator, pages
from marketbot.web.context import HERE, PageError, Web, redirect
from marketbot.web.gateway import GatewayClient, GatewayError
from marketbot.web.session import LoginLimiter, SessionCodec
from marketbot.web.settings import WebSettings

log = get_logger("marketbot.web")

PAGES = Counter("marketbot_web_pages_total", "Pages served, by status class", ["status"])


@dataclass
class WebDeps:
    http: httpx.AsyncClient
    clock: Clock = field(default_factory=SystemClock)
    ws_connect: live.Connector | None = None


def create_app(settings: WebSettings, deps: WebDeps) -> FastAPI:
    app = FastAPI(title="marketbot web", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = Web(
        settings=settings,
        gateway=GatewayClient(settings.gateway_url, deps.http),
        codec=SessionCodec(settings.session_key_bytes()),
        limiter=LoginLimiter(
            settings.login_attempts_per_minute / 60.0, settings.login_attempts_burst
        ),
        clock=deps.clock,
    )
    app.state.ws_connect = deps.ws_connect or live.connector()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(auth.router)
    app.include_router(pages.router)
    app.include_router(operator.router)
    app.include_router(live.router)

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        PAGES.labels(f"{response.status_code // 100}xx").inc()
        return response

    async def on_page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        w: Web = request.app.state.web
        if exc.redirect is not None:
            response: Response = redirect(exc.redirect)
            if request.headers.get("hx-request"):
                response = Response(status_code=204, headers={"HX-Redirect": exc.redirect})
            if exc.status == 401:
                w.clear_session(response)
            return response
        return w.render(
            request,
            "error.html",
            exc.status,
            session=w.session(request),
            title=exc.title,
            message=exc.message,
        )

    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        from marketbot.web.context import from_gateway

        w: Web = request.app.state.web
        return await on_page_error(request, from_gateway(exc, w.session(request)))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        w: Web = request.app.state.web
        titles = {404: "Not found", 405: "Not allowed", 422: "Refused"}
        return w.render(
            request,
            "error.html",
            exc.status_code,
            session=w.session(request),
            title=titles.get(exc.status_code, "Refused"),
            message="There is no such page." if exc.status_code == 404 else str(exc.detail),
        )

    app.add_exception_handler(PageError, on_page_error)
    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    return app


async def serve(settings: WebSettings) -> None:
    configure_logging(settings.service_name, settings.log_level)
    async with httpx.AsyncClient(timeout=settings.gateway_timeout_seconds) as http:
        app = create_app(settings, WebDeps(http))
        health = HealthServer(settings.http_host, settings.metrics_port)

        async def gateway_answers() -> bool:
            response = await http.get(f"{settings.gateway_url}/openapi.json", timeout=2.0)
            return response.status_code == 200

        health.add_check("gateway", gateway_answers)
        await health.start()
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=False,  # X-Forwarded-For is judged by TRUSTED_PROXIES
            ws_ping_interval=20.0,
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        if settings.session_key is None:
            log.warning("no session key configured: sessions end when this process restarts")
        log.info("web listening", host=settings.http_host, port=settings.http_port)
        try:
            await server.serve()
        finally:
            with contextlib.suppress(Exception):
                await health.stop()


def main() -> None:
    asyncio.run(serve(WebSettings()))


if __name__ == "__main__":
    main()
