"""The admin API: users, plans, subscriptions, preferences, referrers, webhook sources.

Every change writes the user row and its account event in one transaction (the outbox), then
publishes the event; a change is never saved without its event or published without its row.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence

from fastapi import APIRouter, Depends, Query

from marketbot.contracts import Event
from marketbot.gateway.adapters.repository import DuplicateError, Repository
from marketbot.gateway.api.context import (
    Caller,
    Gateway,
    admin,
    ask,
    gateway,
    request_id,
)
from marketbot.gateway.api.errors import ERROR_SCHEMA, ApiError
from marketbot.gateway.api.models import (
    CreatedSource,
    CreatedUser,
    CreateSource,
    CreateUser,
    PreferencesUpdate,
    ReferrerUpdate,
    SourceOut,
    SubscriptionUpdate,
    UserList,
    UserOut,
)
from marketbot.gateway.domain import accounts
from marketbot.gateway.domain.accounts import User
from marketbot.gateway.domain.auth import hash_token, new_token
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.gateway.admin")

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    responses={code: ERROR_SCHEMA for code in (401, 403, 404, 409, 422)},
)
AdminDep = Depends(admin)
GatewayDep = Depends(gateway)
RequestIdDep = Depends(request_id)


async def publish_after_commit(gw: Gateway, rows: Sequence[int]) -> None:
    await gw.outbox.publish_committed(rows)


async def change_user(
    gw: Gateway,
    user_id: str,
    change: Callable[[User], User],
    events: Callable[[User], list[Event]],
) -> User:
    async with gw.repo.pool.acquire() as conn, conn.transaction():
        user = await Repository.lock_user(conn, user_id)
        if user is None:
            raise ApiError(404, "not_found", f"no user {user_id!r}", "user_id")
        changed = change(user)
        await Repository.update_user(conn, changed)
        rows = await gw.outbox.add(conn, events(changed))
    await publish_after_commit(gw, rows)
    return changed


@router.post("/users", status_code=201, response_model=CreatedUser)
async def create_user(
    body: CreateUser,
    _who: Caller = AdminDep,
    gw: Gateway = GatewayDep,
    correlation_id: str = RequestIdDep,
) -> CreatedUser:
    now = gw.clock.now()
    user = User(
        user_id=body.user_id or f"usr_{secrets.token_hex(8)}",
        email=body.email.lower(),
        display_name=body.display_name,
        plan=body.plan,
        subscription_status=body.subscription_status,
        expires_at=body.expires_at,
        trading_mode=body.trading_mode,
        preferred_exchange=body.preferred_exchange,
        risk_level=body.risk_level,
        allocation=body.allocation,
        allocation_currency=body.allocation_currency,
        referrer_id=body.referrer_id,
        created_at=now,
        updated_at=now,
    )
    if user.referrer_id is not None and await gw.repo.get_user(user.referrer_id) is None:
        raise ApiError(422, "unknown_referrer", "the referrer is not a user", "referrer_id")
    token = new_token("mbu")
    try:
        async with gw.repo.pool.acquire() as conn, conn.transaction():
            await Repository.insert_user(conn, user, hash_token(token))
            rows = await gw.outbox.add(
                conn, accounts.registration_events(user, now, correlation_id)
            )
    except DuplicateError as exc:
        raise ApiError(409, "taken", f"this {exc.field} is already used", exc.field) from exc
    await publish_after_commit(gw, rows)
    return CreatedUser(user=UserOut.of(user), token=token)


@router.get("/users", response_model=UserList)
async def list_users(
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
    _who: Caller = AdminDep,
    gw: Gateway = GatewayDep,
) -> UserList:
    users, total = await gw.repo.list_users(limit, offset)
    return UserList(users=[UserOut.of(u) for u in users], total=total, limit=limit, offset=offset)


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: str, _who: Caller = AdminDep, gw: Gateway = GatewayDep) -> UserOut:
    user = await gw.repo.get_user(user_id)
    if user is None:
        raise ApiError(404, "not_found", f"no user {user_id!r}", "user_id")
    return UserOut.of(user)


@router.put("/users/{user_id}/subscription", response_model=UserOut)
async def set_subscription(
    user_id: str,
    body: SubscriptionUpdate,
    _who: Caller = AdminDep,
    gw: Gateway = GatewayDep,
    correlation_id: str = RequestIdDep,
) -> UserOut:
    now = gw.clock.now()
    user = await change_user(
        gw,
        user_id,
        lambda u: accounts.with_changes(
            u, now, plan=body.plan, subscription_status=body.status, expires_at=body.expires_at
        ),
        lambda u: [accounts.subscription_event(u, now, correlation_id)],
    )
    return UserOut.of(user)


async def apply_preferences(
    gw: Gateway, user_id: str, body: PreferencesUpdate, correlation_id: str
) -> User:
    now = gw.clock.now()
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    return await change_user(
        gw,
        user_id,
        lambda u: accounts.with_changes(u, now, **changes),
        lambda u: [accounts.preferences_event(u, now, correlation_id)],
    )


@router.put("/users/{user_id}/preferences", response_model=UserOut)
async def set_preferences(
    user_id: str,
    body: PreferencesUpdate,
    _who: Caller = AdminDep,
    gw: Gateway = GatewayDep,
    correlation_id: str = RequestIdDep,
) -> UserOut:
    return UserOut.of(await apply_preferences(gw, user_id, body, correlation_id))


@router.put("/users/{user_id}/referrer", response_model=UserOut)
async def set_referrer(
    user_id: str,
    body: ReferrerUpdate,
    _who: Caller = AdminDep,
    gw: Gateway = GatewayDep,
    correlation_id: str = RequestIdDep,
) -> UserOut:
    if body.referrer_id == user_id:
        raise ApiError(422, "self_referral", "a user cannot refer themselves", "referrer_id")
    if body.referrer_id is not None and await gw.repo.get_user(body.referrer_id) is None:
        raise ApiError(422, "unknown_referrer", "the referrer is not a user", "referrer_id")
    now = gw.clock.now()
    user = await change_user(
        gw,
        user_id,
        lambda u: accounts.with_changes(u, now, referrer_id=body.referrer_id),
        lambda u: [accounts.referrer_event(u, now, correlation_id)],
    )
    return UserOut.of(user)


@router.post("/users/{user_id}/token", response_model=CreatedUser)
async def rotate_token(
    user_id: str, _who: Caller = AdminDep, gw: Gateway = GatewayDep
) -> CreatedUser:
    """Issue a new bearer token for the user; the old one stops working at once."""
    token = new_token("mbu")
    async with gw.repo.pool.acquire() as conn:
        if not await Repository.set_token_hash(conn, user_id, hash_token(token)):
            raise ApiError(404, "not_found", f"no user {user_id!r}", "user_id")
    user = await gw.repo.get_user(user_id)
    assert user is not None
    return CreatedUser(user=UserOut.of(user), token=token)


# --- webhook sources ----------------------------------------------------------------------


def _source_out(name: str, created_at: object, managed: bool) -> SourceOut:
    return SourceOut(
        name=name,
        created_at=created_at,
        managed=managed,
        webhook_path=f"/webhooks/tradingview/{name}",
    )


@router.post("/sources", status_code=201, response_model=CreatedSource)
async def create_source(
    body: CreateSource, _who: Caller = AdminDep, gw: Gateway = GatewayDep
) -> CreatedSource:
    if body.name in gw.static_sources:
        raise ApiError(409, "taken", "this source is configured in settings", "name")
    token = new_token("mbs")
    now = gw.clock.now()
    try:
        await gw.repo.create_source(body.name, hash_token(token), now)
    except DuplicateError as exc:
        raise ApiError(409, "taken", "this source name is already used", "name") from exc
    gw.forget_source(body.name)
    return CreatedSource(source=_source_out(body.name, now, True), token=token)


@router.get("/sources", response_model=list[SourceOut])
async def list_sources(_who: Caller = AdminDep, gw: Gateway = GatewayDep) -> list[SourceOut]:
    configured = [_source_out(name, None, False) for name in sorted(gw.static_sources)]
    stored = [_source_out(r.name, r.created_at, True) for r in await gw.repo.list_sources()]
    return configured + stored


@router.delete("/sources/{name}", status_code=204)
async def delete_source(name: str, _who: Caller = AdminDep, gw: Gateway = GatewayDep) -> None:
    if not await gw.repo.delete_source(name):
        raise ApiError(404, "not_found", f"no managed source {name!r}", "name")
    gw.forget_source(name)


# --- platform reports from the ledger -----------------------------------------------------


@router.get("/statement")
async def platform_statement(
    _who: Caller = AdminDep, gw: Gateway = GatewayDep, correlation_id: str = RequestIdDep
) -> dict[str, object]:
    reply = await ask(gw.ledger.statement(None, gw.clock.now(), correlation_id))
    return reply.model_dump(mode="json", exclude={"ok", "error"})


@router.get("/signals/{signal_id}/trace")
async def signal_trace(
    signal_id: uuid.UUID,
    _who: Caller = AdminDep,
    gw: Gateway = GatewayDep,
    correlation_id: str = RequestIdDep,
) -> dict[str, object]:
    reply = await ask(gw.ledger.trace(signal_id, gw.clock.now(), correlation_id))
    return reply.model_dump(mode="json", exclude={"ok", "error"})
