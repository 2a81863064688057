"""What every page handler needs: the web app's state, the caller's session, CSRF checks,
and rendering (security headers, the session cookie)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from marketbot.runtime.clock import Clock, SystemClock
from marketbot.web import views
from marketbot.web.gateway import GatewayClient, GatewayError
from marketbot.web.session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginLimiter,
    Session,
    SessionCodec,
    client_ip,
)
from marketbot.web.settings import WebSettings

HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(HERE / "templates"))
    t.env.globals.update(
        num=views.num,
        key_verdict=views.key_verdict,
        permissions_text=views.permissions_text,
    )
    return t


@dataclass
class Web:
    settings: WebSettings
    gateway: GatewayClient
    codec: SessionCodec
    limiter: LoginLimiter
    clock: Clock = field(default_factory=SystemClock)
    pages: Jinja2Templates = field(default_factory=templates)

    @property
    def ws_url(self) -> str:
        return "ws" + self.settings.gateway_url.removeprefix("http") + "/ws"

    def client_ip(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return client_ip(
            peer, request.headers.get("x-forwarded-for"), self.settings.trusted_proxies
        )

    def login_wait(self, request: Request) -> int:
        wait = self.limiter.take(self.client_ip(request), self.clock.monotonic())
        return math.ceil(wait) if wait > 0 else 0

    def session(self, request: Request) -> Session | None:
        return self.codec.open(request.cookies.get(SESSION_COOKIE), self.clock.now().timestamp())

    def render(
        self,
        request: Request,
        template: str,
        status_code: int = 200,
        session: Session | None = None,
        **context: Any,
    ) -> HTMLResponse:
        response = self.pages.TemplateResponse(
            request,
            template,
            {"session": session, "path": request.url.path, **context},
            status_code=status_code,
        )
        response.headers.update(SECURITY_HEADERS)
        return response

    def set_session(self, response: Response, session: Session) -> None:
        max_age = max(0, int(session.expires_at - self.clock.now().timestamp()))
        response.set_cookie(
            SESSION_COOKIE,
            self.codec.seal(session),
            max_age=max_age,
            httponly=True,
            secure=self.settings.cookie_secure,
            samesite="lax",
            path="/",
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=self.settings.cookie_secure, httponly=True
        )


def web(request: Request) -> Web:
    app_web: Web = request.app.state.web
    return app_web


def same_origin(request: Request) -> bool:
    """A state-changing request must come from a page of this site (when the browser says)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


class PageError(Exception):
    """Stop a handler and show an error page (or redirect)."""

    def __init__(self, status: int, title: str, message: str, redirect: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.redirect = redirect


def redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def from_gateway(exc: GatewayError, session: Session | None) -> PageError:
    if exc.status == 401:
        login = "/operator/login" if session is not None and session.is_operator else "/login"
        return PageError(401, "Signed out", "Your session has ended; sign in again.", login)
    if exc.status == 403:
        return PageError(403, "Not yours", "This page belongs to another account.")
    if exc.status == 404:
        return PageError(404, "Not found", exc.message)
    if exc.status >= 500:
        return PageError(503, "The platform is not answering", f"{exc.message}. Try again.")
    return PageError(exc.status, "Refused", exc.message)
