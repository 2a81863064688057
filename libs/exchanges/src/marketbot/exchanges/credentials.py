"""What a venue's API key and secret look like (venue data; each venue's constants fill it)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldFormat:
    pattern: re.Pattern[str]
    expected: str
    """What the value must be, in words."""


@dataclass(frozen=True, slots=True)
class CredentialFormat:
    api_key: FieldFormat
    secret: FieldFormat
    where: str
    """Where the user finds the key (for messages)."""


def field_format(regex: str, expected: str) -> FieldFormat:
    return FieldFormat(re.compile(regex), expected)
