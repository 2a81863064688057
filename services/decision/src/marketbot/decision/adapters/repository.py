"""The decision service's tables: the eligible-user projection, decisions, fan-outs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from marketbot.contracts import (
    ApiKeyRejected,
    ApiKeyRevoked,
    ApiKeyStored,
    ApiKeyVerified,
    DecisionMade,
    Event,
    Exchange,
    Plan,
    RiskLevel,
    SubscriptionChanged,
    SubscriptionStatus,
    TradingMode,
    TradingPreferencesChanged,
    UserRegistered,
)
from marketbot.decision.domain.eligibility import Candidate, EligibleUser, KeyStatus
from marketbot.runtime.db import Conn

PROJECTION_TABLES = ("users", "api_keys")


# ---- projection: accounts and keys --------------------------------------------------------


async def apply_account_event(conn: Conn, event: Event) -> None:
    """Fold one ACCOUNTS event into ``users``; an older event never overwrites a newer one."""
    if isinstance(event, UserRegistered):
        await conn.execute(
            "INSERT INTO users (user_id, registered_at) VALUES ($1, $2) "
            "ON CONFLICT (user_id) DO UPDATE SET registered_at = EXCLUDED.registered_at",
            event.user_id,
            event.occurred_at,
        )
    elif isinstance(event, SubscriptionChanged):
        await conn.execute(
            "INSERT INTO users (user_id, plan, subscription_status, expires_at, "
            "subscription_changed_at) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (user_id) DO UPDATE SET plan = EXCLUDED.plan, "
            "subscription_status = EXCLUDED.subscription_status, "
            "expires_at = EXCLUDED.expires_at, "
            "subscription_changed_at = EXCLUDED.subscription_changed_at "
            "WHERE users.subscription_changed_at IS NULL "
            "OR users.subscription_changed_at <= EXCLUDED.subscription_changed_at",
            event.user_id,
            event.plan.value,
            event.status.value,
            event.expires_at,
            event.occurred_at,
        )
    elif isinstance(event, TradingPreferencesChanged):
        await conn.execute(
            "INSERT INTO users (user_id, preferred_exchange, risk_level, trading_mode, "
            "allocation, allocation_currency, preferences_changed_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (user_id) DO UPDATE SET "
            "preferred_exchange = EXCLUDED.preferred_exchange, risk_level = EXCLUDED.risk_level, "
            "trading_mode = EXCLUDED.trading_mode, allocation = EXCLUDED.allocation, "
            "allocation_currency = EXCLUDED.allocation_currency, "
            "preferences_changed_at = EXCLUDED.preferences_changed_at "
            "WHERE users.preferences_changed_at IS NULL "
            "OR users.preferences_changed_at <= EXCLUDED.preferences_changed_at",
            event.user_id,
            event.preferred_exchange.value,
            event.risk_level.value,
            event.trading_mode.value,
            event.allocation,
            event.allocation_currency,
            event.occurred_at,
        )
    # ReferrerAssigned and future account events do not affect eligibility.


async def apply_key_event(conn: Conn, event: Event) -> None:
    """Fold one KEYS event into ``api_keys``; a revoked key stays revoked."""
    can_trade = False
    expires_at: datetime | None = None
    if isinstance(event, ApiKeyStored):
        status = KeyStatus.STORED
    elif isinstance(event, ApiKeyVerified):
        status = KeyStatus.VERIFIED
        can_trade = event.permissions.can_trade
        expires_at = event.permissions.expires_at
    elif isinstance(event, ApiKeyRejected):
        status = KeyStatus.REJECTED
    elif isinstance(event, ApiKeyRevoked):
        status = KeyStatus.REVOKED
    else:
        return
    await conn.execute(
        "INSERT INTO api_keys (credential_id, user_id, exchange, status, can_trade, "
        "key_expires_at, changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (credential_id) DO UPDATE SET status = EXCLUDED.status, "
        "can_trade = EXCLUDED.can_trade, key_expires_at = EXCLUDED.key_expires_at, "
        "changed_at = EXCLUDED.changed_at "
        "WHERE api_keys.status <> 'REVOKED' AND api_keys.changed_at <= EXCLUDED.changed_at",
        event.credential_id,
        event.user_id,
        event.exchange.value,
        status.value,
        can_trade,
        expires_at,
        event.occurred_at,
    )


_CANDIDATES = """
WITH best_key AS (
    SELECT DISTINCT ON (user_id, exchange) user_id, exchange, status, can_trade, key_expires_at
    FROM api_keys
    ORDER BY user_id, exchange, (status = 'VERIFIED' AND can_trade) DESC, changed_at DESC
)
SELECT u.user_id, u.plan, u.subscription_status, u.expires_at, u.preferred_exchange,
       u.trading_mode, u.risk_level, u.allocation, u.allocation_currency,
       k.status AS key_status, coalesce(k.can_trade, false) AS key_can_trade, k.key_expires_at
FROM users u
LEFT JOIN best_key k ON k.user_id = u.user_id AND k.exchange = u.preferred_exchange
WHERE u.subscription_status = 'ACTIVE' AND u.trading_mode = 'PERSONAL'
  AND ($1::text IS NULL OR u.preferred_exchange = $1)
