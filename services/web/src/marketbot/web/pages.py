"""The subscriber's pages. Every call to the gateway carries the signed-in user's own
session token and the user id from the session, never one from the URL or the form: a user
can only ever ask for their own data, and the gateway checks it again (``not_owner``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from marketbot.contracts import Exchange, OperationStatus
from marketbot.web import views
from marketbot.web.context import PageError, Web, from_gateway, redirect, same_origin, web
from marketbot.web.gateway import GatewayError
from marketbot.web.session import Session

router = APIRouter()
WebDep = Depends(web)
EXCHANGES = [e.value for e in Exchange]
STATUSES = [s.value for s in OperationStatus]
PAGE_SIZE = 25
CHART_OPERATIONS = 500


async def user_session(request: Request, w: Web = WebDep) -> Session:
    session = w.session(request)
    if session is None:
        raise PageError(401, "Sign in", "Sign in to see this page.", "/login")
    if session.is_operator or session.user_id is None:
        raise PageError(303, "Operator", "This is a subscriber page.", "/operator")
    return session


UserDep = Depends(user_session)


async def checked_form(request: Request, session: Session) -> dict[str, str]:
    """The posted form, if it comes from this site with this session's CSRF token."""
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


def _me(session: Session) -> str:
    return f"/users/{session.user_id}"


@router.get("/")
async def home(request: Request, w: Web = WebDep) -> Response:
    session = w.session(request)
    if session is None:
        return redirect("/login")
    return redirect("/operator" if session.is_operator else "/dashboard")


async def _operations(
    w: Web,
    session: Session,
    status: str | None = None,
    symbol: str | None = None,
    page: int = 1,
    page_size: int = PAGE_SIZE,
) -> dict[str, Any]:
    body: dict[str, Any] = await _get(
        w,
        session,
        f"{_me(session)}/operations",
        status=status,
        symbol=symbol,
        page=page,
        page_size=page_size,
    )
    return body


async def _closed_operations(w: Web, session: Session) -> list[dict[str, Any]]:
    body = await _operations(w, session, status="CLOSED", page_size=CHART_OPERATIONS)
    ops: list[dict[str, Any]] = body["operations"]
    return ops


async def _open_positions(w: Web, session: Session) -> list[dict[str, Any]]:
    """Open and placed operations with their mark price and unrealized PnL (the gateway
    values them at the exchange's public ticker)."""
    body = await _get(w, session, f"{_me(session)}/positions")
    positions: list[dict[str, Any]] = body["positions"]
    return positions


@router.get("/dashboard")
async def dashboard(request: Request, session: Session = UserDep, w: Web = WebDep) -> Response:
    me, statement, keys, closed, positions = await asyncio.gather(
        _get(w, session, "/me"),
        _get(w, session, f"{_me(session)}/statement"),
        _get(w, session, f"{_me(session)}/keys"),
        _closed_operations(w, session),
        _open_positions(w, session),
    )
    chart = views.pnl_chart_svg(views.equity_points(closed))
    return w.render(
        request,
        "dashboard.html",
        session=session,
        me=me,
        statement=statement,
        keys={k["exchange"]: k for k in keys["keys"]},
        exchanges=EXCHANGES,
        chart=chart,
        positions=positions,
        recent=sorted(closed, key=lambda op: str(op["updated_at"]), reverse=True)[:5],
    )


# --- keys ----------------------------------------------------------------------------------


async def _keys_page(
    request: Request, w: Web, session: Session, status: int = 200, **context: Any
) -> Response:
    keys = await _get(w, session, f"{_me(session)}/keys")
    return w.render(
        request,
        "keys.html",
        status,
        session=session,
        keys={k["exchange"]: k for k in keys["keys"] if k.get("active", True)},
        exchanges=EXCHANGES,
        **context,
    )


@router.get("/keys")
async def keys_page(request: Request, session: Session = UserDep, w: Web = WebDep) -> Response:
    return await _keys_page(request, w, session)


