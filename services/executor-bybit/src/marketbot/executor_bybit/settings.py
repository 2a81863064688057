"""Settings of the Bybit executor: ``MARKETBOT_EXECUTOR_BYBIT_*`` (see ExecutorSettings)."""

from __future__ import annotations

from marketbot.execution.settings import ExecutorSettings
from marketbot.runtime.settings import service_config


class BybitExecutorSettings(ExecutorSettings):
    model_config = service_config("MARKETBOT_EXECUTOR_BYBIT_")

    service_name: str = "executor-bybit"