ORDER BY u.user_id
"""


async def load_candidates(conn: Conn, exchange: Exchange | None) -> list[Candidate]:
    """Users who may be eligible (the SQL pre-filter); the domain rule decides."""
    rows = await conn.fetch(_CANDIDATES, exchange.value if exchange else None)
    return [
        Candidate(
            user_id=r["user_id"],
            plan=Plan(r["plan"]) if r["plan"] else None,
            subscription_status=SubscriptionStatus(r["subscription_status"])
            if r["subscription_status"]
            else None,
            expires_at=r["expires_at"],
            preferred_exchange=Exchange(r["preferred_exchange"])
            if r["preferred_exchange"]
            else None,
            trading_mode=TradingMode(r["trading_mode"]) if r["trading_mode"] else None,
            risk_level=RiskLevel(r["risk_level"]) if r["risk_level"] else None,
            allocation=r["allocation"],
            allocation_currency=r["allocation_currency"],
            key_status=KeyStatus(r["key_status"]) if r["key_status"] else None,
            key_can_trade=r["key_can_trade"],
            key_expires_at=r["key_expires_at"],
        )
        for r in rows
    ]


async def reset_projection(conn: Conn, consumers: Sequence[str]) -> None:
    """Empty the projection and forget which events built it (before a replay)."""
    await conn.execute("TRUNCATE " + ", ".join(PROJECTION_TABLES))
    await conn.execute("DELETE FROM processed_events WHERE consumer = ANY($1::text[])", consumers)


# ---- decisions ----------------------------------------------------------------------------


async def record_decision(conn: Conn, decision: DecisionMade) -> bool:
    """Store a decision; ``False`` when the signal already has one."""
    inserted = await conn.fetchval(
        "INSERT INTO decisions (signal_id, decision_id, action, confidence, decided_at, payload) "
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT DO NOTHING RETURNING true",
        decision.signal_id,
        decision.decision_id,
        decision.action.value,
        decision.confidence,
        decision.decided_at,
        decision.model_dump_json(),
    )
    return bool(inserted)


async def load_decision(conn: Conn, signal_id: uuid.UUID) -> DecisionMade | None:
    payload = await conn.fetchval("SELECT payload FROM decisions WHERE signal_id = $1", signal_id)
    if payload is None:
        return None
    data = json.loads(payload) if isinstance(payload, str) else payload
    return DecisionMade.model_validate(data)


# ---- fan-outs -----------------------------------------------------------------------------


async def fanout_completed(pool: asyncpg.Pool, decision_id: uuid.UUID) -> bool:
    done = await pool.fetchval(
        "SELECT completed_at IS NOT NULL FROM fanouts WHERE decision_id = $1", decision_id
    )
    return bool(done)


async def freeze_recipients(
    pool: asyncpg.Pool,
    decision: DecisionMade,
    eligible_now: Sequence[EligibleUser] | None,
) -> list[EligibleUser] | None:
    """The recipients of a decision: those stored at the first attempt, else ``eligible_now``.

    Returns ``None`` when the recipients are not stored yet and ``eligible_now`` is ``None``
    (the caller then loads the eligible users and calls again).
    """
    async with pool.acquire() as conn, conn.transaction():
        exists = await conn.fetchval(
            "SELECT true FROM fanouts WHERE decision_id = $1 FOR UPDATE", decision.decision_id
        )
        if exists:
            rows = await conn.fetch(
                "SELECT user_id, plan, exchange, risk_level, allocation, allocation_currency "
                "FROM fanout_recipients WHERE decision_id = $1 ORDER BY user_id",
                decision.decision_id,
            )
            return [
                EligibleUser(
                    user_id=r["user_id"],
                    plan=Plan(r["plan"]),
                    exchange=Exchange(r["exchange"]),
                    risk_level=RiskLevel(r["risk_level"]),
                    allocation=r["allocation"],
                    allocation_currency=r["allocation_currency"],
                )
                for r in rows
            ]
        if eligible_now is None:
            return None
        await conn.execute(
            "INSERT INTO fanouts (decision_id, action, recipients) VALUES ($1, $2, $3)",
            decision.decision_id,
            decision.action.value,
            len(eligible_now),
        )
        if eligible_now:
            await conn.copy_records_to_table(
                "fanout_recipients",
                records=[
                    (
                        decision.decision_id,
                        u.user_id,
                        u.plan.value,
                        u.exchange.value,
                        u.risk_level.value,
                        u.allocation,
                        u.allocation_currency,
                    )
                    for u in eligible_now
                ],
                columns=[
                    "decision_id",
                    "user_id",
                    "plan",
                    "exchange",
                    "risk_level",
                    "allocation",
                    "allocation_currency",
                ],
            )
        return list(eligible_now)


async def unfinished_fanouts(pool: asyncpg.Pool, started_after: datetime) -> list[DecisionMade]:
    """Decisions whose fan-out started after ``started_after`` and never completed (a crash
    mid fan-out), oldest first."""
    rows = await pool.fetch(
        "SELECT d.payload FROM fanouts f JOIN decisions d ON d.decision_id = f.decision_id "
        "WHERE f.completed_at IS NULL AND f.started_at > $1 ORDER BY f.started_at",
        started_after,
    )
    decisions = []
    for row in rows:
        payload = row["payload"]
        data = json.loads(payload) if isinstance(payload, str) else payload
        decisions.append(DecisionMade.model_validate(data))
    return decisions


async def complete_fanout(pool: asyncpg.Pool, decision_id: uuid.UUID, action: str) -> None:
    await pool.execute(
        "INSERT INTO fanouts (decision_id, action, recipients, completed_at) "
        "VALUES ($1, $2, 0, now()) ON CONFLICT (decision_id) DO UPDATE "
        "SET completed_at = coalesce(fanouts.completed_at, now())",
        decision_id,
        action,
    )