def _exchange(exchange: str) -> str:
    if exchange not in EXCHANGES:
        raise PageError(404, "Not found", f"marketbot does not trade on {exchange!r}")
    return exchange


@router.post("/keys/{exchange}")
async def connect_key(
    exchange: str, request: Request, session: Session = UserDep, w: Web = WebDep
) -> Response:
    exchange = _exchange(exchange)
    form = await checked_form(request, session)
    api_key = form.get("api_key", "").strip()
    api_secret = form.get("api_secret", "").strip()
    errors: dict[str, str] = {}
    if len(api_key) < 8:
        errors["api_key"] = "API key must be at least 8 characters, as the exchange shows it"
    if len(api_secret) < 8:
        errors["api_secret"] = "API secret must be at least 8 characters"  # noqa: S105
    if errors:
        return await _keys_page(request, w, session, 422, errors={exchange: errors}, focus=exchange)
    try:
        body = await w.gateway.call(
            "PUT",
            f"{_me(session)}/keys/{exchange}",
            session.token,
            json={"api_key": api_key, "api_secret": api_secret},
        )
    except GatewayError as exc:
        if exc.status in (401, 403):
            raise from_gateway(exc, session) from exc
        if exc.field in ("api_key", "api_secret"):
            plain = {
                "api_key": "API key must be 8 to 256 letters, digits, - or _, as the exchange "
                "shows it",
                "api_secret": "API secret must be 8 to 512 characters, as the exchange shows it",
            }
            # the gateway's schema messages are for programs; the vault's are already words
            message = plain[exc.field] if exc.code.startswith("string_") else exc.message
            errors = {exc.field: message}
            return await _keys_page(
                request, w, session, 422, errors={exchange: errors}, focus=exchange
            )
        verdict = views.refusal_verdict(exc.code, exc.message)
        return await _keys_page(
            request,
            w,
            session,
            200 if exc.status == 503 else 422,
            verdicts={exchange: verdict},
            focus=exchange,
        )
    verdict = views.key_verdict(body.get("key"))
    return await _keys_page(request, w, session, verdicts={exchange: verdict}, focus=exchange)


@router.post("/keys/{exchange}/verify")
async def verify_key(
    exchange: str, request: Request, session: Session = UserDep, w: Web = WebDep
) -> Response:
    exchange = _exchange(exchange)
    await checked_form(request, session)
    try:
        body = await w.gateway.call("POST", f"{_me(session)}/keys/{exchange}/verify", session.token)
        verdict = views.key_verdict(body.get("key"))
    except GatewayError as exc:
        if exc.status in (401, 403):
            raise from_gateway(exc, session) from exc
        verdict = views.refusal_verdict(exc.code, exc.message)
    return await _keys_page(request, w, session, verdicts={exchange: verdict}, focus=exchange)


@router.post("/keys/{exchange}/delete")
async def remove_key(
    exchange: str, request: Request, session: Session = UserDep, w: Web = WebDep
) -> Response:
    exchange = _exchange(exchange)
    await checked_form(request, session)
    try:
        await w.gateway.call("DELETE", f"{_me(session)}/keys/{exchange}", session.token)
    except GatewayError as exc:
        raise from_gateway(exc, session) from exc
    return await _keys_page(
        request,
        w,
        session,
        verdicts={exchange: views.Verdict("ok", "Removed", "marketbot no longer holds this key.")},
        focus=exchange,
    )


# --- plan and settings ---------------------------------------------------------------------


@router.get("/settings")
async def settings_page(request: Request, session: Session = UserDep, w: Web = WebDep) -> Response:
    me = await _get(w, session, "/me")
    return w.render(request, "settings.html", session=session, me=me, form=me)


