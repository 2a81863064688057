"""kill -9 at the moment that matters, for every service and for NATS and PostgreSQL.

The platform here runs on its own servers, so they can be killed: a local three-node NATS
JetStream cluster with R3 streams (``marketbot.runtime.cluster``; the services get the
comma-separated list of its URLs) and a durable PostgreSQL. Every scenario ends with the
simulator's ground truth (``ground_truth``): each user has exactly one entry order on the
exchange under its client order id (none lost, none duplicated), one fill event, and the
ledger's operation says what the exchange says. The counts are printed
(``lost 0, duplicated 0``).

The fan-outs here are modest (``MARKETBOT_CRASH_USERS``, default 24 users) to keep
``make test`` short on two cores; the issue's 1,000-user variant is the same test with
``MARKETBOT_CRASH_USERS=1000``.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from nats.aio.msg import Msg

from marketbot.contracts import BusNamespace, OrderFilled, OrderRejected, OrderRequested
from marketbot.devstack.demo import Demo, DemoUser
from marketbot.devstack.stack import Stack, StackConfig
from marketbot.devstack.supervisor import Supervisor
from marketbot.runtime.bus import Bus
from marketbot.runtime.cluster import NatsCluster, kill_hard
from marketbot.runtime.infra import EmbeddedPostgres
from marketbot.runtime.natsauth import NatsAuth
from marketbot.runtime.testing import eventually
from marketbot.sim.admin import SimAdmin

from .conftest import Platform
from .flow import alert, of_type, requests_for, stream_events, wait_outcomes, wait_settled

pytestmark = [pytest.mark.xdist_group("crash"), pytest.mark.slow]

USERS = int(os.environ.get("MARKETBOT_CRASH_USERS", "24"))
PLANS = ("PRO", "FLEX", "TRIAL")
SYMBOLS = iter(["XRPUSDT", "DOGEUSDT", "ADAUSDT", "SOLUSDT", "ETHUSDT", "BTCUSDT"] * 4)


@dataclass
class Crash:
    platform: Platform
    cluster: NatsCluster
    pg: EmbeddedPostgres

    @property
    def supervisor(self) -> Supervisor:
        return self.platform.stack.supervisor


async def provisioned(bus: Bus) -> bool:
    try:
        await bus.provision(replicas=3)
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
async def crash(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Crash]:
    data: Path = tmp_path_factory.mktemp("crash")
    # Authentication on, as everywhere: each service connects as itself (issue 14).
    auth = NatsAuth.generate()
    cluster = NatsCluster(data / "nats", auth=auth)
    await asyncio.to_thread(cluster.start)
    pg = EmbeddedPostgres(data / "pg", durable=True)
    await asyncio.to_thread(pg.start)
    bus = await Bus.connect(cluster.operator_urls, "crash-test", BusNamespace())
    await eventually(lambda: provisioned(bus), timeout=60, interval=0.5, message="R3 streams")
    fast = {
        "MARKETBOT_EXECUTOR_BYBIT_ACK_WAIT_S": "10",
        "MARKETBOT_EXECUTOR_BINANCE_ACK_WAIT_S": "10",
    }
    config = StackConfig(
        data_dir=data,
        nats_url=cluster.operator_urls,
        nats_server_url=cluster.urls,
        nats_seeds=dict(auth.seeds),
        database_url=pg.url,
        stream_replicas=3,
        extra_env={
            "executor-bybit": fast,
            "executor-binance": fast,
            "decision": {"MARKETBOT_DECISION_FANOUT_ACK_WAIT_S": "10"},
        },
    )
    supervisor = Supervisor(log_dir=data / "logs", quiet=True)
    stack = Stack(config, supervisor)
    http = httpx.AsyncClient(timeout=30)
    try:
        urls = await stack.start()
        sims = {
            "bybit": SimAdmin(urls.sim.bybit, client=http),
            "binance": SimAdmin(urls.sim.binance, client=http),
            "market": SimAdmin(urls.sim.market, client=http),
        }
        demo = Demo(urls.gateway, config.admin_token, sims, http)
        await demo.set_bullish_market()
        yield Crash(Platform(stack, urls, bus, demo, http, sims), cluster, pg)
    finally:
        await bus.close()
        await http.aclose()
        await stack.stop()
        await asyncio.to_thread(cluster.stop)
        await asyncio.to_thread(pg.stop)


def users_for(test: str, count: int, exchange: str | None = None) -> list[DemoUser]:
    return [
        DemoUser(
            f"{test}-{i}",
            "c",
            PLANS[i % 3],
            exchange or ("bybit", "binance")[i % 2],
            "medium",
        )
        for i in range(count)
    ]


async def seed(crash: Crash, users: list[DemoUser]) -> None:
    demo = crash.platform.demo
    gate = asyncio.Semaphore(8)

    async def one(user: DemoUser) -> None:
        async with gate:
            seeded = await demo.seed_user(user)
            state = await demo.wait_verified(seeded, timeout=120)
        # A burst of registrations can find the vault (or the exchange's budget for
        # verifications) busy: ask again, as a user would, until verified.
        for _ in range(30):
            if state == "verified" or "unavailable" not in state:
                break
            await asyncio.sleep(2)
            async with gate:
                state = await demo.verify(seeded)
        assert state == "verified", (user.user_id, state)

    await asyncio.gather(*(one(u) for u in users))
    await wait_settled(crash.platform.bus)


async def retire(crash: Crash, users: list[DemoUser]) -> None:
    """Pause a finished scenario's users, so the next alert trades only for its own."""
    for user in users:
        await crash.platform.demo.pause(user.user_id)
    await wait_settled(crash.platform.bus)


