"""A client mistake, named by field and rule. The HTTP layer maps ``code`` to a status."""

from __future__ import annotations


class ClientError(Exception):
    """Something the caller sent that the gateway refuses; never a server fault."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"ClientError({self.code!r}, {self.message!r}, field={self.field!r})"


class MalformedError(ClientError):
    """The body cannot be read at all (not UTF-8, not JSON, no recognisable text form): 400."""


class UnsupportedMediaError(ClientError):
    """A content type the webhook does not speak: 415."""


class InvalidFieldError(ClientError):
    """Readable, but a field breaks a rule (missing, wrong type, out of range, stale): 422."""
