"""Open positions valued at the simulator's public ticker (the exchanges' real API shape)."""

from __future__ import annotations

from decimal import Decimal

import httpx

from marketbot.contracts import Exchange, OperationStatus
from marketbot.contracts.ledger import Operation
from marketbot.gateway.adapters.marks import MarkPrices
from marketbot.runtime.clock import ManualClock
from marketbot.sim.testing import RunningSim

from .helpers import (
    AppFactory,
    FakeLedger,
    admin_headers,
    bearer,
    client_for,
    create_user,
    operation,
)


def replace(op: Operation, **changes: object) -> Operation:
    return op.model_copy(update=changes)


async def test_positions_carry_the_mark_and_unrealized_pnl(
    make_app: AppFactory, ledger: FakeLedger, sim: RunningSim, clock: ManualClock
) -> None:
    await sim.bybit_admin.set_price("ETHUSDT", Decimal("2100"))
    marks = MarkPrices.from_urls({"bybit": sim.bybit_url}, clock)
    try:
        async with client_for(make_app(marks=marks)) as api:
            ana, token = await create_user(api, "ana@example.com")
            bob, bob_token = await create_user(api, "bob@example.com")
            open_op = replace(
                operation(ana, "ETHUSDT"),
                status=OperationStatus.OPEN,
                average_price=Decimal("2000"),
                filled_quantity=Decimal("0.5"),
                realized_pnl=None,
            )
            placed = replace(
                operation(ana, "BTCUSDT"), status=OperationStatus.PLACED, realized_pnl=None
            )
            closed = operation(ana, "ETHUSDT")
            unpriced = replace(
                operation(ana, "SOLUSDT"),
                exchange=Exchange.BINANCE,
                status=OperationStatus.OPEN,
                average_price=Decimal("150"),
                filled_quantity=Decimal("1"),
            )
            ledger.operations[ana] = [open_op, placed, closed, unpriced]
            response = await api.get(f"/users/{ana}/positions", headers=bearer(token))
            assert response.status_code == 200, response.text
            body = response.json()
            by_id = {p["operation_id"]: p for p in body["positions"]}
            assert set(by_id) == {
                str(open_op.operation_id),
                str(placed.operation_id),
                str(unpriced.operation_id),
            }
            eth = by_id[str(open_op.operation_id)]
            assert eth["mark_price"] == "2100"
            assert Decimal(eth["unrealized_pnl"]) == Decimal("50")  # (2100 - 2000) * 0.5
            assert by_id[str(placed.operation_id)]["unrealized_pnl"] is None  # no fill yet
            assert by_id[str(unpriced.operation_id)]["mark_price"] is None  # no binance source
            assert body["priced"] is True
            # ownership holds
            other = await api.get(f"/users/{ana}/positions", headers=bearer(bob_token))
            assert other.status_code == 403
            assert (await api.get(f"/users/{bob}/positions", headers=admin_headers())).json()[
                "positions"
            ] == []
    finally:
        await marks.aclose()


async def test_without_market_data_positions_are_unpriced(api: object, ledger: FakeLedger) -> None:

    assert isinstance(api, httpx.AsyncClient)
    ana, token = await create_user(api, "ana@example.com")
    ledger.operations[ana] = [
        replace(
            operation(ana, "ETHUSDT"),
            status=OperationStatus.OPEN,
            average_price=Decimal("2000"),
            filled_quantity=Decimal("0.5"),
        )
    ]
    body = (await api.get(f"/users/{ana}/positions", headers=bearer(token))).json()
    assert body["priced"] is False
    assert body["positions"][0]["mark_price"] is None
    assert body["positions"][0]["unrealized_pnl"] is None
