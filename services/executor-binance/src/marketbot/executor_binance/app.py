"""Console script ``marketbot-executor-binance``."""

from __future__ import annotations

from marketbot.contracts import Exchange
from marketbot.execution.app import run_executor
from marketbot.executor_binance.settings import BinanceExecutorSettings

EXCHANGE = Exchange.BINANCE


def main() -> None:
    run_executor(EXCHANGE, BinanceExecutorSettings())


if __name__ == "__main__":
    main()
