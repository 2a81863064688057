"""The user API: one user's settings, exchange keys, operations and commissions.

Every route takes the user id in the path and checks it against the caller's token (an admin
token reaches every user); the ledger and the vault are asked only for that user's objects,
and what they return is checked again before it is shown.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from marketbot.contracts import Exchange, OperationStatus
from marketbot.contracts.vault import KeyStatus
from marketbot.gateway.api.admin import apply_preferences
from marketbot.gateway.api.context import Caller, Gateway, ask, caller, check_owner, gateway
from marketbot.gateway.api.context import request_id as request_id_dep
from marketbot.gateway.api.errors import ERROR_SCHEMA, ApiError
from marketbot.gateway.api.models import PreferencesUpdate, RegisterKey, UserOut

router = APIRouter(
    tags=["user"],
    responses={code: ERROR_SCHEMA for code in (401, 403, 404, 422, 503)},
)
CallerDep = Depends(caller)
GatewayDep = Depends(gateway)
RequestIdDep = Depends(request_id_dep)


async def _owned_user(gw: Gateway, who: Caller, user_id: str) -> None:
    check_owner(who, user_id)
    if who.is_admin and await gw.repo.get_user(user_id) is None:
        raise ApiError(404, "not_found", f"no user {user_id!r}", "user_id")


def _keys_of(user_id: str, keys: tuple[KeyStatus, ...]) -> list[dict[str, Any]]:
    return [k.model_dump(mode="json") for k in keys if k.user_id == user_id]


@router.get("/me", response_model=UserOut)
async def me(who: Caller = CallerDep, gw: Gateway = GatewayDep) -> UserOut:
    if who.user_id is None:
        raise ApiError(404, "not_found", "the admin token belongs to no user", "authorization")
    user = await gw.repo.get_user(who.user_id)
    if user is None:
        raise ApiError(404, "not_found", "this user no longer exists", "authorization")
    return UserOut.of(user)


@router.get("/users/{user_id}/settings", response_model=UserOut)
async def user_settings(user_id: str, who: Caller = CallerDep, gw: Gateway = GatewayDep) -> UserOut:
    check_owner(who, user_id)
    user = await gw.repo.get_user(user_id)
    if user is None:
        raise ApiError(404, "not_found", f"no user {user_id!r}", "user_id")
    return UserOut.of(user)


@router.patch("/users/{user_id}/settings", response_model=UserOut)
async def change_settings(
    user_id: str,
    body: PreferencesUpdate,
    who: Caller = CallerDep,
    gw: Gateway = GatewayDep,
    correlation_id: str = RequestIdDep,
) -> UserOut:
    """Trading mode, preferred exchange, risk level, allocation (a TradingPreferencesChanged)."""
    check_owner(who, user_id)
    return UserOut.of(await apply_preferences(gw, user_id, body, correlation_id))


@router.get("/users/{user_id}/keys")
async def list_keys(
    user_id: str, who: Caller = CallerDep, gw: Gateway = GatewayDep, rid: str = RequestIdDep
) -> dict[str, Any]:
    await _owned_user(gw, who, user_id)
    reply = await ask(gw.vault.status(user_id, None, gw.clock.now(), rid), "key vault")
    return {"keys": _keys_of(user_id, reply.keys)}


@router.get("/users/{user_id}/keys/{exchange}")
async def key_status(
    user_id: str,
    exchange: Exchange,
    who: Caller = CallerDep,
    gw: Gateway = GatewayDep,
    rid: str = RequestIdDep,
) -> dict[str, Any]:
    await _owned_user(gw, who, user_id)
    reply = await ask(gw.vault.status(user_id, exchange, gw.clock.now(), rid), "key vault")
    keys = [k for k in _keys_of(user_id, reply.keys) if k["exchange"] == exchange.value]
    if not keys:
        raise ApiError(404, "not_found", f"no {exchange.value} key registered", "exchange")
    return {"key": keys[0]}


@router.put("/users/{user_id}/keys/{exchange}", status_code=201)
async def register_key(
    user_id: str,
    exchange: Exchange,
    body: RegisterKey,
    who: Caller = CallerDep,
    gw: Gateway = GatewayDep,
    rid: str = RequestIdDep,
) -> dict[str, Any]:
    """Register (or replace) the user's key; the secret is sealed to the vault here and never
    stored, logged or echoed by the gateway."""
    await _owned_user(gw, who, user_id)
    reply = await ask(
        gw.vault.register(
            user_id,
            exchange,
            body.api_key,
            body.api_secret.get_secret_value(),
            gw.clock.now(),
            rid,
        ),
        "key vault",
    )
    keys = _keys_of(user_id, (reply.key,) if reply.key else ())
    return {"key": keys[0] if keys else None}


@router.post("/users/{user_id}/keys/{exchange}/verify")
async def verify_key(
    user_id: str,
    exchange: Exchange,
    who: Caller = CallerDep,
    gw: Gateway = GatewayDep,
    rid: str = RequestIdDep,
) -> dict[str, Any]:
    await _owned_user(gw, who, user_id)
    reply = await ask(gw.vault.verify(user_id, exchange, gw.clock.now(), rid), "key vault")
    keys = _keys_of(user_id, ((reply.key,) if reply.key else ()) + reply.keys)
    return {"key": keys[0] if keys else None}


@router.delete("/users/{user_id}/keys/{exchange}")
async def revoke_key(
    user_id: str,
    exchange: Exchange,
    who: Caller = CallerDep,
    gw: Gateway = GatewayDep,
    rid: str = RequestIdDep,
) -> dict[str, Any]:
    await _owned_user(gw, who, user_id)
    reply = await ask(gw.vault.revoke(user_id, exchange, gw.clock.now(), rid), "key vault")
    keys = _keys_of(user_id, ((reply.key,) if reply.key else ()) + reply.keys)
    return {"revoked": True, "key": keys[0] if keys else None}


@router.get("/users/{user_id}/operations")
async def operations(
    user_id: str,
    status: OperationStatus | None = None,
    symbol: str | None = Query(default=None, pattern=r"^[A-Z0-9]{2,20}$"),
    page: int = Query(default=1, ge=1, le=1_000_000),
    page_size: int = Query(default=50, ge=1, le=500),
    who: Caller = CallerDep,
    gw: Gateway = GatewayDep,
    rid: str = RequestIdDep,
) -> dict[str, Any]:
    await _owned_user(gw, who, user_id)
    reply = await ask(
        gw.ledger.operations(user_id, status, symbol, page, page_size, gw.clock.now(), rid)
    )
    return {
        "operations": [
            op.model_dump(mode="json") for op in reply.operations if op.user_id == user_id
        ],
        "total": reply.total,
        "page": reply.page,
        "page_size": reply.page_size,
    }


@router.get("/users/{user_id}/commissions")
async def commissions(
    user_id: str, who: Caller = CallerDep, gw: Gateway = GatewayDep, rid: str = RequestIdDep
) -> dict[str, Any]:
    await _owned_user(gw, who, user_id)
    reply = await ask(gw.ledger.commissions(user_id, None, gw.clock.now(), rid))
    entries = [e.model_dump(mode="json") for e in reply.entries if e.user_id == user_id]
    return {"entries": entries, "total": format(reply.total, "f")}


@router.get("/users/{user_id}/referral-commissions")
async def referral_commissions(
    user_id: str, who: Caller = CallerDep, gw: Gateway = GatewayDep, rid: str = RequestIdDep
) -> dict[str, Any]:
    """Commissions on the operations of users this user referred (their affiliate share)."""
    await _owned_user(gw, who, user_id)
    reply = await ask(gw.ledger.commissions(None, user_id, gw.clock.now(), rid))
    entries = [e for e in reply.entries if e.referrer_id == user_id]
    return {
        "entries": [
            {
                "operation_id": str(e.operation_id),
                "accrued_at": e.accrued_at.isoformat(),
                "affiliate_amount": format(e.affiliate_amount, "f")
                if e.affiliate_amount is not None
                else None,
            }
            for e in entries
        ],
    }


@router.get("/users/{user_id}/statement")
async def statement(
    user_id: str, who: Caller = CallerDep, gw: Gateway = GatewayDep, rid: str = RequestIdDep
) -> dict[str, Any]:
    await _owned_user(gw, who, user_id)
    reply = await ask(gw.ledger.statement(user_id, gw.clock.now(), rid))
    return reply.model_dump(mode="json", exclude={"ok", "error"})
