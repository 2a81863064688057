"""Exact decimals in and out: parse exchange numbers, format with a step's exponent."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation


def to_decimal(value: object, *, default: Decimal | None = None) -> Decimal:
    """Parse a JSON number or string into an exact ``Decimal`` (floats via their repr)."""
    if isinstance(value, Decimal):
        return value
    if value is None or value == "":
        if default is not None:
            return default
        raise ValueError("expected a number, got an empty value")
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation as exc:
            raise ValueError(f"not a decimal number: {value!r}") from exc
    raise ValueError(f"not a decimal number: {value!r}")


def optional_decimal(value: object) -> Decimal | None:
    """``None`` for absent, empty or zero-meaning-unset values."""
    if value is None or value == "":
        return None
    return to_decimal(value)


def round_down_to_step(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` not above ``value`` (quantities)."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def round_to_step(value: Decimal, step: Decimal) -> Decimal:
    """The nearest multiple of ``step`` (prices on a tick grid)."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_HALF_EVEN) * step


def format_decimal(value: Decimal, step: Decimal | None = None) -> str:
    """Plain notation (never scientific); with ``step``, exactly the step's decimal places."""
    if step is not None and step > 0:
        exponent = step.normalize().as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        quantum = Decimal(1).scaleb(-places)
        return format(value.quantize(quantum, rounding=ROUND_DOWN), "f")
    text = format(value.normalize(), "f")
    return text
