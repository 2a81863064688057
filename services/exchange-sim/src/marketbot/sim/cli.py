"""``marketbot-sim``: start the simulator and print its base URLs as one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from marketbot.sim.server import SimServer, build_apps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="marketbot-sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--bybit-port", type=int, default=0)
    parser.add_argument("--binance-port", type=int, default=0)
    parser.add_argument("--market-port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fee", type=Decimal, default=Decimal("0.001"))
    parser.add_argument("--no-limits", action="store_true", help="disable rate limits")
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument(
        "--walk-interval",
        type=float,
        default=0.0,
        help="seconds between automatic random-walk steps (0: prices move only when told)",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    apps = build_apps(seed=args.seed, fee=args.fee, limits=not args.no_limits)
    server = SimServer(
        apps, host=args.host, ports=(args.bybit_port, args.binance_port, args.market_port)
    )
    await server.start()
    line = json.dumps(server.urls)
    if args.ready_file is not None:
        tmp = args.ready_file.with_suffix(args.ready_file.suffix + ".tmp")
        tmp.write_text(line + "\n")
        tmp.replace(args.ready_file)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    walker = None
    if args.walk_interval > 0:
        walker = asyncio.create_task(_walk(apps.prices.step, args.walk_interval))
    await stop.wait()
    if walker is not None:
        walker.cancel()
    await server.stop()


async def _walk(step: Callable[[], None], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        step()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvloop

        uvloop.run(serve(args))
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
