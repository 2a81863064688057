"""Request and response bodies of the admin and user APIs (the OpenAPI document shows them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, model_validator

from marketbot.contracts import (
    Exchange,
    Money,
    Plan,
    RiskLevel,
    SubscriptionStatus,
    TradingMode,
)
from marketbot.gateway.domain.accounts import User

UserIdText = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Currency = Annotated[str, Field(pattern=r"^(USDT|BRL)$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateUser(Body):
    user_id: UserIdText | None = Field(default=None, description="generated when omitted")
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    display_name: str = Field(min_length=1, max_length=128)
    referrer_id: UserIdText | None = None
    plan: Plan = Plan.TRIAL
    subscription_status: SubscriptionStatus = SubscriptionStatus.INACTIVE
    expires_at: AwareDatetime | None = None
    trading_mode: TradingMode = TradingMode.PAUSED
    preferred_exchange: Exchange = Exchange.BYBIT
    risk_level: RiskLevel = RiskLevel.LOW
    allocation: Annotated[Money, Field(gt=0)] | None = None
    allocation_currency: Currency | None = None


class SubscriptionUpdate(Body):
    plan: Plan
    status: SubscriptionStatus
    expires_at: AwareDatetime | None = None


class PreferencesUpdate(Body):
    trading_mode: TradingMode | None = None
    preferred_exchange: Exchange | None = None
    risk_level: RiskLevel | None = None
    allocation: Annotated[Money, Field(gt=0)] | None = None
    allocation_currency: Currency | None = None

    @model_validator(mode="after")
    def _something(self) -> PreferencesUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one preference to change")
        return self


class ReferrerUpdate(Body):
    referrer_id: UserIdText | None


class CreateSource(Body):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")


class RegisterKey(Body):
    api_key: str = Field(min_length=8, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")
    api_secret: SecretStr = Field(min_length=8, max_length=512)


class UserOut(BaseModel):
    user_id: str
    email: str
    display_name: str
    plan: Plan
    subscription_status: SubscriptionStatus
    expires_at: datetime | None
    trading_mode: TradingMode
    preferred_exchange: Exchange
    risk_level: RiskLevel
    allocation: str | None
    allocation_currency: str | None
    referrer_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls.model_validate(user.public())


class CreatedUser(BaseModel):
    user: UserOut
    token: str = Field(description="the user's bearer token; shown only this once")


class UserList(BaseModel):
    users: list[UserOut]
    total: int
    limit: int
    offset: int


class SourceOut(BaseModel):
    name: str
    created_at: datetime | None
    managed: bool = Field(description="false for sources configured in settings")
    webhook_path: str


class CreatedSource(BaseModel):
    source: SourceOut
    token: str = Field(description="the source token; shown only this once")
