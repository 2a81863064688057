"""Checks a pasted API key and secret against the venue's format, with a fix per field.

The formats are venue data (``marketbot.exchanges.signing.credential_format``); only
system-generated HMAC keys are supported. An RSA or Ed25519 private key (PEM) is recognised
and refused with an explanation.
"""

from __future__ import annotations

from marketbot.contracts import ErrorDetail, Exchange
from marketbot.exchanges.credentials import FieldFormat
from marketbot.exchanges.signing import credential_format


def _check(value: str, rule: FieldFormat, field: str, label: str, where: str) -> ErrorDetail | None:
    if not value:
        return ErrorDetail(code="missing", field=field, message=f"the {label} is empty")
    if value != value.strip():
        return ErrorDetail(
            code="whitespace",
            field=field,
            message=f"the {label} starts or ends with spaces or a line break; paste it again",
        )
    if "-----BEGIN" in value:
        return ErrorDetail(
            code="unsupported_key_type",
            field=field,
            message=(
                f"RSA/Ed25519 keys are not supported yet; create a system-generated HMAC key "
                f"in {where}"
            ),
        )
    if not rule.pattern.fullmatch(value):
        # Only the length is reported, never any part of the value.
        return ErrorDetail(
            code="bad_format",
            field=field,
            message=(
                f"the {label} must be {rule.expected} (got {len(value)} characters); copy it again "
                f"from {where}"
            ),
        )
    return None


def check_api_key(exchange: Exchange, api_key: str) -> ErrorDetail | None:
    fmt = credential_format(exchange)
    return _check(api_key, fmt.api_key, "api_key", "API key", fmt.where)


def check_secret(exchange: Exchange, secret: str) -> ErrorDetail | None:
    fmt = credential_format(exchange)
    return _check(secret, fmt.secret, "secret", "API secret", fmt.where)
