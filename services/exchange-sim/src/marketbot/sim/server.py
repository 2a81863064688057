"""Compose the three apps around one shared price book and serve them with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import uvicorn

from marketbot.sim.app import ServerClock
from marketbot.sim.asgi import quiet_dropped_connections
from marketbot.sim.binance import BinanceApp
from marketbot.sim.bybit import BybitApp
from marketbot.sim.instruments import default_instruments
from marketbot.sim.market import MarketDataApp
from marketbot.sim.prices import PriceBook


@dataclass(frozen=True, slots=True)
class Apps:
    bybit: BybitApp
    binance: BinanceApp
    market: MarketDataApp
    prices: PriceBook


def build_apps(*, seed: int = 42, fee: Decimal = Decimal("0.001"), limits: bool = True) -> Apps:
    instruments = default_instruments()
    prices = PriceBook(instruments, seed)
    clock = ServerClock()
    bybit = BybitApp(instruments=instruments, prices=prices, clock=clock, seed=seed, fee_rate=fee)
    binance = BinanceApp(
        instruments=instruments, prices=prices, clock=clock, seed=seed + 1, fee_rate=fee
    )
    market = MarketDataApp(prices=prices, clock=clock, seed=seed)
    bybit.limits_enabled = limits
    binance.limits_enabled = limits
    return Apps(bybit=bybit, binance=binance, market=market, prices=prices)


class _Server(uvicorn.Server):
    """Signals are handled by the caller, which runs several servers in one loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class SimServer:
    """Three uvicorn servers (Bybit, Binance, market data) in the current event loop."""

    def __init__(self, apps: Apps, *, host: str, ports: tuple[int, int, int]) -> None:
        self.apps = apps
        self.host = host
        self._sockets = [bind(host, port) for port in ports]
        self._servers: list[_Server] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def urls(self) -> dict[str, str]:
        names = ("bybit", "binance", "market")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {
            name: f"http://{host}:{sock.getsockname()[1]}"
            for name, sock in zip(names, self._sockets, strict=True)
        }

    async def start(self) -> None:
        quiet_dropped_connections()
        for app, sock in zip(
            (self.apps.bybit, self.apps.binance, self.apps.market), self._sockets, strict=True
        ):
            config = uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                http="httptools",
                ws="websockets-sansio",
                ws_ping_interval=app.ws_ping_interval_s,
                ws_ping_timeout=app.ws_ping_timeout_s,
                loop="none",
                timeout_keep_alive=30,
                backlog=2048,
            )
            server = _Server(config)
            self._servers.append(server)
            self._tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        while not all(s.started for s in self._servers):
            if any(t.done() for t in self._tasks):
                for task in self._tasks:
                    if task.done():
                        task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in self._sockets:
            sock.close()

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks)
