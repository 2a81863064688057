"""The lifecycle state machine alone: reports in, the one command to run out."""

from __future__ import annotations

from decimal import Decimal

from marketbot.contracts import Side
from marketbot.exchanges.venue import ExitKind, ExitLeg, OrderStatus, Protection
from marketbot.execution.domain.lifecycle import (
    FireExit,
    Phase,
    Protect,
    Protected,
    RecordExit,
    Reprotect,
    Wait,
    allocate,
    entry_limit_price,
    next_step,
    reached,
)

D = Decimal


def leg(
    kind: ExitKind,
    trigger: str,
    *,
    native: bool = True,
    status: OrderStatus | None = OrderStatus.UNTRIGGERED,
    filled: str = "0",
) -> ExitLeg:
    return ExitLeg(
        kind=kind,
        trigger_price=D(trigger),
        client_order_id=f"{kind.value[:2].lower()}-x",
        native=native,
        exchange_order_id="1" if native else None,
        status=status if native else None,
        filled_quantity=D(filled),
    )


SL = leg(ExitKind.STOP_LOSS, "98")
TP_WATCHED = leg(ExitKind.TAKE_PROFIT, "103", native=False)


def test_nothing_on_the_exchange_means_protect() -> None:
    assert next_step(Phase.UNPROTECTED, Side.SELL, None, None) == Protect()
    # A PROTECTED position whose legs vanished is protected again, not left bare.
    assert next_step(Phase.PROTECTED, Side.SELL, None, D(100)) == Protect()


def test_working_legs_make_the_position_protected_once() -> None:
    protection = Protection(legs=(SL, TP_WATCHED))
    assert next_step(Phase.UNPROTECTED, Side.SELL, protection, None) == Protected(protection)
    assert next_step(Phase.PROTECTED, Side.SELL, protection, D(100)) == Wait()


def test_an_executed_leg_closes_by_that_leg() -> None:
    hit = leg(ExitKind.STOP_LOSS, "98", status=OrderStatus.FILLED, filled="0.001")
    protection = Protection(legs=(hit, TP_WATCHED))
    assert next_step(Phase.PROTECTED, Side.SELL, protection, D(97)) == RecordExit(hit)


def test_a_watched_leg_fires_only_when_the_price_reaches_it() -> None:
    protection = Protection(legs=(SL, TP_WATCHED))
    assert next_step(Phase.PROTECTED, Side.SELL, protection, D("102.99")) == Wait()
    assert next_step(Phase.PROTECTED, Side.SELL, protection, D(103)) == FireExit(TP_WATCHED)


def test_legs_cancelled_outside_us_are_replaced() -> None:
    gone = leg(ExitKind.STOP_LOSS, "98", status=OrderStatus.CANCELED)
    protection = Protection(legs=(gone, TP_WATCHED))
    assert next_step(Phase.PROTECTED, Side.SELL, protection, D(100)) == Reprotect()


def test_reached_is_directional() -> None:
    tp = leg(ExitKind.TAKE_PROFIT, "103")
    sl = leg(ExitKind.STOP_LOSS, "98")
    assert reached(tp, Side.SELL, D(103))
    assert not reached(tp, Side.SELL, D(102))
    assert reached(sl, Side.SELL, D(98))
    assert not reached(sl, Side.SELL, D(99))
    # buying back a short: TP below, SL above
    assert reached(tp, Side.BUY, D(102))
    assert not reached(tp, Side.BUY, D(104))


def test_entry_bound_and_allocation() -> None:
    assert entry_limit_price(Side.BUY, D(100), D("0.5")) == D("100.5")
    assert entry_limit_price(Side.SELL, D(100), D("0.5")) == D("99.5")
    assert allocate(D(5), [D(2), D(2), D(2)]) == [D(2), D(2), D(1)]
    assert allocate(D(6), [D(2), D(2), D(2)]) == [D(2), D(2), D(2)]
