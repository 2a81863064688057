"""The whole pipeline through real processes: webhook in, orders on the simulator, ledger out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import pytest

from marketbot.contracts import (
    DecisionMade,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    PositionClosed,
)
from marketbot.devstack.demo import DemoUser, SeededUser
from marketbot.runtime.testing import eventually

from .conftest import Platform
from .flow import (
    alert,
    cohort,
    of_type,
    requests_for,
    stream_events,
    wait_closed,
    wait_outcomes,
    wait_settled,
)

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]


async def seed(platform: Platform, users: list[DemoUser]) -> list[SeededUser]:
    seeded = [await platform.demo.seed_user(u) for u in users]
    for s in seeded:
        await platform.demo.wait_verified(s)
    await wait_settled(platform.bus)
    return seeded


@pytest.fixture
async def users_cleanup(platform: Platform) -> AsyncIterator[list[str]]:
    """Users registered here are paused after the test, so later alerts skip them."""
    created: list[str] = []
    yield created
    for user_id in created:
        await platform.demo.pause(user_id)
    await wait_settled(platform.bus)


async def post(platform: Platform, body: dict[str, object]) -> dict[str, object]:
    return await platform.demo.send_alert(
        platform.config.webhook_source, platform.config.webhook_token, body
    )


async def entry_orders(platform: Platform, user: DemoUser, client_order_id: str) -> list[dict]:  # type: ignore[type-arg]
    orders = await platform.sims[user.exchange].orders(user.user_id)
    return [o for o in orders if o.get("client_order_id") == client_order_id]


async def test_every_plan_on_both_exchanges_in_priority_order_and_ineligible_skipped(
    platform: Platform, users_cleanup: list[str]
) -> None:
    eligible = cohort(
        "plans",
        DemoUser("pro-by", "p", "PRO", "bybit", "medium"),
        DemoUser("pro-bn", "p", "PRO", "binance", "medium"),
        DemoUser("flex-by", "f", "FLEX", "bybit", "medium"),
        DemoUser("flex-bn", "f", "FLEX", "binance", "medium"),
        DemoUser("trial-by", "t", "TRIAL", "bybit", "medium"),
        DemoUser("trial-bn", "t", "TRIAL", "binance", "medium"),
    )
    ineligible = cohort(
        "plans",
        DemoUser("paused", "x", "PRO", "bybit", "medium", trading_mode="PAUSED"),
        DemoUser("inactive", "x", "PRO", "binance", "medium", subscription_status="INACTIVE"),
        DemoUser("expired", "x", "TRIAL", "bybit", "medium", expires_in_days=-1),
        DemoUser("withdraw", "x", "PRO", "binance", "medium", can_withdraw=True),
        DemoUser("nokey", "x", "PRO", "bybit", "medium", register_key=False),
    )
    await seed(platform, eligible + ineligible)
    users_cleanup.extend(u.user_id for u in eligible + ineligible)

    price = await platform.demo.price("ETHUSDT")
    accepted = await post(platform, alert("ETHUSDT", price, sl="2", tp="3"))
    assert accepted["duplicate"] is False

    results = await wait_outcomes(platform.bus, [u.user_id for u in eligible])
    assert all(isinstance(r, OrderFilled) for r in results.values()), results
    events = await stream_events(platform.bus, "ORDER_EVENTS")
    placed = {e.user_id: e for e in of_type(events, OrderPlaced, ids_of(eligible))}
    requests = {r.user_id: r for r in await requests_for(platform.bus, ids_of(eligible))}
    decision = next(
        e
        for e in await stream_events(platform.bus, "DECISIONS")
        if isinstance(e, DecisionMade) and str(e.signal_id) == accepted["signal_id"]
    )
    # plan delays: not_before = decision time + 0 / 1 / 3 s, and nothing went out earlier
    delays = {"PRO": 0, "FLEX": 1, "TRIAL": 3}
    for user in eligible:
        request = requests[user.user_id]
        assert request.not_before == decision.decided_at + timedelta(seconds=delays[user.plan])
        assert placed[user.user_id].placed_at >= request.not_before
    # priority: every PRO order placed before any FLEX, every FLEX before any TRIAL
    by_plan = {p: [placed[u.user_id].placed_at for u in eligible if u.plan == p] for p in delays}
    assert max(by_plan["PRO"]) <= min(by_plan["FLEX"])
    assert max(by_plan["FLEX"]) <= min(by_plan["TRIAL"])
    # ground truth on the simulator: exactly one entry order each, none for the ineligible
    for user in eligible:
        assert len(await entry_orders(platform, user, requests[user.user_id].client_order_id)) == 1
    assert not await requests_for(platform.bus, ids_of(ineligible))
    for user in ineligible:
        assert await platform.sims[user.exchange].orders(user.user_id) == []


def ids_of(users: list[DemoUser]) -> list[str]:
    return [u.user_id for u in users]


async def test_a_hold_decision_places_nothing(platform: Platform, users_cleanup: list[str]) -> None:
    users = cohort("hold", DemoUser("pro", "h", "PRO", "bybit", "high"))
    await seed(platform, users)
    users_cleanup.extend(ids_of(users))
    price = await platform.demo.price("SOLUSDT")
    far_off = (price * Decimal("1.10")).quantize(Decimal("0.01"))  # 10 % from the live price
    accepted = await post(platform, alert("SOLUSDT", far_off))

    async def decided() -> DecisionMade | None:
        for event in await stream_events(platform.bus, "DECISIONS"):
            if isinstance(event, DecisionMade) and str(event.signal_id) == accepted["signal_id"]:
                return event
        return None

    decision = await eventually(decided, timeout=30)
    assert decision.action.value == "HOLD"
    assert any(r.code == "price_deviation" for r in decision.reasons)
    await wait_settled(platform.bus, ("DECISIONS",))
    assert await requests_for(platform.bus, ids_of(users)) == []
    assert await platform.sims["bybit"].orders(users[0].user_id) == []


async def test_insufficient_balance_becomes_a_rejected_operation_with_its_reason(
    platform: Platform, users_cleanup: list[str]
) -> None:
    users = cohort("poor", DemoUser("pro", "p", "PRO", "binance", "low", funds=Decimal("4")))
    await seed(platform, users)
    users_cleanup.extend(ids_of(users))
    price = await platform.demo.price("XRPUSDT")
    await post(platform, alert("XRPUSDT", price))
    (rejected,) = (await wait_outcomes(platform.bus, ids_of(users))).values()
    assert isinstance(rejected, OrderRejected)
    assert rejected.reason.value == "INSUFFICIENT_BALANCE"
    assert await platform.sims["binance"].orders(users[0].user_id) == []

    async def ledger_row() -> dict | None:  # type: ignore[type-arg]
        page = await platform.demo.get(f"/users/{users[0].user_id}/operations")
        rows = page.get("operations", [])
        return rows[0] if rows and rows[0]["status"] == "REJECTED" else None

    row = await eventually(ledger_row, timeout=30)
    assert "available" in (row["reject_reason"] or "")


async def test_a_take_profit_closes_the_position_and_accrues_commission_and_affiliate_share(
    platform: Platform, users_cleanup: list[str]
) -> None:
    referrer, trader = cohort(
        "tp",
        DemoUser("ref", "r", "PRO", "bybit", "low", register_key=False),
        DemoUser("trader", "t", "FLEX", "bybit", "high"),
    )
    trader = DemoUser(**{**trader.__dict__, "referrer_id": referrer.user_id})
    await seed(platform, [referrer, trader])
    users_cleanup.extend([referrer.user_id, trader.user_id])
    price = await platform.demo.price("ADAUSDT")
    await post(platform, alert("ADAUSDT", price, sl="2", tp="3"))
    (filled,) = (await wait_outcomes(platform.bus, [trader.user_id])).values()
    assert isinstance(filled, OrderFilled)
    await platform.sims["bybit"].set_price("ADAUSDT", price * Decimal("1.05"))
    closed: PositionClosed = (await wait_closed(platform.bus, [trader.user_id]))[trader.user_id]
    assert closed.close_reason.value == "TAKE_PROFIT"
    assert closed.realized_pnl > 0

    # The ledger's rules (services/ledger/.../domain/money.py): USDT to 8 places, the
    # commission half-even, the referrer's share rounded down (never more than exact).
    eight = Decimal("0.00000001")
    commission = (closed.realized_pnl * Decimal("0.20")).quantize(eight, ROUND_HALF_EVEN)
    affiliate = (commission * Decimal("0.10")).quantize(eight, ROUND_DOWN)

    async def accrued() -> dict | None:  # type: ignore[type-arg]
        body = await platform.demo.get(f"/users/{trader.user_id}/commissions")
        entries = body.get("entries", [])
        return entries[0] if entries else None

    entry = await eventually(accrued, timeout=30)
    assert Decimal(entry["amount"]) == commission
    assert Decimal(entry["rate"]) == Decimal("0.20")
    assert Decimal(entry["affiliate_amount"]) == affiliate
    assert entry["referrer_id"] == referrer.user_id


async def test_the_same_alert_delivered_four_times_trades_once(
    platform: Platform, users_cleanup: list[str]
) -> None:
    users = cohort("dup", DemoUser("pro", "d", "PRO", "binance", "medium"))
    await seed(platform, users)
    users_cleanup.extend(ids_of(users))
    price = await platform.demo.price("DOGEUSDT")
    body = alert("DOGEUSDT", price)
    answers = await asyncio.gather(*(post(platform, body) for _ in range(4)))
    assert len({a["signal_id"] for a in answers}) == 1
    (filled,) = (await wait_outcomes(platform.bus, ids_of(users))).values()
    assert isinstance(filled, OrderFilled)
    (request,) = await requests_for(platform.bus, ids_of(users))
    assert len(await entry_orders(platform, users[0], request.client_order_id)) == 1
    signals = [
        e
        for e in await stream_events(platform.bus, "SIGNALS")
        if str(getattr(e, "signal_id", "")) == answers[0]["signal_id"]
    ]
    assert len(signals) == 1


async def test_services_killed_mid_flow_lose_and_duplicate_nothing(
    platform: Platform, users_cleanup: list[str]
) -> None:
    users = cohort(
        "crash",
        *(DemoUser(f"flex{i}", "c", "FLEX", "bybit", "medium") for i in range(3)),
        DemoUser("flexbn", "c", "FLEX", "binance", "medium"),
    )
    await seed(platform, users)
    users_cleanup.extend(ids_of(users))
    supervisor = platform.stack.supervisor
    price = await platform.demo.price("BTCUSDT")
    await post(platform, alert("BTCUSDT", price))

    async def requested() -> bool:
        return len(await requests_for(platform.bus, ids_of(users))) == len(users)

    # FLEX waits 1 s after the decision: kill the executors and the ledger while it waits.
    await eventually(requested, timeout=30)
    for name in ("executor-bybit", "executor-binance", "ledger"):
        await supervisor.kill(name)
    for name in ("executor-bybit", "executor-binance", "ledger"):
        await supervisor.restart(name)

    results = await wait_outcomes(platform.bus, ids_of(users), timeout=90)
    assert all(isinstance(r, OrderFilled) for r in results.values()), results
    requests = {r.user_id: r for r in await requests_for(platform.bus, ids_of(users))}
    for user in users:
        orders = await entry_orders(platform, user, requests[user.user_id].client_order_id)
        assert len(orders) == 1, (user.user_id, orders)
    events = await stream_events(platform.bus, "ORDER_EVENTS")
    fills = of_type(events, OrderFilled, ids_of(users))
    assert sorted(f.user_id for f in fills) == sorted(ids_of(users))  # one fill event each

    async def ledger_has_all() -> bool:
        for user in users:
            page = await platform.demo.get(f"/users/{user.user_id}/operations")
            if [r["status"] for r in page.get("operations", [])] not in (["OPEN"], ["PLACED"]):
                return False
        return True

    await eventually(ledger_has_all, timeout=30)
