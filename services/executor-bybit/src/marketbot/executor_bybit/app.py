"""Console script ``marketbot-executor-bybit``."""

from __future__ import annotations

from marketbot.contracts import Exchange
from marketbot.execution.app import run_executor
from marketbot.executor_bybit.settings import BybitExecutorSettings

EXCHANGE = Exchange.BYBIT


def main() -> None:
    run_executor(EXCHANGE, BybitExecutorSettings())


if __name__ == "__main__":
    main()
