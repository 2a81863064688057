"""Sign-in and sign-out, for subscribers (email + password, checked by the gateway) and the
operator (the admin token, checked by the gateway)."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from marketbot.web.context import PageError, Web, redirect, same_origin, web
from marketbot.web.gateway import GatewayError
from marketbot.web.session import LOGIN_CSRF_COOKIE, Session, new_csrf, same_token

router = APIRouter()
WebDep = Depends(web)


def _login_page(
    w: Web, request: Request, template: str, status: int = 200, **context: Any
) -> Response:
    token = new_csrf()
    response = w.render(request, template, status, login_csrf=token, **context)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        secure=w.settings.cookie_secure,
        samesite="strict",
        path="/",
    )
    return response


async def _login_form(w: Web, request: Request) -> dict[str, str]:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if not same_origin(request) or not same_token(
        form.get("csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE)
    ):
        raise PageError(403, "Form expired", "This form expired; open the sign-in page again.")
    return form


def _too_many(w: Web, request: Request, template: str, wait: int) -> Response:
    response = _login_page(
        w,
        request,
        template,
        429,
        error=f"Too many sign-in attempts. Wait {wait} seconds and try again.",
    )
    response.headers["Retry-After"] = str(wait)
    return response


@router.get("/login")
async def login_page(request: Request, w: Web = WebDep) -> Response:
    session = w.session(request)
    if session is not None:
        return redirect("/operator" if session.is_operator else "/dashboard")
    return _login_page(w, request, "login.html")


@router.post("/login")
async def login(request: Request, w: Web = WebDep) -> Response:
    form = await _login_form(w, request)
    email = form.get("email", "").strip()
    if wait := w.login_wait(request):
        return _too_many(w, request, "login.html", wait)
    errors: dict[str, str] = {}
    if "@" not in email:
        errors["email"] = "Email must be an address like ana@example.com"
    if not form.get("password"):
        errors["password"] = "Password is required"  # noqa: S105 - a message
    if errors:
        return _login_page(w, request, "login.html", 422, errors=errors, email=email)
    try:
        body = await w.gateway.call(
            "POST", "/auth/login", None, json={"email": email, "password": form["password"]}
        )
    except GatewayError as exc:
        if exc.status == 429:
            return _too_many(w, request, "login.html", 60)
        message = (
            "The email or the password is wrong."
            if exc.status in (401, 422)
            else "The platform is not answering; try again in a moment."
        )
        return _login_page(w, request, "login.html", exc.status, error=message, email=email)
    expires = datetime.fromisoformat(body["expires_at"]).timestamp()
    session = Session(
        "user", body["token"], body["user_id"], body["display_name"], new_csrf(), expires
    )
    response = redirect("/dashboard")
    w.set_session(response, session)
    return response


@router.get("/operator/login")
async def operator_login_page(request: Request, w: Web = WebDep) -> Response:
    session = w.session(request)
    if session is not None and session.is_operator:
        return redirect("/operator")
    return _login_page(w, request, "operator/login.html")


@router.post("/operator/login")
async def operator_login(request: Request, w: Web = WebDep) -> Response:
    form = await _login_form(w, request)
    if wait := w.login_wait(request):
        return _too_many(w, request, "operator/login.html", wait)
    token = form.get("admin_token", "").strip()
    if not token:
        return _login_page(
            w,
            request,
            "operator/login.html",
            422,
            errors={"admin_token": "Admin token is required"},
        )
    try:
        await w.gateway.get("/admin/users", token, limit=1)
    except GatewayError as exc:
        message = (
            "This is not the admin token."
            if exc.status in (401, 403)
            else "The platform is not answering; try again in a moment."
        )
        return _login_page(w, request, "operator/login.html", exc.status, error=message)
    expires = w.clock.now() + timedelta(minutes=w.settings.operator_session_minutes)
    session = Session("operator", token, None, "Operator", new_csrf(), expires.timestamp())
    response = redirect("/operator")
    w.set_session(response, session)
    return response


@router.post("/logout")
async def logout(request: Request, w: Web = WebDep) -> Response:
    session = w.session(request)
    target = "/operator/login" if session is not None and session.is_operator else "/login"
    if session is not None:
        form = await request.form()
        presented = form.get("csrf_token")
        if not same_origin(request) or not session.csrf_ok(
            presented if isinstance(presented, str) else None
        ):
            raise PageError(403, "Form expired", "Reload the page and sign out again.")
        if not session.is_operator:
            with contextlib.suppress(GatewayError):
                await w.gateway.call("POST", "/auth/logout", session.token)
    response = redirect(target)
    w.clear_session(response)
    return response
