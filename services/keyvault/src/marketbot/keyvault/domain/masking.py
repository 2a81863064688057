"""The display form of an API key: first three and last three characters."""

from __future__ import annotations

MASK = "***"


def mask_key(api_key: str) -> str:
    """``"AbCdEfGhIjKlMnOpQr"`` -> ``"AbC***pQr"``; a key under 10 characters is fully masked."""
    if len(api_key) < 10:
        return MASK
    return f"{api_key[:3]}{MASK}{api_key[-3:]}"