async def post_alert(crash: Crash, symbol: str, **extra: str) -> dict[str, object]:
    p = crash.platform
    price = await p.demo.price(symbol)
    return await p.demo.send_alert(
        p.config.webhook_source, p.config.webhook_token, alert(symbol, price, **extra)
    )


async def on_first(bus: Bus, subject: str) -> tuple[asyncio.Event, Callable[[], Awaitable[None]]]:
    """An event set by the first message on ``subject`` (a plain subscriber sees every
    request and every stream publish on it); returns it and the unsubscribe."""
    seen = asyncio.Event()

    async def on_message(_msg: Msg) -> None:
        seen.set()

    sub = await bus.nc.subscribe(bus.subject(subject), cb=on_message)

    async def close() -> None:
        await sub.unsubscribe()

    return seen, close


async def streams_answer(bus: Bus) -> bool:
    """JetStream answers for every stream (after a restart it first elects leaders)."""
    try:
        for spec in bus.namespace.streams():
            await bus.js.stream_info(spec.name)
    except Exception:
        return False
    return True


async def ground_truth(crash: Crash, users: list[DemoUser], what: str) -> None:
    """No order lost, none duplicated, and the ledger equal to the exchange.

    Each user's request has exactly one outcome. A fill has exactly one entry order on the
    exchange under the request's client order id (none: lost; more: duplicated) and one
    fill event; a rejection has none on the exchange (else the platform lost track of it).
    The ledger's operation has the outcome's status, and a filled one the exchange's
    executed quantity and order id. In the default (small) runs every order must fill; a
    big run may see requests rejected STALE (older than the 120 s bound when their turn
    came on a loaded machine), which are printed.
    """
    p = crash.platform
    ids = [u.user_id for u in users]
    await eventually(lambda: streams_answer(p.bus), timeout=60, interval=0.5)
    outcomes = await wait_outcomes(p.bus, ids, timeout=300)
    rejected = {u: o for u, o in outcomes.items() if isinstance(o, OrderRejected)}
    requests: dict[str, OrderRequested] = {r.user_id: r for r in await requests_for(p.bus, ids)}
    fills = of_type(await stream_events(p.bus, "ORDER_EVENTS"), OrderFilled, ids)
    lost = duplicated = 0
    exchange_orders: dict[str, dict[str, object]] = {}
    for user in users:
        orders = [
            o
            for o in await p.sims[user.exchange].orders(user.user_id)
            if o.get("client_order_id") == requests[user.user_id].client_order_id
        ]
        if user.user_id in rejected:
            lost += len(orders)  # on the exchange, yet reported rejected
            continue
        lost += not orders
        duplicated += max(0, len(orders) - 1)
        if orders:
            exchange_orders[user.user_id] = orders[0]
    filled = sorted(set(ids) - set(rejected))
    assert sorted(f.user_id for f in fills) == filled  # one fill event each

    async def ledger_matches() -> bool:
        for user in users:
            page = await p.demo.get(f"/users/{user.user_id}/operations")
            rows = page.get("operations", [])
            if len(rows) != 1:
                return False
            if user.user_id in rejected:
                if rows[0]["status"] != "REJECTED":
                    return False
                continue
            order = exchange_orders.get(user.user_id)
            if order is None or rows[0]["status"] != "OPEN":
                return False
            if Decimal(rows[0]["filled_quantity"]) != Decimal(str(order["executed_qty"])):
                return False
            if rows[0]["exchange_order_id"] != str(order["order_id"]):
                return False
        return True

    await eventually(ledger_matches, timeout=180, interval=1.0, message="ledger = exchange")
    reasons = Counter(o.reason.value for o in rejected.values())
    print(
        f"\n{what}: {len(users)} users, filled {len(filled)}, rejected {dict(reasons) or 0}, "
        f"lost {lost}, duplicated {duplicated}"
    )
    assert (lost, duplicated) == (0, 0)
    if USERS <= 100:
        assert not rejected, rejected
    else:
        assert set(reasons) <= {"STALE"}, reasons