@router.post("/settings")
async def save_settings(request: Request, session: Session = UserDep, w: Web = WebDep) -> Response:
    form = await checked_form(request, session)
    changes, errors = views.settings_changes(form)
    if not errors:
        try:
            me = await w.gateway.call(
                "PATCH", f"{_me(session)}/settings", session.token, json=changes
            )
        except GatewayError as exc:
            if exc.status in (401, 403) or exc.status >= 500:
                raise from_gateway(exc, session) from exc
            errors = {exc.field or "form": exc.message}
        else:
            return w.render(request, "settings.html", session=session, me=me, form=me, saved=True)
    me = await _get(w, session, "/me")
    return w.render(request, "settings.html", 422, session=session, me=me, form=form, errors=errors)


# --- positions, history, statement -------------------------------------------------------------


@router.get("/positions")
async def positions_page(request: Request, session: Session = UserDep, w: Web = WebDep) -> Response:
    positions, statement = await asyncio.gather(
        _open_positions(w, session), _get(w, session, f"{_me(session)}/statement")
    )
    return w.render(
        request,
        "positions.html",
        session=session,
        positions=positions,
        statement=statement,
        unrealized=views.unrealized_total(positions),
    )


@router.get("/positions/rows")
async def positions_rows(request: Request, session: Session = UserDep, w: Web = WebDep) -> Response:
    positions, statement = await asyncio.gather(
        _open_positions(w, session), _get(w, session, f"{_me(session)}/statement")
    )
    return w.render(
        request,
        "_positions.html",
        session=session,
        positions=positions,
        statement=statement,
        unrealized=views.unrealized_total(positions),
    )


def _filters(request: Request) -> tuple[str | None, str | None, int, dict[str, str]]:
    status = request.query_params.get("status") or None
    symbol = (request.query_params.get("symbol") or "").strip().upper() or None
    errors: dict[str, str] = {}
    if status is not None and status not in STATUSES:
        errors["status"] = f"Status must be one of {', '.join(STATUSES)}"
        status = None
    if symbol is not None and not (symbol.isalnum() and 2 <= len(symbol) <= 20):
        errors["symbol"] = "Symbol must be 2 to 20 letters or digits, e.g. BTCUSDT"
        symbol = None
    try:
        page = max(1, min(1_000_000, int(request.query_params.get("page", "1"))))
    except ValueError:
        page = 1
    return status, symbol, page, errors


@router.get("/history")
async def history(request: Request, session: Session = UserDep, w: Web = WebDep) -> Response:
    status, symbol, page, errors = _filters(request)
    body = await _operations(w, session, status, symbol, page)
    pages = max(1, -(-int(body["total"]) // PAGE_SIZE))
    return w.render(
        request,
        "history.html",
        422 if errors else 200,
        session=session,
        operations=body["operations"],
        total=body["total"],
        page=page,
        pages=pages,
        status=status or "",
        symbol=symbol or "",
        statuses=STATUSES,
        errors=errors,
    )


@router.get("/history.csv")
async def history_csv(request: Request, session: Session = UserDep, w: Web = WebDep) -> Response:
    status, symbol, _, _ = _filters(request)
    rows: list[dict[str, Any]] = []
    page = 1
    while len(rows) < w.settings.history_export_limit:
        body = await _operations(w, session, status, symbol, page, page_size=500)
        rows.extend(body["operations"])
        if page * 500 >= int(body["total"]) or not body["operations"]:
            break
        page += 1
    text = views.operations_csv(rows[: w.settings.history_export_limit])
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="marketbot-operations.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/statement")
async def statement(request: Request, session: Session = UserDep, w: Web = WebDep) -> Response:
    statement, commissions, referrals = await asyncio.gather(
        _get(w, session, f"{_me(session)}/statement"),
        _get(w, session, f"{_me(session)}/commissions"),
        _get(w, session, f"{_me(session)}/referral-commissions"),
    )
    earned = sum(
        (views.open_pnl({"realized_pnl": e["affiliate_amount"]}) for e in referrals["entries"]),
        start=views.open_pnl({}),
    )
    return w.render(
        request,
        "statement.html",
        session=session,
        statement=statement,
        commissions=commissions,
        referrals=referrals["entries"],
        earned=earned,
    )
