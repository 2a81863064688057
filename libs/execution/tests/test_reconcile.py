"""An unknown outcome is handed to the reconciler: it never holds the queue (issue 18)."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY

from marketbot.contracts import OrderFilled, OrderOutcomeUnknown, OrderRejected, Plan, RejectReason
from marketbot.runtime.testing import eventually

from .conftest import Harness, eventually_events

CREATE = {"bybit": "/v5/order/create", "binance": "/api/v3/order"}


def _resolved(exchange: str, result: str) -> float:
    labels = {"exchange": exchange, "result": result}
    return REGISTRY.get_sample_value("marketbot_execution_unknown_resolved_total", labels) or 0.0


async def _ack_pending(h: Harness, durable: str) -> int:
    info = await h.bus.js.consumer_info(
        h.bus.stream("ORDER_REQUESTS"), h.bus.namespace.durable(durable)
    )
    return int(info.num_ack_pending or 0) + int(info.num_pending or 0)


async def test_an_unknown_outcome_is_acked_and_the_next_tier_goes_first(
    venue_harness: Harness,
) -> None:
    """The PRO create is answered 'timed out, status unknown' and executes 5 s later: the
    request is acked at once, the FLEX order is sent and filled while the PRO order is still
    unknown, and the reconciler then finds the PRO order by its client id, records its fill
    and protects it. One order each on the exchange."""
    h = venue_harness
    exchange = h.exchange.value
    pro, flex = await h.add_user(), await h.add_user()
    await h.admin.set_fault(
        "executed_late", next_n=1, latency_ms=5000, method="POST", path=CREATE[exchange]
    )
    found_before = _resolved(exchange, "found")
    await h.start()
    await h.publish([h.request(pro, plan=Plan.PRO, symbol="XRPUSDT")])
    (unknown,) = await eventually_events(h.log, OrderOutcomeUnknown, 1, timeout=20)
    assert unknown.user_id == pro.user_id

    # handed off: the PRO request is no longer outstanding, so FLEX is not held behind it
    async def pro_acked() -> bool:
        return await _ack_pending(h, f"executor-{exchange}-pro") == 0

    await eventually(pro_acked, timeout=10, message="the PRO request acked")
    await h.publish([h.request(flex, plan=Plan.FLEX, symbol="XRPUSDT")])
    filled = await eventually_events(h.log, OrderFilled, 2, timeout=40)
    assert [e.user_id for e in filled] == [flex.user_id, pro.user_id]
    # counted once the reconciler's step returns (after the fill was recorded and protected)
    await eventually(lambda: _resolved(exchange, "found") == found_before + 1, timeout=20)
    for user in (pro, flex):
        assert len(await h.entries(user)) == 1

    async def protected() -> bool:
        legs = [o for o in await h.sim_orders(pro) if o["side"] == "SELL"]
        return any(o["status"] in ("NEW", "UNTRIGGERED") for o in legs)

    await eventually(protected, timeout=20, message="the reconciled fill is protected")


async def test_not_found_after_its_settle_time_is_sent_again_once(bybit: Harness) -> None:
    """A 503 on the create (nothing executed): unknown, looked up by client id until the
    settle time, then conclusively absent and sent again under the same id."""
    h = bybit
    user = await h.add_user()
    await h.admin.set_fault("http_5xx", next_n=1, method="POST", path=CREATE["bybit"])
    resent_before = _resolved("bybit", "resent")
    await h.start()
    request = h.request(user, symbol="XRPUSDT")
    await h.publish([request])
    (filled,) = await eventually_events(h.log, OrderFilled, 1, timeout=40)
    assert filled.client_order_id == request.client_order_id
    assert len(h.log.of(OrderOutcomeUnknown)) == 1
    assert _resolved("bybit", "resent") == resent_before + 1  # counted before the resend
    assert len(await h.entries(user)) == 1


async def test_too_old_to_resend_is_rejected_stale_before_its_maximum_age(
    bybit: Harness,
) -> None:
    """46 s into a 60 s life, a resend could not be resolved in time (10 s send timeout +
    6 s settle): once 'not found' is conclusive the order is rejected STALE with the reason,
    before its maximum age, and nothing was placed."""
    h = bybit
    user = await h.add_user()
    await h.admin.set_fault("http_5xx", next_n=1, method="POST", path=CREATE["bybit"])
    await h.start()
    request = h.request(user, symbol="XRPUSDT", age_s=46)
    await h.publish([request])
    (rejected,) = await eventually_events(h.log, OrderRejected, 1, timeout=40)
    assert rejected.reason is RejectReason.STALE
    assert "too late to send again" in rejected.message
    assert request.age_s(rejected.rejected_at) < 60
    assert await h.entries(user) == []


async def test_a_ban_longer_than_the_requests_life_rejects_it_at_once_with_the_cause(
    binance: Harness,
) -> None:
    h = binance
    user = await h.add_user()
    await h.admin.set_limits(True, ban_seconds=300, weight_limit=100)
    async with httpx.AsyncClient(base_url=h.url) as raw:
        for _ in range(30):
            response = await raw.get("/api/v3/exchangeInfo")
            if response.status_code == 418:
                break
        assert response.status_code == 418
    await h.admin.set_limits(True, weight_limit=6000, clear=False)  # the ban runs on
    await h.start()
    request = h.request(user, symbol="SOLUSDT")
    await h.publish([request])
    (rejected,) = await eventually_events(h.log, OrderRejected, 1, timeout=30)
    assert rejected.reason is RejectReason.STALE
    assert "paused" in rejected.message
    assert "(ban)" in rejected.message
    assert request.age_s(rejected.rejected_at) < 30  # at once, not after 60 s of waiting
    assert await h.entries(user) == []
