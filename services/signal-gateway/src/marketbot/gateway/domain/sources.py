"""Webhook source names: they appear in URLs and in signal ids, so they are kept simple."""

from __future__ import annotations

import re

from marketbot.gateway.domain.errors import InvalidFieldError

SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def check_source_name(name: str) -> str:
    if not SOURCE_NAME.match(name):
        raise InvalidFieldError(
            "pattern",
            "a source name is 1-64 of a-z, 0-9, '-' and '_', starting alphanumeric",
            "source",
        )
    return name
