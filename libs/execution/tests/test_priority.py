"""Plan priority, not_before, and pausing through an IP ban."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from prometheus_client import REGISTRY

from marketbot.contracts import (
    Exchange,
    MessageDeadLettered,
    OrderFilled,
    OrderPlaced,
    Plan,
    decode,
)
from marketbot.exchanges.signer import Signature, SigningInput
from marketbot.runtime.testing import eventually

from .conftest import Harness, eventually_events


async def test_every_pro_order_is_acknowledged_before_the_first_flex_order_is_sent(
    venue_harness: Harness,
) -> None:
    h = venue_harness
    pro = [await h.add_user() for _ in range(8)]
    flex = [await h.add_user() for _ in range(8)]
    # FLEX published first and due at once: only the tiers decide the order.
    await h.publish([h.request(u, plan=Plan.FLEX, symbol="DOGEUSDT") for u in flex])
    await h.publish([h.request(u, plan=Plan.PRO, symbol="DOGEUSDT") for u in pro])
    await h.start(tier_concurrency=4)
    await eventually_events(h.log, OrderFilled, 16, timeout=60)

    placed = {e.user_id: e for e in h.log.of(OrderPlaced)}
    last_pro_ack = max(placed[u.user_id].placed_at for u in pro)
    flex_sent = []
    pro_ids, flex_ids = [], []
    for user in pro:
        pro_ids += [int(o["order_id"]) for o in await h.entries(user)]
    for user in flex:
        entries = await h.entries(user)
        flex_ids += [int(o["order_id"]) for o in entries]
        flex_sent += [o["created_ms"] for o in entries]
    assert max(pro_ids) < min(flex_ids)
    first_flex = datetime.fromtimestamp(min(flex_sent) / 1000, tz=UTC)
    assert last_pro_ack.replace(microsecond=last_pro_ack.microsecond // 1000 * 1000) <= first_flex


async def test_not_before_is_honoured(bybit: Harness) -> None:
    h = bybit
    user = await h.add_user()
    request = h.request(user, plan=Plan.TRIAL, delay_s=1.5, symbol="ADAUSDT")
    await h.start()
    await h.publish([request])
    await eventually_events(h.log, OrderFilled, 1, timeout=20)
    (entry,) = await h.entries(user)
    sent = datetime.fromtimestamp(entry["created_ms"] / 1000, tz=UTC)
    assert sent >= request.not_before.replace(
        microsecond=request.not_before.microsecond // 1000 * 1000
    )


async def test_a_418_ban_pauses_and_resumes_without_losing_a_request(binance: Harness) -> None:
    h = binance
    users = [await h.add_user() for _ in range(5)]
    await h.admin.set_limits(True, ban_seconds=2, weight_limit=100)
    async with httpx.AsyncClient(base_url=h.url) as raw:
        for _ in range(30):
            response = await raw.get("/api/v3/exchangeInfo")
            if response.status_code == 418:
                break
        assert response.status_code == 418
    await h.admin.set_limits(True, weight_limit=6000, clear=False)  # the ban runs on

    def bans() -> float:
        labels = {"exchange": "binance", "cause": "ban"}
        return REGISTRY.get_sample_value("marketbot_execution_pauses_total", labels) or 0.0

    before = bans()
    await h.start()
    await h.publish([h.request(u, symbol="SOLUSDT", sl=None, tp=None) for u in users])
    await eventually(lambda: bans() > before, timeout=10)
    filled = await eventually_events(h.log, OrderFilled, 5, timeout=30)
    assert {e.user_id for e in filled} == {u.user_id for u in users}
    for user in users:
        assert len(await h.entries(user)) == 1
    assert Decimal(0) not in {e.filled_quantity for e in filled}


class _BrokenSigner:
    """The vault keeps failing for one user: every attempt of that request raises."""

    def __init__(self) -> None:
        self.calls = 0

    async def sign(self, request: SigningInput) -> Signature:
        self.calls += 1
        raise RuntimeError("the vault is failing for this user")


async def test_a_poison_request_in_one_tier_never_holds_up_the_next_and_is_dead_lettered(
    bybit: Harness,
) -> None:
    h = bybit
    poisoned, healthy = await h.add_user(), await h.add_user()
    broken = _BrokenSigner()

    def signers(user_id: str, exchange: Exchange) -> Any:
        return broken if user_id == poisoned.user_id else h.signers(user_id, exchange)

    await h.publish([h.request(poisoned, plan=Plan.PRO, symbol="XRPUSDT")])
    await h.publish([h.request(healthy, plan=Plan.FLEX, symbol="XRPUSDT")])
    # a long backoff: the FLEX order must go while the PRO request waits for its retry
    await h.start(signers=signers, max_deliver=3, redelivery_backoff_s=(2.0,))
    (filled,) = await eventually_events(h.log, OrderFilled, 1, timeout=30)
    assert filled.user_id == healthy.user_id
    assert broken.calls < 3  # the poison had not used up its deliveries yet

    async def dead_lettered() -> list[MessageDeadLettered]:
        name = h.bus.stream("DEAD_LETTERS")
        info = await h.bus.js.stream_info(name)
        if not info.state.messages:
            return []
        message = decode((await h.bus.js.get_msg(name, info.state.last_seq)).data or b"")
        assert isinstance(message, MessageDeadLettered)
        return [message]

    (letter,) = await eventually(dead_lettered, timeout=30)
    assert letter.consumer == "executor-bybit-pro"
    assert letter.deliveries == 3
    assert "the vault is failing" in letter.reason
    assert await h.entries(poisoned) == []  # nothing was sent for it
