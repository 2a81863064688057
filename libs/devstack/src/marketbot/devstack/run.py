"""``make run``: the whole platform on one machine, a demo alert, and then it keeps running.

1. NATS JetStream + PostgreSQL: embedded in ``.data/run`` (kept between runs), or the
   servers named by ``NATS_URL`` / ``DATABASE_URL``.
2. The exchange simulator and the six services as separate processes, logs prefixed.
3. Demo users on each plan and both exchanges, their keys registered through the gateway
   and verified by the vault against the simulator.
4. A TradingView alert posted to the webhook; the decision, every user's order by plan and
   the ledger's totals are printed as they happen; then a second alert whose positions stay
   open (the web app shows them with their live PnL).
5. The URLs and a curl line to send another alert; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

from marketbot.contracts import BusNamespace
from marketbot.devstack.demo import (
    DEMO_PASSWORD,
    DEMO_USERS,
    PLAN_ORDER,
    Demo,
    Narrator,
    demo_email,
    ledger_totals,
    num,
)
from marketbot.devstack.stack import Stack, StackConfig
from marketbot.devstack.supervisor import Supervisor
from marketbot.runtime.bus import Bus
from marketbot.runtime.infra import start_infra
from marketbot.runtime.logs import configure_logging
from marketbot.sim.admin import SimAdmin


def say(text: str = "") -> None:
    print(text, flush=True)


async def demo_flow(stack: Stack, bus: Bus, *, symbol: str = "BTCUSDT") -> None:
    assert stack.urls is not None
    urls = stack.urls
    cfg = stack.config
    async with httpx.AsyncClient(timeout=30) as http:
        sims = {
            "bybit": SimAdmin(urls.sim.bybit, client=http),
            "binance": SimAdmin(urls.sim.binance, client=http),
            "market": SimAdmin(urls.sim.market, client=http),
        }
        demo = Demo(urls.gateway, cfg.admin_token, sims, http)
        await demo.set_bullish_market()
        say("\n== demo users (keys registered through the gateway, verified by the vault)")
        for user in DEMO_USERS:
            seeded = await demo.seed_user(user)
            state = await demo.wait_verified(seeded)
            say(f"  {user.display_name:<28} {user.funds:>6} USDT  key: {state}")
        narrator = Narrator(bus, sys.stdout, {u.user_id: u.plan for u in DEMO_USERS})
        await narrator.start()
        price = await demo.price(symbol)
        alert = {
            "symbol": symbol,
            "action": "buy",
            "price": str(price),
            "time": datetime.now(UTC).isoformat(),
            "strategy": "demo",
            "sl": "2",
            "tp": "3",
        }
        say(f"\n== TradingView alert: {json.dumps(alert)}")
        result = await demo.send_alert(cfg.webhook_source, cfg.webhook_token, alert)
        say(f"   gateway: {result}")
        eligible = {u.user_id for u in DEMO_USERS if u.eligible}
        done = await narrator.wait_for(eligible, timeout=60)
        if not done:
            missing = sorted(eligible - set(narrator.outcomes))
            say(f"   (no outcome yet for {', '.join(missing)}; they may still be queued)")
        say("\n== take profit: the simulator's price moves up 4 %")
        await sims["bybit"].set_price(symbol, (price * Decimal("1.04")).quantize(Decimal("0.01")))
        filled = {u for u, outcome in narrator.outcomes.items() if outcome == "filled"}
        await narrator.wait_for_closes(filled, timeout=30)
        await narrator.wait_for_commissions(len(filled), timeout=10)
        totals = await ledger_totals(bus, str(uuid.uuid4()))
        say("\n== ledger (platform statement)")
        for line in totals.lines:
            say(
                f"  {line.day}: {line.operations} operations, volume {num(line.volume)} USDT, "
                f"PnL {num(line.realized_pnl)}, commissions {num(line.commissions)}"
            )
        say(
            f"  total realized PnL {num(totals.total_realized_pnl)} USDT, "
            f"commissions {num(totals.total_commissions)} USDT"
        )
        by_plan = sorted(
            narrator.outcomes.items(), key=lambda kv: PLAN_ORDER.get(narrator_plan(kv[0]), 9)
        )
        say("  outcomes: " + ", ".join(f"{u}={o}" for u, o in by_plan))
        # A second alert whose positions stay open, so the web app has open positions with
        # their live PnL to show.
        second = {**alert, "symbol": "ETHUSDT", "time": datetime.now(UTC).isoformat()}
        second["price"] = str(await demo.price("ETHUSDT"))
        say(f"\n== a second alert, left open (see Positions in the web app): {json.dumps(second)}")
        narrator.outcomes.clear()
        say(f"   gateway: {await demo.send_alert(cfg.webhook_source, cfg.webhook_token, second)}")
        await narrator.wait_for(eligible, timeout=60)
        await narrator.stop()


def narrator_plan(user_id: str) -> str:
    return next((u.plan for u in DEMO_USERS if u.user_id == user_id), "")


def print_endpoints(stack: Stack) -> None:
    assert stack.urls is not None
    urls, cfg = stack.urls, stack.config
    hook = f"{urls.webhook}/{cfg.webhook_source}?token={cfg.webhook_token}"
    say("\n== marketbot is running (Ctrl-C stops everything)")
    say(f"  web app     {urls.web}/")
    say(f"    subscriber  sign in as {demo_email('ana')} / {DEMO_PASSWORD}")
    say(
        "                (every demo user: <name>@demo.marketbot.dev, e.g. "
        f"{demo_email('bruno')}, same password)"
    )
    say(f"    operator    {urls.web}/operator/login with the admin token {cfg.admin_token}")
    say(f"  webhook     POST {hook}")
    say(f"  API docs    {urls.gateway}/docs   (admin token: {cfg.admin_token})")
    say(f"  WebSocket   {urls.gateway.replace('http', 'ws')}/ws?token=<user token>")
    for name, url in urls.metrics.items():
        say(f"  metrics     {name:<17} {url}")
    say(
        f"  simulator   bybit {urls.sim.bybit}  binance {urls.sim.binance}  "
        f"market {urls.sim.market}"
    )
    say("\nSend another alert:")
    say(f"  curl -X POST '{hook}' -H 'Content-Type: text/plain' -d 'SELL BTCUSDT'")


async def main_async(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    configure_logging("make-run", "ERROR", stream=sys.stderr)
    say(f"== infrastructure (data in {data_dir})")
    prefix = args.bus_prefix
    infra = start_infra(data_dir / "infra", auth_prefix=prefix)
    say(f"  NATS {infra.nats_server_url} (authentication on: a credential per service)")
    say(f"  PostgreSQL {infra.database_url}")
    config = StackConfig.for_infra(
        infra,
        data_dir=data_dir,
        bus_prefix=prefix,
        log_level=args.log_level,
    )
    supervisor = Supervisor(log_dir=data_dir / "logs", quiet=not args.verbose)
    stack = Stack(config, supervisor)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bus: Bus | None = None
    try:
        say(f"== starting the simulator and the services (logs in {data_dir / 'logs'})")
        await stack.start()
        say("  all services ready: " + ", ".join(supervisor.names))
        bus = await Bus.connect(infra.nats_url, "make-run", BusNamespace(prefix))
        if not args.no_demo:
            await demo_flow(stack, bus)
        print_endpoints(stack)
        if args.exit_after_demo:
            return 0
        await stop.wait()
        return 0
    finally:
        say("\n== stopping")
        if bus is not None:
            with contextlib.suppress(Exception):
                await bus.close()
        await stack.stop()
        infra.stop()
        say("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".data/run"))
    parser.add_argument("--bus-prefix", default="", help="prefix of every subject and stream")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--verbose", action="store_true", help="show every service's log lines")
    parser.add_argument("--no-demo", action="store_true", help="start the platform only")
    parser.add_argument(
        "--exit-after-demo", action="store_true", help="stop once the demo has run (used by tests)"
    )
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir.resolve()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
