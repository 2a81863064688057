"""The decision service's settings, read once from ``MARKETBOT_DECISION_*``."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from marketbot.contracts import Exchange, PlanTable
from marketbot.decision.domain.policy import PolicySettings
from marketbot.runtime.settings import (
    REDELIVERY_SHARE_OF_MAX_AGE,
    ServiceSettings,
    redelivery_window_error,
    service_config,
)


class DecisionSettings(ServiceSettings):
    model_config = service_config("MARKETBOT_DECISION_")

    service_name: str = "decision"

    # where market data comes from (the simulator serves all of them)
    fear_greed_url: str = "https://api.alternative.me"
    coingecko_url: str = "https://api.coingecko.com"
    coingecko_api_key: SecretStr | None = Field(
        default=None, description="sent as x-cg-demo-api-key when set"
    )
    bybit_url: str = Field(default="mainnet", description="mainnet | testnet | demo | a URL")
    binance_url: str = Field(default="mainnet", description="mainnet | testnet | demo | a URL")
    ticker_exchanges: tuple[Exchange, ...] = Field(
        default=(Exchange.BYBIT, Exchange.BINANCE),
        min_length=1,
        description="ticker sources, primary first; the rest are fallbacks",
    )

    # each provider: cache lifetime, fetch timeout, how long a stale value may stand in
    fear_greed_ttl_s: float = Field(default=3600.0, gt=0)
    fear_greed_timeout_s: float = Field(default=2.0, gt=0)
    fear_greed_max_stale_s: float = Field(default=2 * 86_400.0, ge=0)
    dominance_ttl_s: float = Field(default=300.0, gt=0)
    top100_ttl_s: float = Field(default=300.0, gt=0)
    coingecko_timeout_s: float = Field(default=3.0, gt=0)
    coingecko_max_stale_s: float = Field(default=3600.0, ge=0)
    ticker_ttl_s: float = Field(default=5.0, gt=0)
    ticker_timeout_s: float = Field(default=1.5, gt=0, description="per exchange tried")
    ticker_max_stale_s: float = Field(default=60.0, ge=0)

    policy: PolicySettings = Field(default_factory=PolicySettings)

    signal_batch: int = Field(default=16, ge=1)
    fanout_ack_timeout_s: float = Field(default=10.0, gt=0)
    fanout_ack_wait_s: float = Field(
        default=20.0,
        gt=0,
        description="redelivery window of a decision whose fan-out did not finish (a crash "
        f"mid fan-out); at most {REDELIVERY_SHARE_OF_MAX_AGE:.0%} of max_request_age_s, so the "
        "unpublished tiers still arrive young enough to be sent",
    )
    max_request_age_s: float = Field(
        default=120.0,
        gt=0,
        description="the executors' MAX_REQUEST_AGE_S (set both to the same value): what the "
        "fan-out's redelivery window is checked against",
    )

    @model_validator(mode="after")
    def _redelivery_far_shorter_than_max_age(self) -> DecisionSettings:
        error = redelivery_window_error(
            "fanout_ack_wait_s", self.fanout_ack_wait_s, self.max_request_age_s
        )
        if error:
            raise ValueError(error)
        return self

    @property
    def plan_table(self) -> PlanTable:
        """The shared plan table (``MARKETBOT_PLANS``, ``marketbot.contracts.plans``)."""
        return self.plans
