"""The vault's order store, a batch at a time (issue 19): the requests a batch of signs
reads are one statement, their signature counts one statement, a fetched batch of
``OrderRequested`` one INSERT; each request's count is still checked and raised on its own
row, so a request is never signed more than ``max_signs`` times, however the signs of one
moment are grouped."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from marketbot.contracts import (
    DEFAULT_PLANS,
    Exchange,
    OrderRequested,
    Plan,
    RiskLevel,
    Side,
    client_order_id_for,
    request_id_for,
)
from marketbot.keyvault.adapters.orders import OrderStore, store_requests


def _requested(user_id: str, *, allocation: Decimal | None = None) -> OrderRequested:
    decision = uuid.uuid4()
    now = datetime.now(UTC)
    return OrderRequested(
        event_id=request_id_for(decision, user_id),
        occurred_at=now,
        correlation_id=str(decision),
        request_id=request_id_for(decision, user_id),
        decision_id=decision,
        signal_id=decision,
        user_id=user_id,
        exchange=Exchange.BYBIT,
        symbol="XRPUSDT",
        side=Side.BUY,
        plan=Plan.PRO,
        priority=1,
        not_before=now,
        risk_level=RiskLevel.MEDIUM,
        client_order_id=client_order_id_for(decision, user_id),
        reference_price=Decimal("0.5") if allocation is None else None,
        allocation=allocation,
        allocation_currency="USDT" if allocation is not None else None,
        requested_at=now,
        commission_rate=DEFAULT_PLANS[Plan.PRO].commission_rate,
    )


async def test_a_batch_of_requests_is_stored_and_read_in_one_statement_each(
    migrated: asyncpg.Pool,
) -> None:
    requests = [_requested(f"s{i}") for i in range(6)] + [_requested("a", allocation=Decimal(7))]
    async with migrated.acquire() as conn:
        await store_requests(requests, conn)
        await store_requests(requests[:2], conn)  # stored once: a second copy changes nothing
    assert await migrated.fetchval("SELECT count(*) FROM order_requests") == 7
    await migrated.execute(
        "INSERT INTO balances (user_id, exchange, asset, free, read_at) "
        "VALUES ('s1', 'bybit', 'USDT', 42, now())"
    )
    store = OrderStore(migrated)
    unknown = uuid.uuid4()
    found = await asyncio.gather(
        *(store.request(r.request_id, "USDT") for r in requests),
        store.request(requests[0].request_id, "USDT"),
        store.request(unknown, "USDT"),
    )
    assert store._reads.batches == 1
    for request, (record, _) in zip([*requests, requests[0]], found, strict=False):
        assert record is not None
        assert (record.request_id, record.client_order_id, record.user_id) == (
            request.request_id,
            request.client_order_id,
            request.user_id,
        )
        assert (record.reference_price, record.allocation) == (
            request.reference_price,
            request.allocation,
        )
    assert found[1][1] is not None
    assert found[1][1][0] == Decimal(42)
    assert found[0][1] is None
    assert found[-1] == (None, None)


async def test_the_signs_of_one_moment_are_counted_in_one_statement_within_max_signs(
    migrated: asyncpg.Pool,
) -> None:
    first, second = _requested("c1"), _requested("c2")
    async with migrated.acquire() as conn:
        await store_requests([first, second], conn)
    store = OrderStore(migrated)
    now = datetime.now(UTC)
    # five signs of one request and one of another in the same tick; at most 3 each
    counted = await asyncio.gather(
        *(store.record_sign(first.request_id, Decimal(q), now, 3) for q in (1, 5, 2, 4, 3)),
        store.record_sign(second.request_id, Decimal(9), now, 3),
        store.record_sign(uuid.uuid4(), Decimal(1), now, 3),
    )
    assert store._signs.batches == 1
    assert counted == [True, True, True, False, False, True, False]
    rows = {
        r["request_id"]: (r["signs"], r["signed_quantity"])
        for r in await migrated.fetch(
            "SELECT request_id, signs, signed_quantity FROM order_requests"
        )
    }
    # the largest quantity of the three counted signs (1, 5, 2) is kept
    assert rows[first.request_id] == (3, Decimal(5))
    assert rows[second.request_id] == (1, Decimal(9))
    # a later moment: the request has had its three
    assert await store.record_sign(first.request_id, Decimal(1), now, 3) is False
