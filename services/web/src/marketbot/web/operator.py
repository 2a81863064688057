"""The operator's pages, with the admin token the operator signed in with."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from marketbot.web.context import PageError, Web, from_gateway, redirect, same_origin, web
from marketbot.web.gateway import GatewayError
from marketbot.web.session import Session

router = APIRouter(prefix="/operator")
WebDep = Depends(web)
USERS_PAGE = 50

# The TradingView alert messages of docs/tradingview.md (placeholders TradingView fills in).
JSON_TEMPLATE = {
    "symbol": "{{ticker}}",
    "action": "{{strategy.order.action}}",
    "price": "{{close}}",
    "time": "{{timenow}}",
    "strategy": "my-strategy",
    "sl": "2",
    "tp": "4",
}
INDICATOR_TEMPLATE = {**JSON_TEMPLATE, "action": "buy"}
TEXT_TEMPLATE = "{{strategy.order.action}} {{ticker}} @ {{close}} sl=2 tp=4 time={{timenow}}"


async def operator_session(request: Request, w: Web = WebDep) -> Session:
    session = w.session(request)
    if session is None:
        raise PageError(401, "Sign in", "Sign in as the operator.", "/operator/login")
    if not session.is_operator:
        raise PageError(403, "Operators only", "This page is for the platform's operator.")
    return session


OperatorDep = Depends(operator_session)


async def _form(request: Request, session: Session) -> dict[str, str]:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    presented = form.get("csrf_token") or request.headers.get("x-csrf-token")
    if not same_origin(request) or not session.csrf_ok(presented):
        raise PageError(403, "Form expired", "This form expired; reload the page and try again.")
    return form


async def _get(w: Web, session: Session, path: str, **params: Any) -> Any:
    try:
        return await w.gateway.get(path, session.token, **params)
    except GatewayError as exc:
        raise from_gateway(exc, session) from exc


async def _keys(w: Web, session: Session, user_id: str) -> dict[str, Any]:
    try:
        body = await w.gateway.get(f"/users/{user_id}/keys", session.token)
        return {k["exchange"]: k for k in body["keys"] if k.get("active", True)}
    except GatewayError as exc:
        return {"error": exc.message}


@router.get("")
async def users(request: Request, session: Session = OperatorDep, w: Web = WebDep) -> Response:
    try:
        page = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page = 1
    body = await _get(w, session, "/admin/users", limit=USERS_PAGE, offset=(page - 1) * USERS_PAGE)
    keys = await asyncio.gather(*(_keys(w, session, u["user_id"]) for u in body["users"]))
    return w.render(
        request,
        "operator/users.html",
        session=session,
        users=list(zip(body["users"], keys, strict=True)),
        total=body["total"],
        page=page,
        pages=max(1, -(-int(body["total"]) // USERS_PAGE)),
    )


@router.get("/users/{user_id}")
async def user_detail(
    user_id: str, request: Request, session: Session = OperatorDep, w: Web = WebDep
) -> Response:
    user = await _get(w, session, f"/admin/users/{user_id}")
    keys, operations, statement = await asyncio.gather(
        _keys(w, session, user_id),
        _get(w, session, f"/users/{user_id}/operations", page_size=50),
        _get(w, session, f"/users/{user_id}/statement"),
    )
    return w.render(
        request,
        "operator/user.html",
        session=session,
        user=user,
        keys=keys,
        operations=operations["operations"],
        total=operations["total"],
        statement=statement,
    )


# --- webhook sources ---------------------------------------------------------------------


def _templates() -> dict[str, str]:
    return {
        "json": json.dumps(JSON_TEMPLATE, indent=2),
        "indicator": json.dumps(INDICATOR_TEMPLATE, indent=2),
        "text": TEXT_TEMPLATE,
    }


async def _sources_page(
    request: Request, w: Web, session: Session, status: int = 200, **context: Any
) -> Response:
    sources = await _get(w, session, "/admin/sources")
    base = w.settings.public_gateway_url or w.settings.gateway_url
    return w.render(
        request,
        "operator/sources.html",
        status,
        session=session,
        sources=sources,
        base=base,
        templates=_templates(),
        **context,
    )


@router.get("/sources")
async def sources(request: Request, session: Session = OperatorDep, w: Web = WebDep) -> Response:
    return await _sources_page(request, w, session)


@router.post("/sources")
async def create_source(
    request: Request, session: Session = OperatorDep, w: Web = WebDep
) -> Response:
    form = await _form(request, session)
    name = form.get("name", "").strip()
    try:
        created = await w.gateway.call("POST", "/admin/sources", session.token, json={"name": name})
    except GatewayError as exc:
        if exc.status in (401, 403) or exc.status >= 500:
            raise from_gateway(exc, session) from exc
        message = exc.message
        if exc.code == "string_pattern_mismatch" or exc.field == "name":
            message = (
                "Name must start with a lowercase letter or digit and use only a-z, 0-9, - and _"
                " (at most 64)"
                if exc.status == 422
                else exc.message
            )
        return await _sources_page(
            request, w, session, 422, errors={"name": message}, new_name=name
        )
    return await _sources_page(request, w, session, 201, created=created)


@router.post("/sources/{name}/delete")
async def delete_source(
    name: str, request: Request, session: Session = OperatorDep, w: Web = WebDep
) -> Response:
    await _form(request, session)
    try:
        await w.gateway.call("DELETE", f"/admin/sources/{name}", session.token)
    except GatewayError as exc:
        raise from_gateway(exc, session) from exc
    return redirect("/operator/sources")


# --- signals, trace, status -------------------------------------------------------------------


@router.get("/signals")
async def signals(request: Request, session: Session = OperatorDep, w: Web = WebDep) -> Response:
    wanted = (request.query_params.get("signal_id") or "").strip()
    if wanted:
        try:
            return redirect(f"/operator/signals/{uuid.UUID(wanted)}")
        except ValueError:
            error = "Signal id must be a UUID, e.g. 5c1e2f3a-0000-4000-8000-000000000000"
            body = await _get(w, session, "/admin/signals", limit=50)
            return w.render(
                request,
                "operator/signals.html",
                422,
                session=session,
                signals=body["signals"],
                errors={"signal_id": error},
                wanted=wanted,
            )
    body = await _get(w, session, "/admin/signals", limit=50)
    return w.render(request, "operator/signals.html", session=session, signals=body["signals"])


@router.get("/signals/{signal_id}")
async def trace(
    signal_id: uuid.UUID, request: Request, session: Session = OperatorDep, w: Web = WebDep
) -> Response:
    body = await _get(w, session, f"/admin/signals/{signal_id}/trace")
    plans = {"PRO": 0, "FLEX": 1, "TRIAL": 2}
    operations = sorted(
        body.get("operations", []),
        key=lambda op: (plans.get(op["plan"], 9), str(op["requested_at"])),
    )
    return w.render(
        request,
        "operator/trace.html",
        session=session,
        signal_id=signal_id,
        signal=body.get("signal"),
        decision=body.get("decision"),
        operations=operations,
    )


@router.get("/status")
async def status(request: Request, session: Session = OperatorDep, w: Web = WebDep) -> Response:
    body = await _get(w, session, "/admin/status")
    statement = await _get(w, session, "/admin/statement")
    return w.render(
        request, "operator/status.html", session=session, status=body, statement=statement
    )
