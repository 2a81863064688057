"""Wire codec: every message type by its stable name, and the upcaster chain.

To change a message: bump its ``VERSION``, register an upcaster from the previous version
here, and add a golden JSON of the old version under libs/contracts/tests/golden/.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from marketbot.contracts import accounts, deadletters, keys, ledger, orders, signals, vault
from marketbot.contracts.envelope import Envelope, Event, Request
from marketbot.contracts.plans import LEGACY_COMMISSION_RATES

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
M = TypeVar("M", bound=Envelope)


class ContractError(ValueError):
    """A message that cannot be decoded: unknown type, unknown version, or invalid fields."""


def _concrete(cls: type[Envelope]) -> list[type[Envelope]]:
    found: list[type[Envelope]] = []
    for sub in cls.__subclasses__():
        if sub.TYPE:
            found.append(sub)
        found.extend(_concrete(sub))
    return found


def _modules_loaded() -> None:
    # Importing the modules registers their classes as subclasses.
    _ = (accounts, deadletters, keys, ledger, orders, signals, vault)


_modules_loaded()
MESSAGE_TYPES: dict[str, type[Envelope]] = {
    cls.TYPE: cls for cls in _concrete(Event) + _concrete(Request)
}
EVENT_TYPES: dict[str, type[Event]] = {
    name: cls for name, cls in MESSAGE_TYPES.items() if issubclass(cls, Event)
}


def upcast_signal_received_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 named the symbol ``ticker`` and had no ``exchange``."""
    data = dict(data)
    data["symbol"] = data.pop("ticker")
    data.setdefault("exchange", None)
    data["schema_version"] = 2
    return data


def upcast_order_placed_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 entries were market orders: no price bound."""
    return {**data, "limit_price": None, "max_slippage_percent": None, "schema_version": 2}


def upcast_order_filled_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 did not say whether its fees were estimated: unknown."""
    return {**data, "fees_estimated": None, "schema_version": 2}


def upcast_position_closed_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 named no exit id, said nothing of estimates and had no opening time."""
    return {
        **data,
        "exit_client_order_id": None,
        "fees_estimated": None,
        "opened_at": None,
        "schema_version": 2,
    }


def upcast_order_requested_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 carried no commission rate: the ledger applied its configured rate, which was the
    shipped default for every deployment so far (``LEGACY_COMMISSION_RATES``)."""
    data = dict(data)
    plan = data.get("plan")
    rates = {p.value: r for p, r in LEGACY_COMMISSION_RATES.items()}
    if plan not in rates:
        raise ContractError(f"plan: must be one of {', '.join(rates)}, got {plan!r}")
    data.setdefault("commission_rate", str(rates[plan]))
    data["schema_version"] = 2
    return data


def upcast_sign_request_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 named no order request or entries: the vault signs such a request for no order
    placement (an entry must name its request, a sell its entries)."""
    return {**data, "request_id": None, "entries": [], "send": False, "schema_version": 2}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("SignalReceived", 1): upcast_signal_received_v1_v2,
    ("OrderPlaced", 1): upcast_order_placed_v1_v2,
    ("OrderFilled", 1): upcast_order_filled_v1_v2,
    ("PositionClosed", 1): upcast_position_closed_v1_v2,
    ("OrderRequested", 1): upcast_order_requested_v1_v2,
    ("SignRequest", 1): upcast_sign_request_v1_v2,
}


def upcast(data: dict[str, Any]) -> dict[str, Any]:
    """Apply upcasters until the message is at its type's current version."""
    wire_type = data.get("type")
    cls = MESSAGE_TYPES.get(wire_type) if isinstance(wire_type, str) else None
    if cls is None:
        raise ContractError(f"type: unknown message type {wire_type!r}")
    version = data.get("schema_version", cls.VERSION)
    while version != cls.VERSION:
        step = UPCASTERS.get((cls.TYPE, version)) if isinstance(version, int) else None
        if step is None:
            raise ContractError(
                f"schema_version: no upcaster for {cls.TYPE} v{version} (current v{cls.VERSION})"
            )
        data = step(data)
        version = data["schema_version"]
    return data


def decode(raw: bytes | str | dict[str, Any]) -> Envelope:
    """Parse any message from its wire form, upcasting older versions."""
    try:
        data = json.loads(raw) if isinstance(raw, bytes | str) else dict(raw)
    except json.JSONDecodeError as exc:
        raise ContractError(f"body: not JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise ContractError(f"body: not UTF-8 text ({exc.reason})") from exc
    except RecursionError as exc:
        raise ContractError("body: not JSON (nested too deeply)") from exc
    if not isinstance(data, dict):
        raise ContractError("body: a message is a JSON object")
    data = upcast(data)
    cls = MESSAGE_TYPES[data["type"]]
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        text = str(first.get("msg", exc)).removeprefix("Value error, ")
        # "<field>: <rule>" so a refusal names the field (Bus.serve reads it from there).
        raise ContractError(f"{where}: {text}" if where else text) from exc
    except ValueError as exc:
        raise ContractError(f"{cls.TYPE}: {exc}") from exc


def decode_as(raw: bytes | str | dict[str, Any], expected: type[M]) -> M:
    message = decode(raw)
    if not isinstance(message, expected):
        raise ContractError(
            f"type: expected {expected.TYPE or expected.__name__}, got {message.type}"
        )
    return message
