"""The envelope every message carries, and the exact-decimal type used for money."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

# A namespace for deterministic ids: the same inputs always give the same id, so a
# redelivered message re-derives the id it had and JetStream de-duplicates the publish.
MARKETBOT_NAMESPACE = uuid.UUID("6f1c3f4e-5b0a-4a7e-9a43-2f5d0f6b8c11")


def derived_id(*parts: object) -> uuid.UUID:
    """A stable UUID (v5) from the given parts, e.g. derived_id("decision", signal_id)."""
    return uuid.uuid5(MARKETBOT_NAMESPACE, "|".join(str(p) for p in parts))


def _reject_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError(
            "must be a decimal string or integer, not a float (binary floats lose money)"
        )
    if isinstance(value, str) and not value.strip():
        raise ValueError("must be a decimal number, got an empty string")
    return value


def _decimal_to_str(value: Decimal) -> str:
    return format(value, "f")


Money = Annotated[
    Decimal,
    BeforeValidator(_reject_float),
    Field(allow_inf_nan=False),
    PlainSerializer(_decimal_to_str, return_type=str, when_used="json"),
]
"""An exact decimal amount. Floats are refused on input; JSON carries it as a string."""


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored or passed on, or None: PostgreSQL ``text`` cannot hold
    a NUL character (UntranslatableCharacterError), and a lone surrogate is not Unicode
    that UTF-8 can encode."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains invalid Unicode (a lone surrogate)"
    return None


def _check_storable(name: str, value: Any) -> None:
    if isinstance(value, str):
        reason = unstorable(value)
        if reason is not None:
            raise ValueError(f"{name}: {reason}")
    elif isinstance(value, list | tuple | frozenset | set):
        for item in value:
            _check_storable(name, item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(name, key)
            _check_storable(f"{name}.{key}", item)


class Message(BaseModel):
    """Base of every message: frozen, strict about unknown fields, and every text storable
    (no NUL, no lone surrogate): a message a consumer could never store is refused where it
    is built or decoded, naming the field, instead of looping a consumer."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _storable_text(self) -> Message:
        for name, value in self.__dict__.items():
            _check_storable(name, value)
        return self


class Envelope(Message):
    """Fields every bus message carries (blueprint rule 2).

    Subclasses set the class variables ``TYPE`` (the stable wire name) and ``VERSION``
    (the current schema version); the matching ``type`` and ``schema_version`` fields are
    filled in and checked automatically.
    """

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = ""
    schema_version: int = 0
    occurred_at: AwareDatetime
    correlation_id: str = Field(min_length=1, max_length=128)
    causation_id: str | None = Field(default=None, max_length=128)

    @model_validator(mode="before")
    @classmethod
    def _stamp_type_and_version(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            wire_type = data.setdefault("type", cls.TYPE)
            if wire_type != cls.TYPE:
                raise ValueError(f"type must be {cls.TYPE!r}, got {wire_type!r}")
            version = data.setdefault("schema_version", cls.VERSION)
            if version != cls.VERSION:
                raise ValueError(
                    f"schema_version must be {cls.VERSION} for {cls.TYPE} (upcast older "
                    f"versions with marketbot.contracts.decode), got {version!r}"
                )
        return data

    def caused(self) -> dict[str, Any]:
        """Envelope fields for a message caused by this one (same correlation id)."""
        return {"correlation_id": self.correlation_id, "causation_id": str(self.event_id)}

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class Event(Envelope, ABC):
    """A fact that happened, published on a JetStream subject (past-tense name)."""

    @abstractmethod
    def subject(self) -> str:
        """The subject this event is published on, without the bus prefix."""


class Request(Envelope):
    """A core-NATS request (imperative name); ``SUBJECT`` is where its handler listens."""

    SUBJECT: ClassVar[str] = ""
    SUBJECT_FIELD: ClassVar[str | None] = None
    """The body field a narrower subject names (``SUBJECT.<value>``), if any: the handler
    listens on ``SUBJECT.*`` and refuses a body whose field disagrees with the subject."""

    def request_subject(self) -> str:
        """The subject this request is sent on (``SUBJECT``, or a narrower one)."""
        return self.SUBJECT

    @classmethod
    def listen_subject(cls) -> str:
        """The subject (pattern) the handler subscribes to."""
        return f"{cls.SUBJECT}.*" if cls.SUBJECT_FIELD else cls.SUBJECT


class Reply(Message):
    """The answer to a Request. ``error`` is set when the request was refused."""

    ok: bool = True
    error: ErrorDetail | None = None


class ErrorDetail(Message):
    """A refusal a caller can act on: which field, which rule, in words."""

    code: str
    message: str
    field: str | None = None


Reply.model_rebuild()