@pytest.mark.parametrize("exchange", ["bybit", "binance"])
async def test_executor_killed_after_the_exchange_accepted_before_the_record_commits(
    crash: Crash, exchange: str
) -> None:
    users = users_for(f"accepted-{exchange}", 1, exchange)
    await seed(crash, users)
    sim = crash.platform.sims[exchange]
    path = "/v5/order/create" if exchange == "bybit" else "/api/v3/order"
    # the next order is executed at once and answered only 30 s later
    await sim.set_fault("executed_slow", next_n=1, latency_ms=30_000, path=path)
    try:
        await post_alert(crash, next(SYMBOLS))

        async def accepted() -> bool:
            return bool(await sim.orders(users[0].user_id))

        await eventually(accepted, timeout=60, message="the exchange has the order")
        await crash.supervisor.kill(f"executor-{exchange}")
        await crash.supervisor.restart(f"executor-{exchange}")
    finally:
        await sim.clear_faults()
    await ground_truth(crash, users, f"executor-{exchange} killed between accept and record")
    await retire(crash, users)


@pytest.mark.parametrize("exchange", ["bybit", "binance"])
async def test_executor_killed_between_the_entry_fill_and_its_protection(
    crash: Crash, exchange: str
) -> None:
    """kill -9 while the exit legs are being placed: the exchange has them (executed at
    once, answered 30 s later), the executor's record does not. After the restart the
    position is protected exactly once: the legs are found by their own ids, not placed
    again (issue 13, "Tests that must exist")."""
    users = users_for(f"protect-{exchange}", 1, exchange)
    await seed(crash, users)
    sim = crash.platform.sims[exchange]
    if exchange == "bybit":
        # the entry and the stop loss are both POST /v5/order/create: the entry is answered
        # after 2 s (inside the read timeout), the stop loss only after 30 s
        await sim.set_fault("executed_slow", next_n=1, latency_ms=2_000, path="/v5/order/create")
    try:
        if exchange == "binance":
            await sim.set_fault(
                "executed_slow", next_n=1, latency_ms=30_000, path="/api/v3/orderList/oco"
            )
        await post_alert(crash, next(SYMBOLS), sl="2", tp="3")
        account = users[0].user_id

        async def legs() -> list[dict[str, object]]:
            return [
                o
                for o in await sim.orders(account)
                if str(o.get("client_order_id", "")).startswith(("sl-", "tp-"))
            ]

        async def placed_entry() -> bool:
            return bool(await sim.orders(account))

        await eventually(placed_entry, timeout=60, message="the entry")
        if exchange == "bybit":
            await sim.set_fault(
                "executed_slow", next_n=1, latency_ms=30_000, path="/v5/order/create"
            )
        await eventually(legs, timeout=60, message="the exit legs on the exchange")
        await crash.supervisor.kill(f"executor-{exchange}")
        await sim.clear_faults()
        await crash.supervisor.restart(f"executor-{exchange}")
    finally:
        await sim.clear_faults()
    await ground_truth(crash, users, f"executor-{exchange} killed between fill and protection")
    native = 2 if exchange == "binance" else 1  # Bybit: the take profit is watched

    async def protected_once() -> bool:
        found = await legs()
        return len(found) == native and all(o["status"] in ("NEW", "UNTRIGGERED") for o in found)

    await eventually(protected_once, timeout=60, message="protected exactly once")
    await asyncio.sleep(3)  # a second placement would show up on the tracker's next passes
    assert len(await legs()) == native
    await retire(crash, users)


