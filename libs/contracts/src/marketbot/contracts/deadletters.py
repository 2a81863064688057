"""A message a consumer gave up on, kept in the DEAD_LETTERS stream with why and how often.

The runtime's message loop publishes one ``MessageDeadLettered`` when a message cannot be
decoded or breaks a contract rule (at once), or has failed on its last allowed delivery. It
carries the original bytes (base64), so the gateway's admin API can show it and replay it
onto its original subject.
"""

from __future__ import annotations

import base64
import uuid

from pydantic import AwareDatetime, Field

from marketbot.contracts.envelope import Event, Message, derived_id


class DeliveryAttempt(Message):
    """One failed delivery as the consumer saw it."""

    delivery: int = Field(ge=1, description="JetStream's delivery count for this attempt")
    error: str = Field(max_length=2000)
    at: AwareDatetime


class MessageDeadLettered(Event):
    TYPE = "MessageDeadLettered"

    consumer: str = Field(min_length=1, max_length=128, description="durable consumer name")
    source_stream: str = Field(min_length=1, max_length=128, description="logical stream name")
    source_subject: str = Field(min_length=1, max_length=255, description="logical subject")
    stream_sequence: int | None = Field(default=None, ge=1)
    message_type: str | None = Field(default=None, max_length=128)
    message_id: str | None = Field(default=None, max_length=128, description="its event id")
    reason: str = Field(min_length=1, max_length=2000)
    permanent: bool = Field(description="true: it could never succeed; false: retries ran out")
    deliveries: int = Field(ge=0)
    history: tuple[DeliveryAttempt, ...] = ()
    payload_b64: str = Field(description="the original message bytes, base64")
    dead_lettered_at: AwareDatetime

    def subject(self) -> str:
        return f"deadletters.{self.consumer}"

    @property
    def payload(self) -> bytes:
        return base64.b64decode(self.payload_b64)


def dead_letter_id(consumer: str, stream: str, sequence: int | None, payload: bytes) -> uuid.UUID:
    """One id per (consumer, stream message): two replicas giving up on it publish once."""
    if sequence is None:
        return derived_id("dead-letter", consumer, stream, base64.b64encode(payload).decode())
    return derived_id("dead-letter", consumer, stream, sequence)
