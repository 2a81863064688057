"""The admin API over dead letters: list, inspect, replay (``/admin/dead-letters``)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from marketbot.contracts import DeliveryAttempt
from marketbot.gateway.adapters.deadletters import StoredLetter
from marketbot.gateway.api.context import Caller, Gateway, admin, gateway
from marketbot.gateway.api.errors import ERROR_SCHEMA, ApiError
from marketbot.runtime.logs import get_logger

log = get_logger("marketbot.gateway.deadletters")

router = APIRouter(
    prefix="/admin/dead-letters",
    tags=["admin"],
    responses={code: ERROR_SCHEMA for code in (401, 403, 404, 422)},
)
AdminDep = Depends(admin)
GatewayDep = Depends(gateway)


class DeadLetterOut(BaseModel):
    id: int
    consumer: str
    source_stream: str
    source_subject: str
    stream_sequence: int | None
    message_type: str | None
    message_id: str | None
    correlation_id: str
    reason: str
    permanent: bool
    deliveries: int
    history: list[DeliveryAttempt]
    dead_lettered_at: datetime

    @classmethod
    def of(cls, stored: StoredLetter) -> DeadLetterOut:
        letter = stored.letter
        return cls(
            id=stored.sequence,
            consumer=letter.consumer,
            source_stream=letter.source_stream,
            source_subject=letter.source_subject,
            stream_sequence=letter.stream_sequence,
            message_type=letter.message_type,
            message_id=letter.message_id,
            correlation_id=letter.correlation_id,
            reason=letter.reason,
            permanent=letter.permanent,
            deliveries=letter.deliveries,
            history=list(letter.history),
            dead_lettered_at=letter.dead_lettered_at,
        )


class DeadLetterDetail(DeadLetterOut):
    payload: str
    """The original message: its text when it is UTF-8, else base64 (``payload_base64``)."""
    payload_base64: bool


class DeadLetterPage(BaseModel):
    dead_letters: list[DeadLetterOut]
    next_before: int | None
    """Pass as ``before`` for the next (older) page; null on the last page."""


class ReplayOut(BaseModel):
    id: int
    stream_sequence: int
    duplicate: bool
    """True when this letter was already replayed within the duplicate window."""


def _detail(stored: StoredLetter) -> DeadLetterDetail:
    raw = stored.letter.payload
    try:
        text, encoded = raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = stored.letter.payload_b64, True
    return DeadLetterDetail(
        **DeadLetterOut.of(stored).model_dump(), payload=text, payload_base64=encoded
    )


async def _find(gw: Gateway, letter_id: int) -> StoredLetter:
    stored = await gw.dead_letters.get(letter_id)
    if stored is None:
        raise ApiError(404, "not_found", f"no dead letter {letter_id}", "id")
    return stored


@router.get("", response_model=DeadLetterPage)
async def list_dead_letters(
    consumer: str | None = Query(default=None, max_length=128),
    before: int | None = Query(default=None, ge=1),
    limit: int = Query(default=50, ge=1, le=500),
    _who: Caller = AdminDep,
    gw: Gateway = GatewayDep,
) -> DeadLetterPage:
    found = await gw.dead_letters.list(consumer=consumer, before=before, limit=limit)
    more = len(found) == limit and found[-1].sequence > 1
    return DeadLetterPage(
        dead_letters=[DeadLetterOut.of(s) for s in found],
        next_before=found[-1].sequence if more else None,
    )


@router.get("/{letter_id}", response_model=DeadLetterDetail)
async def get_dead_letter(
    letter_id: int, _who: Caller = AdminDep, gw: Gateway = GatewayDep
) -> DeadLetterDetail:
    return _detail(await _find(gw, letter_id))


@router.post("/{letter_id}/replay", response_model=ReplayOut)
async def replay_dead_letter(
    letter_id: int, _who: Caller = AdminDep, gw: Gateway = GatewayDep
) -> ReplayOut:
    """Publish the original message again on its subject; its consumers take it anew."""
    stored = await _find(gw, letter_id)
    try:
        base64.b64decode(stored.letter.payload_b64, validate=True)
    except binascii.Error as exc:
        raise ApiError(422, "unreadable", "the letter's payload is not base64", "id") from exc
    if not gw.dead_letters.replayable(stored.letter):
        raise ApiError(
            403,
            "not_replayable",
            f"the gateway may not publish on {stored.letter.source_subject!r} (its NATS "
            "identity publishes signals and account events only): republish this letter "
            "with the operator credential",
            "id",
        )
    replayed = await gw.dead_letters.replay(stored)
    log.info(
        "dead letter replayed",
        letter=letter_id,
        consumer=stored.letter.consumer,
        subject=stored.letter.source_subject,
        duplicate=replayed.duplicate,
    )
    return ReplayOut(
        id=letter_id, stream_sequence=replayed.stream_sequence, duplicate=replayed.duplicate
    )
