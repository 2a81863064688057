"""Structured JSON logs with a correlation id on every line, and secrets redacted.

Redaction runs last before rendering, on every key and every string value, at any depth:
- by key name: anything that looks like a secret, password, token, signature or API key;
- by value pattern: long unbroken alphanumeric runs (API secrets are 36-64 of them) and
  PEM blocks;
- by registered value: a process that holds a known secret registers it, and any string
  containing it is scrubbed.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

REDACTED = "[REDACTED]"

SENSITIVE_KEY = re.compile(
    r"(secret|passw(or)?d|passphrase|token|api[_-]?key|apikey|signature|sign$|authorization|"
    r"cookie|private[_-]?key|master[_-]?key|x-bapi-sign|x-mbx-apikey|x-bapi-api-key|plaintext)",
    re.IGNORECASE,
)
SECRET_VALUE = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z0-9]{36,}(?![A-Za-z0-9])"
    r"|-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----",
    re.DOTALL,
)


class SecretRedactor:
    """A structlog processor; ``register`` adds exact values to scrub wherever they appear."""

    def __init__(self) -> None:
        self._known: set[str] = set()

    def register(self, *values: str) -> None:
        self._known.update(v for v in values if v and len(v) >= 6)

    def forget(self, *values: str) -> None:
        self._known.difference_update(values)

    def scrub_text(self, text: str) -> str:
        for value in self._known:
            if value in text:
                text = text.replace(value, REDACTED)
        return SECRET_VALUE.sub(REDACTED, text)

    def scrub(self, value: Any, key: str = "") -> Any:
        if key and SENSITIVE_KEY.search(key) and value not in (None, "", False):
            return REDACTED
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, dict):
            return {k: self.scrub(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.scrub(v) for v in value]
        if isinstance(value, bytes):
            return self.scrub_text(value.decode("utf-8", "replace"))
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.scrub_text(str(value))

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return {k: self.scrub(v, k) for k, v in event_dict.items()}


redactor = SecretRedactor()
"""The process-wide redactor used by ``configure_logging``; register known secrets on it."""


def configure_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """JSON lines to ``stream`` (stderr by default), with service, level, time, correlation id.

    Stdlib logging (nats, asyncpg, uvicorn) is routed through the same pipeline.
    """
    out = stream or sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
        structlog.processors.format_exc_info,
        redactor,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.JSONRenderer(sort_keys=False)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.getLevelName(level.upper()), logging.INFO))


def _add_service(service: str) -> Any:
    def processor(
        _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()


@contextmanager
def correlation(correlation_id: str | None, **extra: Any) -> Iterator[None]:
    """Bind the correlation id (the signal id) to every log line inside the block."""
    values = {"correlation_id": correlation_id, **extra}
    with structlog.contextvars.bound_contextvars(**values):
        yield
