"""Settings of the Binance executor: ``MARKETBOT_EXECUTOR_BINANCE_*`` (see ExecutorSettings)."""

from __future__ import annotations

from marketbot.execution.settings import ExecutorSettings
from marketbot.runtime.settings import service_config


class BinanceExecutorSettings(ExecutorSettings):
    model_config = service_config("MARKETBOT_EXECUTOR_BINANCE_")

    service_name: str = "executor-binance"
