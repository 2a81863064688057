"""Several sign requests in one NATS request (issue 19): each item is answered exactly as
a request of its own — its endpoint rule, its own order request's bounds, its own refusal
and audit row — and the executor's ``SignBatcher`` sends concurrent requests as one."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from marketbot.contracts import Exchange
from marketbot.contracts.vault import (
    SignBatchReply,
    SignBatchRequest,
    SignReply,
    SignRequest,
)
from marketbot.exchanges.errors import OutcomeUnknown, Retryable, SigningRefusedError
from marketbot.exchanges.signer import SigningInput, order_scope
from marketbot.keyvault.app import RunningVault
from marketbot.keyvault.client import SignBatcher, VaultClient, VaultSigner
from marketbot.runtime.bus import Bus
from marketbot.sim.testing import RunningSim

from .helpers import order_requested
from .test_order_bounds import USER, binance_order, now_ms, registered, sign


def batch(*items: SignRequest, exchange: Exchange = Exchange.BINANCE) -> SignBatchRequest:
    return SignBatchRequest(
        occurred_at=datetime.now(UTC),
        correlation_id=f"batch-{uuid.uuid4().hex[:8]}",
        exchange=exchange,
        items=items,
    )


def withdrawal() -> SignRequest:
    stamp = now_ms()
    return SignRequest(
        occurred_at=datetime.now(UTC),
        correlation_id="withdraw",
        user_id=USER,
        exchange=Exchange.BINANCE,
        method="POST",
        path="/sapi/v1/capital/withdraw/apply",
        query=f"coin=USDT&amount=1&timestamp={stamp}",
        timestamp_ms=stamp,
    )


async def test_each_item_is_answered_as_a_request_of_its_own(
    vault: RunningVault,
    client: VaultClient,
    bus: Bus,
    sim: RunningSim,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    account = await registered(client, sim, make_key)
    first = await order_requested(
        bus, migrated, user_id=USER, exchange=Exchange.BINANCE, reference_price=Decimal(100)
    )
    second = await order_requested(
        bus, migrated, user_id=USER, exchange=Exchange.BINANCE, reference_price=Decimal(100)
    )
    bybit_item = sign(binance_order(first.client_order_id), request_id=first.request_id)
    bybit_item = bybit_item.model_copy(update={"exchange": Exchange.BYBIT})
    items = (
        # within its own request's bounds: sent
        sign(binance_order(first.client_order_id), request_id=first.request_id),
        # another request's client order id under the first's id: refused, that item only
        sign(binance_order(second.client_order_id), request_id=first.request_id),
        # too big for its request
        sign(binance_order(second.client_order_id, quantity="0.51"), request_id=second.request_id),
        # no such request
        sign(binance_order(second.client_order_id), request_id=uuid.uuid4()),
        withdrawal(),
        bybit_item,
        # the second request, within its bounds
        sign(binance_order(second.client_order_id), request_id=second.request_id),
    )
    reply = await bus.request(batch(*items), SignBatchReply, timeout=15)
    assert reply.ok
    results = reply.results
    assert len(results) == len(items)
    codes = [
        (r.ok, r.error.code if r.error else None, r.error.field if r.error else None)
        for r in results
    ]
    assert codes == [
        (True, None, None),
        (False, "order_refused", "client_order_id"),
        (False, "order_refused", "quantity"),
        (False, "order_request_unknown", "request_id"),
        (False, "endpoint_refused", None),
        (False, "invalid_request", "exchange"),
        (True, None, None),
    ]
    # each sent item carries the exchange's own answer, and no signature
    for sent in (results[0], results[6]):
        assert sent.status == 200
        assert sent.signature == ""
        assert json.loads(sent.response)["status"] in ("FILLED", "EXPIRED", "NEW")
    assert all(r.signature == "" for r in results)
    # the exchange has exactly the two orders
    orders = await sim.binance_admin.orders(account)
    placed = {first.client_order_id, second.client_order_id}
    assert sum(1 for o in orders if any(cid in str(o) for cid in placed)) == 2
    # every refusal audited as a single request's is (the other-exchange item, like a
    # single request on another exchange's subject, is refused before the vault's checks)
    rows = await migrated.fetch(
        "SELECT detail FROM audit_log WHERE action = 'sign_refused' ORDER BY id"
    )
    refusals = [json.loads(r["detail"]) for r in rows]
    # (the items run concurrently: the rows' order is theirs)
    assert sorted((d["code"], d.get("field") or "") for d in refusals) == [
        ("endpoint_refused", ""),
        ("order_refused", "client_order_id"),
        ("order_refused", "quantity"),
        ("order_request_unknown", "request_id"),
    ]
    # the signs are counted per request, as for single requests
    counts = await migrated.fetch("SELECT request_id, signs FROM order_requests")
    signs = {r["request_id"]: r["signs"] for r in counts}
    assert (signs[first.request_id], signs[second.request_id]) == (1, 1)


async def test_a_batch_for_another_exchange_than_its_subject_is_refused(
    vault: RunningVault, bus: Bus
) -> None:
    request = batch(withdrawal())
    response = await bus.nc.request(
        bus.subject("keyvault.signbatch.bybit"), request.to_json(), timeout=5
    )
    reply = SignBatchReply.model_validate_json(response.data)
    assert not reply.ok
    assert reply.error is not None
    assert (reply.error.code, reply.error.field) == ("invalid_request", "exchange")
    assert reply.results == ()


async def test_concurrent_orders_go_to_the_vault_in_one_request(
    vault: RunningVault,
    client: VaultClient,
    bus: Bus,
    sim: RunningSim,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    await registered(client, sim, make_key)
    requests = [
        await order_requested(
            bus, migrated, user_id=USER, exchange=Exchange.BINANCE, reference_price=Decimal(100)
        )
        for _ in range(5)
    ]
    batcher = SignBatcher(bus)
    signer = VaultSigner(bus, USER, Exchange.BINANCE, batcher=batcher)

    async def send(index: int) -> Any:
        request = requests[index]
        item = sign(binance_order(request.client_order_id), request_id=request.request_id)
        with order_scope(request.request_id if index != 4 else uuid.uuid4()):
            return await signer.send(
                SigningInput(
                    Exchange.BINANCE,
                    "POST",
                    item.path,
                    item.query,
                    item.body,
                    item.timestamp_ms,
                    item.recv_window_ms,
                )
            )

    answers = await asyncio.gather(*(send(i) for i in range(5)), return_exceptions=True)
    assert batcher.batches == 1
    assert [getattr(a, "status", None) for a in answers[:4]] == [200] * 4
    # the fifth names an unknown request: its caller alone gets the vault's answer
    assert isinstance(answers[4], Retryable)
    assert "no order request with this id" in str(answers[4])
    # a refused endpoint in the next tick: its own batch, its own typed error
    with pytest.raises(SigningRefusedError):
        await signer.sign(
            SigningInput(
                Exchange.BINANCE, "POST", "/sapi/v1/capital/withdraw/apply", "", "", now_ms(), 5000
            )
        )
    assert batcher.batches == 2


async def test_a_lost_batch_answer_is_an_unknown_outcome_for_every_send_in_it(
    bus: Bus,
) -> None:
    """No vault answers: every send of the batch may have reached the exchange (unknown),
    and every signature-only request is retryable, each caller with its own error."""
    silent = await bus.nc.subscribe(bus.subject("keyvault.signbatch.bybit"), cb=_ignore)
    try:
        batcher = SignBatcher(bus)
        signers = [
            VaultSigner(bus, f"u{i}", Exchange.BYBIT, batcher=batcher, send_timeout=0.3)
            for i in range(3)
        ]
        order = SigningInput(Exchange.BYBIT, "POST", "/v5/order/create", "", "{}", now_ms(), 5000)
        sends = await asyncio.gather(*(s.send(order) for s in signers), return_exceptions=True)
        assert all(isinstance(e, OutcomeUnknown) for e in sends), sends
        assert len({id(e) for e in sends}) == 3
    finally:
        await silent.unsubscribe()
    # nobody listening at all: nothing was sent, retryable
    no_vault = SignBatcher(bus)
    signers = [
        VaultSigner(bus, f"v{i}", Exchange.BYBIT, batcher=no_vault, timeout=0.3) for i in range(2)
    ]
    query = SigningInput(
        Exchange.BYBIT, "GET", "/v5/account/wallet-balance", "", "", now_ms(), 5000
    )
    signs = await asyncio.gather(*(s.sign(query) for s in signers), return_exceptions=True)
    assert all(isinstance(e, Retryable) for e in signs), signs


async def _ignore(msg: Any) -> None:
    del msg


def test_a_batch_holds_at_least_one_and_at_most_the_maximum() -> None:
    from pydantic import ValidationError

    from marketbot.contracts.vault import MAX_SIGN_BATCH

    with pytest.raises(ValidationError):
        batch()
    with pytest.raises(ValidationError):
        batch(*([withdrawal()] * (MAX_SIGN_BATCH + 1)))
    with pytest.raises(ValueError, match="max_items"):
        SignBatcher(None, max_items=0)  # type: ignore[arg-type]
    assert SignReply().ok