async def test_decision_killed_in_the_middle_of_a_fan_out(crash: Crash) -> None:
    users = users_for("fanout", USERS)
    await seed(crash, users)
    first, close = await on_first(crash.platform.bus, "orders.requested.>")
    await post_alert(crash, next(SYMBOLS))
    await asyncio.wait_for(first.wait(), timeout=60)
    await crash.supervisor.kill("decision")
    await close()
    sent = len(await requests_for(crash.platform.bus, [u.user_id for u in users]))
    print(f"\ndecision killed after {sent} of {len(users)} order requests")
    await crash.supervisor.restart("decision")
    await ground_truth(crash, users, "decision killed mid-fan-out")
    await retire(crash, users)


async def test_ledger_killed_in_the_middle_of_a_batch(crash: Crash) -> None:
    users = users_for("ledger", USERS)
    await seed(crash, users)
    first, close = await on_first(crash.platform.bus, "ledger.OperationStatusChanged")
    await post_alert(crash, next(SYMBOLS))
    await asyncio.wait_for(first.wait(), timeout=60)
    await crash.supervisor.kill("ledger")
    await close()
    await crash.supervisor.restart("ledger")
    await ground_truth(crash, users, "ledger killed mid-batch")
    await retire(crash, users)


async def test_vault_killed_with_signatures_in_flight(crash: Crash) -> None:
    users = users_for("vault", USERS)
    await seed(crash, users)
    # sign requests go to keyvault.sign.<exchange> (issue 14)
    first, close = await on_first(crash.platform.bus, "keyvault.sign.*")
    await post_alert(crash, next(SYMBOLS))
    await asyncio.wait_for(first.wait(), timeout=60)
    await crash.supervisor.kill("keyvault")
    await close()
    await crash.supervisor.restart("keyvault")
    await ground_truth(crash, users, "keyvault killed with signatures in flight")
    await retire(crash, users)


async def test_gateway_killed_after_the_webhook_was_accepted(crash: Crash) -> None:
    users = users_for("gateway", 6)
    await seed(crash, users)
    accepted = await post_alert(crash, next(SYMBOLS))
    assert accepted["duplicate"] is False  # 202: JetStream has it
    await crash.supervisor.kill("signal-gateway")
    await crash.supervisor.restart("signal-gateway")
    await ground_truth(crash, users, "gateway killed after the 202")
    await retire(crash, users)


async def test_one_nats_node_killed_in_the_middle_of_the_fan_out(crash: Crash) -> None:
    users = users_for("node", USERS)
    await seed(crash, users)
    first, close = await on_first(crash.platform.bus, "orders.requested.>")
    await post_alert(crash, next(SYMBOLS))
    await asyncio.wait_for(first.wait(), timeout=60)
    await asyncio.to_thread(crash.cluster.kill, 0)
    await close()
    try:
        await ground_truth(crash, users, "one NATS node (of 3, R3) killed mid-fan-out")
    finally:
        await asyncio.to_thread(crash.cluster.restart, 0)
    await retire(crash, users)


async def test_the_whole_nats_cluster_killed_and_restarted_mid_fan_out(crash: Crash) -> None:
    users = users_for("nats", USERS)
    await seed(crash, users)
    first, close = await on_first(crash.platform.bus, "orders.requested.>")
    await post_alert(crash, next(SYMBOLS))
    await asyncio.wait_for(first.wait(), timeout=60)
    for node in range(crash.cluster.size):
        await asyncio.to_thread(crash.cluster.kill, node)
    await close()
    for node in range(crash.cluster.size):
        await asyncio.to_thread(crash.cluster.restart, node)
    await ground_truth(crash, users, "every NATS node killed -9 and restarted mid-fan-out")
    await retire(crash, users)


async def test_postgres_killed_and_restarted_mid_fan_out(crash: Crash) -> None:
    users = users_for("pg", USERS)
    await seed(crash, users)
    first, close = await on_first(crash.platform.bus, "orders.requested.>")
    await post_alert(crash, next(SYMBOLS))
    await asyncio.wait_for(first.wait(), timeout=60)
    await asyncio.to_thread(kill_hard, crash.pg)
    await close()
    await asyncio.to_thread(crash.pg.start)
    await ground_truth(crash, users, "PostgreSQL killed -9 and restarted mid-fan-out")
    await retire(crash, users)
