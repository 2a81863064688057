"""The reference the SQL projection is checked against: the pure in-memory fold."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from marketbot.contracts import Event
from marketbot.ledger.domain.projection import Projection, fold

Model = Projection

__all__ = ["Model", "canonical", "fold", "total"]


def canonical(events: Iterable[Event]) -> list[Event]:
    """Distinct events in one fixed order (by event id): the 'rebuild' order."""
    return sorted({e.event_id: e for e in events}.values(), key=lambda e: str(e.event_id))


def total(values: Iterable[Decimal]) -> Decimal:
    return sum(values, Decimal(0))
