"""What a pasted API key and secret must look like, per exchange, with a fix per field.

Only system-generated HMAC keys are supported: Bybit's are 18 + 36 letters and digits
(guide.mdx, user_apikey-info.mdx examples), Binance's 64 + 64 (faqs_api_key_types.md).
An RSA or Ed25519 private key (PEM) is recognised and refused with an explanation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from marketbot.contracts import ErrorDetail, Exchange


@dataclass(frozen=True, slots=True)
class FieldRule:
    pattern: re.Pattern[str]
    expected: str
    """What the value must be, in words."""


@dataclass(frozen=True, slots=True)
class CredentialFormat:
    api_key: FieldRule
    secret: FieldRule
    where: str
    """Where the user finds the key (for messages)."""


def _rule(regex: str, expected: str) -> FieldRule:
    return FieldRule(re.compile(regex), expected)


# Data, not branching: the venue facts live in this one table.
FORMATS: dict[Exchange, CredentialFormat] = {
    Exchange.BYBIT: CredentialFormat(
        api_key=_rule(r"[A-Za-z0-9]{18}", "18 letters and digits"),
        secret=_rule(r"[A-Za-z0-9]{36}", "36 letters and digits"),
        where="Bybit > Account > API Management (system-generated key, HMAC)",
    ),
    Exchange.BINANCE: CredentialFormat(
        api_key=_rule(r"[A-Za-z0-9]{64}", "64 letters and digits"),
        secret=_rule(r"[A-Za-z0-9]{64}", "64 letters and digits"),
        where="Binance > API Management (system-generated key, HMAC)",
    ),
}


def _check(value: str, rule: FieldRule, field: str, label: str, where: str) -> ErrorDetail | None:
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
    fmt = FORMATS[exchange]
    return _check(api_key, fmt.api_key, "api_key", "API key", fmt.where)


def check_secret(exchange: Exchange, secret: str) -> ErrorDetail | None:
    fmt = FORMATS[exchange]
    return _check(secret, fmt.secret, "secret", "API secret", fmt.where)
