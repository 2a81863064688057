"""A position's life as a pure state machine, fed by what the venue reports.

    entry filled ─▶ UNPROTECTED ─protect─▶ PROTECTED ─native leg executed─▶ CLOSED
                         ▲                    │ ─watched leg reached─▶ exit order ─▶ CLOSED
                         └─ legs ended unfilled ┘ ─signal─▶ unprotect, close order ─▶ CLOSED

Nothing here talks to the exchange or the database. ``next_step`` takes the position's
phase, the legs as the venue reports them (matched by their own client ids) and the last
price, and names the one command to run: protect, record an exit, fire a watched leg,
protect anew, or wait. The command handlers (``positions.py``) carry it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from marketbot.contracts import CloseReason, Side
from marketbot.exchanges.venue import ExitKind, ExitLeg, Protection


class Phase(StrEnum):
    UNPROTECTED = "UNPROTECTED"
    """The entry filled; its exits are not (yet) confirmed on the exchange."""
    PROTECTED = "PROTECTED"
    """Every native leg was seen working on the exchange."""
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class Protect:
    """Place the legs (idempotent: the venue finds legs an earlier attempt placed)."""


@dataclass(frozen=True, slots=True)
class Protected:
    """The legs are working: record them and the PROTECTED phase."""

    protection: Protection


@dataclass(frozen=True, slots=True)
class RecordExit:
    """A native leg executed: the position is closed by that leg."""

    leg: ExitLeg


@dataclass(frozen=True, slots=True)
class FireExit:
    """The price reached a watched leg: unprotect, then close with the leg's own id."""

    leg: ExitLeg


@dataclass(frozen=True, slots=True)
class Reprotect:
    """The legs ended without executing (cancelled outside us): protect anew, new ids."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do until the next report."""


Step = Protect | Protected | RecordExit | FireExit | Reprotect | Wait


def next_step(
    phase: Phase,
    exit_side: Side,
    protection: Protection | None,
    last_price: Decimal | None,
) -> Step:
    if phase is Phase.CLOSED:
        return Wait()
    if protection is None:
        return Protect()
    executed = protection.executed
    if executed is not None:
        return RecordExit(executed)
    if protection.ended_unfilled:
        return Reprotect()
    if last_price is not None:
        for leg in protection.watched():
            if reached(leg, exit_side, last_price):
                return FireExit(leg)
    if phase is Phase.UNPROTECTED:
        native = [leg for leg in protection.legs if leg.native]
        if not native or protection.working:
            return Protected(protection)
        return Protect()
    return Wait()


def reached(leg: ExitLeg, exit_side: Side, price: Decimal) -> bool:
    """Whether ``price`` triggers ``leg``. Selling out of a long: the take profit is above
    (reached at or over it), the stop loss below; buying back a short, the other way."""
    above = (leg.kind is ExitKind.TAKE_PROFIT) == (exit_side is Side.SELL)
    return price >= leg.trigger_price if above else price <= leg.trigger_price


def already_reached(
    exit_side: Side,
    take_profit: Decimal | None,
    stop_loss: Decimal | None,
    price: Decimal,
) -> ExitKind | None:
    """Which exit the price has already passed (the exchange refuses legs that would
    trigger at once): the position is then closed now, under that leg's id."""
    for kind, trigger in ((ExitKind.STOP_LOSS, stop_loss), (ExitKind.TAKE_PROFIT, take_profit)):
        if trigger is None:
            continue
        probe = ExitLeg(kind=kind, trigger_price=trigger, client_order_id="", native=False)
        if reached(probe, exit_side, price):
            return kind
    return None


def close_reason(kind: ExitKind) -> CloseReason:
    return CloseReason.TAKE_PROFIT if kind is ExitKind.TAKE_PROFIT else CloseReason.STOP_LOSS


def exit_side(entry_side: Side) -> Side:
    return Side.SELL if entry_side is Side.BUY else Side.BUY


def entry_limit_price(side: Side, reference: Decimal, max_slippage_percent: Decimal) -> Decimal:
    """The worst price a bounded (IOC limit) entry accepts: ``reference`` moved against the
    order by ``max_slippage_percent``."""
    sign = Decimal(1) if side is Side.BUY else Decimal(-1)
    return reference * (1 + sign * max_slippage_percent / 100)


def allocate(quantity: Decimal, holdings: list[Decimal]) -> list[Decimal]:
    """Split a close fill of ``quantity`` over positions holding ``holdings``, oldest first:
    each is filled in full before the next gets anything (a deterministic rule)."""
    left = quantity
    shares: list[Decimal] = []
    for held in holdings:
        share = min(held, max(left, Decimal(0)))
        shares.append(share)
        left -= share
    return shares
