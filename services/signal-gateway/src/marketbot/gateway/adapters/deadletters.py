"""The DEAD_LETTERS stream, read and replayed for the admin API.

Every consumer's message loop publishes a ``MessageDeadLettered`` there; the stream sequence
of that letter is its id in the API. A replay republishes the original bytes on the
original subject, with ``Nats-Msg-Id = replay:<letter sequence>``: replaying the same letter
twice within the duplicate window stores it once, and the consumers' own idempotency (event
ids in ``processed_events``, client order ids at the executors) absorbs a message that had
in fact been applied.

The gateway replays only onto subjects its own NATS identity may publish
(``marketbot.contracts.access``: signals and account events): it can never place an order
request, so a letter from ``orders.requested.*`` or another service's events is refused
with ``NotReplayableError`` (the operator republishes it with the operator credential).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from nats.js.errors import NotFoundError

from marketbot.contracts import ContractError, MessageDeadLettered, decode_as
from marketbot.contracts.access import GRANTS
from marketbot.runtime.bus import Bus

STREAM = "DEAD_LETTERS"
SERVICE = "signal-gateway"


class NotReplayableError(Exception):
    """The letter's subject is not one the gateway may publish."""


@dataclass(frozen=True)
class StoredLetter:
    sequence: int
    letter: MessageDeadLettered


@dataclass(frozen=True)
class Replayed:
    sequence: int
    stream_sequence: int
    duplicate: bool


class DeadLetters:
    def __init__(self, bus: Bus, scan_limit: int = 10_000) -> None:
        self._bus = bus
        self._scan_limit = scan_limit

    @property
    def _stream(self) -> str:
        return self._bus.stream(STREAM)

    async def get(self, sequence: int) -> StoredLetter | None:
        try:
            stored = await self._bus.js.get_msg(self._stream, sequence)
        except NotFoundError:
            return None
        try:
            letter = decode_as(stored.data or b"", MessageDeadLettered)
        except ContractError:
            return None
        return StoredLetter(sequence, letter)

    async def list(
        self, *, consumer: str | None = None, before: int | None = None, limit: int = 50
    ) -> list[StoredLetter]:
        """Newest first; ``before`` pages back (the smallest sequence of the last page)."""
        info = await self._bus.js.stream_info(self._stream)
        if not info.state.messages:
            return []
        top = min(info.state.last_seq, (before - 1) if before else info.state.last_seq)
        found: list[StoredLetter] = []
        sequence = top
        scanned = 0
        while sequence >= info.state.first_seq and len(found) < limit:
            scanned += 1
            if scanned > self._scan_limit:
                break
            with contextlib.suppress(NotFoundError):
                stored = await self.get(sequence)
                if stored is not None and consumer in (None, stored.letter.consumer):
                    found.append(stored)
            sequence -= 1
        return found

    @staticmethod
    def replayable(letter: MessageDeadLettered) -> bool:
        return GRANTS[SERVICE].may_publish(letter.source_subject)

    async def replay(self, stored: StoredLetter) -> Replayed:
        letter = stored.letter
        if not self.replayable(letter):
            raise NotReplayableError(letter.source_subject)
        ack = await self._bus.publish_raw(
            self._bus.subject(letter.source_subject),
            letter.payload,
            f"replay:{stored.sequence}",
            letter.message_type or "unknown",
        )
        return Replayed(stored.sequence, int(ack.seq), bool(ack.duplicate))
