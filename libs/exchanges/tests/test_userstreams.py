"""Every account's stream on one exchange, within the documented connection limits.

Limits: Bybit websocket_wss-authentication.mdx "IP Limits" ("Do not build over 500
connections in 5 minutes"), one key per private connection; Binance web-socket-api.md
"Connection limits" ("300 connections per attempt every 5 minutes", per IP) and "User Data
Stream subscription" ("up to 1,000 active subscriptions"). Against the simulator over real
WebSockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

from marketbot.contracts import Exchange
from marketbot.exchanges import metrics
from marketbot.exchanges.binance.stream import LIMITS as BINANCE_LIMITS
from marketbot.exchanges.bybit.stream import LIMITS as BYBIT_LIMITS
from marketbot.exchanges.factory import create_user_streams
from marketbot.exchanges.reports import BalanceReport, PriceReport, Report
from marketbot.exchanges.signer import LocalSigner
from marketbot.exchanges.streams import StreamSettings
from marketbot.exchanges.userstreams import ConnectionBudget, StreamLimits
from marketbot.runtime.clock import ManualClock
from marketbot.runtime.testing import eventually
from marketbot.sim.admin import SimAdmin

FAST = StreamSettings(backoff_initial_s=0.01, backoff_max_s=0.05, reply_timeout_s=5.0)


def test_the_documented_limits_and_the_share_used():
    assert (BYBIT_LIMITS.connections_per_window, BYBIT_LIMITS.window_s) == (500, 300.0)
    assert BYBIT_LIMITS.accounts_per_connection == 1
    assert (BINANCE_LIMITS.connections_per_window, BINANCE_LIMITS.window_s) == (300, 300.0)
    assert BINANCE_LIMITS.accounts_per_connection == 1000
    assert (BYBIT_LIMITS.budget, BINANCE_LIMITS.budget) == (450, 270)


async def test_a_simulator_run_scales_the_connection_budget_and_nothing_else() -> None:
    async def on_report(report: Report) -> None:
        del report

    documented = create_user_streams(Exchange.BYBIT, "http://127.0.0.1:1", on_report=on_report)
    scaled = create_user_streams(
        Exchange.BYBIT, "http://127.0.0.1:1", on_report=on_report, limit_scale=1000.0
    )
    assert documented.budget.limits.budget == 450
    assert scaled.limits.connections_per_window == 500_000
    assert scaled.budget.limits.budget == 450_000
    assert scaled.limits.window_s == BYBIT_LIMITS.window_s
    assert BYBIT_LIMITS.connections_per_window == 500  # the module's limits stay as documented


async def test_the_connection_budget_waits_for_the_window_and_meters_it():
    clock = ManualClock()
    budget = ConnectionBudget(
        Exchange.BINANCE,
        StreamLimits(connections_per_window=3, window_s=10.0, accounts_per_connection=1, safety=1),
        clock=clock,
        sleep=clock.sleep,
    )
    for _ in range(3):
        await budget.acquire()
    assert budget.used == 3
    started = clock.monotonic()
    await budget.acquire()  # the fourth waits until the first leaves the window
    assert clock.monotonic() - started == 10.0
    assert budget.waited_s == 10.0
    headroom = metrics.STREAM_CONNECT_HEADROOM.labels("binance")._value.get()
    assert 0 <= headroom < 1


async def _account(admin: SimAdmin) -> tuple[str, LocalSigner]:
    account = await admin.create_account()
    await admin.fund(account, "USDT", Decimal(1000))
    key, secret = await admin.create_api_key(account)
    return account, LocalSigner(key, secret)


async def test_binance_spreads_accounts_over_connections_of_the_chosen_size(sim):
    admin = sim.binance_admin
    reports: list[Report] = []
    connected: list[tuple[list[str], bool]] = []

    async def on_report(report: Report) -> None:
        reports.append(report)

    async def on_connected(users: object, reconnected: bool) -> None:
        connected.append((list(users), reconnected))  # type: ignore[call-overload]

    spent: list[int] = []

    async def spend(weight: int) -> None:
        spent.append(weight)

    streams = create_user_streams(
        Exchange.BINANCE,
        sim.binance_url,
        on_report=on_report,
        on_connected=on_connected,
        settings=FAST,
        accounts_per_connection=2,
        replica="r1",
        egress_ip="203.0.113.7",
        spend=spend,
    )
    accounts = [await _account(admin) for _ in range(5)]
    try:
        for i, (_, signer) in enumerate(accounts):
            await streams.add(f"u{i}", signer)
        await eventually(lambda: all(streams.live(f"u{i}") for i in range(5)), timeout=20)
        assert streams.connections() == 3  # 2 + 2 + 1 accounts
        served = await admin.streams()
        assert sorted(len(c["accounts"]) for c in served["connections"]) == [1, 2, 2]
        per_ip = metrics.STREAM_IP_CONNECTIONS.labels("binance", "r1", "203.0.113.7")
        assert per_ip._value.get() == 3
        assert sorted(u for users, _ in connected for u in users) == [f"u{i}" for i in range(5)]
        # The IP's weight budget is charged: 2 per connection, 2 per subscription
        # (web-socket-api.md "IP limits" and the subscribe's "Weight: 2").
        assert sum(spent) == 3 * 2 + 5 * 2
        # A balance change reaches the right account.
        await admin.fund(accounts[3][0], "USDT", Decimal(5))
        await eventually(
            lambda: any(isinstance(r, BalanceReport) and r.user_id == "u3" for r in reports)
        )
    finally:
        await streams.stop()


async def test_bybit_one_connection_per_key_and_pushed_prices(sim):
    admin = sim.bybit_admin
    reports: list[Report] = []

    async def on_report(report: Report) -> None:
        reports.append(report)

    streams = create_user_streams(Exchange.BYBIT, sim.bybit_url, on_report=on_report, settings=FAST)
    try:
        for i in range(3):
            await streams.add(f"u{i}", (await _account(admin))[1])
        await streams.watch(["SOLUSDT"])
        await eventually(lambda: all(streams.live(f"u{i}") for i in range(3)), timeout=20)
        await eventually(lambda: streams.watching("SOLUSDT"), timeout=20)
        assert streams.connections() == 4  # three keys, one public
        await admin.set_price("SOLUSDT", Decimal("123.45"))
        await eventually(
            lambda: any(
                isinstance(r, PriceReport) and r.price == Decimal("123.45") for r in reports
            )
        )
        await streams.remove("u1")
        assert not streams.live("u1")
        await eventually(lambda: streams.connections() == 3)
    finally:
        await streams.stop()
    await asyncio.sleep(0)


async def test_several_egress_ips_each_have_their_own_connection_budget(sim):
    """The per-IP limit counts each source address apart (the simulator counts by the
    connection's peer address, as the exchanges count by IP): four Bybit keys through two
    local addresses with a limit of two per IP all come up, none waits for the window."""
    admin = sim.bybit_admin
    await admin.stream_settings(connection_limit=[2, 300])

    async def on_report(report: Report) -> None:
        del report

    limits = StreamLimits(connections_per_window=2, window_s=300.0, accounts_per_connection=1)
    streams = create_user_streams(
        Exchange.BYBIT,
        sim.bybit_url,
        on_report=on_report,
        settings=FAST,
        budget=ConnectionBudget(Exchange.BYBIT, dataclasses.replace(limits, safety=1)),
        replica="r-egress",
        source_ips=("127.0.0.1", "127.0.0.2"),
    )
    try:
        for i in range(4):
            await streams.add(f"e{i}", (await _account(admin))[1])
        await eventually(lambda: all(streams.live(f"e{i}") for i in range(4)), timeout=20)
        assert [(e.label, e.up, e.budget.used) for e in streams.egress] == [
            ("127.0.0.1", 2, 2),
            ("127.0.0.2", 2, 2),
        ]
        assert all(e.budget.waited_s == 0 for e in streams.egress)
        per_ip = metrics.STREAM_IP_CONNECTIONS.labels("bybit", "r-egress", "127.0.0.2")
        assert per_ip._value.get() == 2
    finally:
        await streams.stop()
        await admin.stream_settings(connection_limit=[500, 300])
