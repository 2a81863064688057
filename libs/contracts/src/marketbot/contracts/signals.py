"""The start of the flow: an alert becomes a signal, a signal becomes a decision."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AwareDatetime, Field

from marketbot.contracts.enums import DecisionAction, Exchange, SignalAction
from marketbot.contracts.envelope import Event, Message, Money

Symbol = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,20}$", description="e.g. BTCUSDT")]
Percent = Annotated[Money, Field(gt=0, le=100)]


class SignalReceived(Event):
    """A TradingView alert accepted by the gateway. ``correlation_id`` is the signal id.

    v1 called the symbol ``ticker`` and had no ``exchange``; see the upcaster.
    """

    TYPE = "SignalReceived"
    VERSION = 2

    signal_id: uuid.UUID
    source: str = Field(min_length=1, max_length=64)
    symbol: Symbol
    action: SignalAction
    price: Money | None = None
    alert_time: AwareDatetime | None = None
    received_at: AwareDatetime
    strategy: str | None = Field(default=None, max_length=128)
    stop_loss_percent: Percent | None = None
    take_profit_percent: Percent | None = None
    exchange: Exchange | None = None

    def subject(self) -> str:
        return "signals.received"


class Reason(Message):
    """One input of a decision: its value, its weight and what it added to the score."""

    code: str
    value: str | None
    contribution: Money
    text: str


class MarketContext(Message):
    """Everything the decision looked at, so any decision can be audited and replayed."""

    fear_greed: int | None = Field(default=None, ge=0, le=100)
    fear_greed_label: str | None = None
    btc_dominance: Money | None = None
    top100_up_share: Money | None = Field(
        default=None, description="share of the top 100 up in 24 h, 0..1"
    )
    top100_median_change: Money | None = Field(default=None, description="median 24 h % change")
    btc_change_24h: Money | None = Field(
        default=None, description="BTC's own 24 h % change (CoinGecko markets, bitcoin row)"
    )
    market_cap_change_24h: Money | None = Field(
        default=None, description="total market cap 24 h % change (CoinGecko global)"
    )
    ticker_price: Money | None = None
    ticker_exchange: Exchange | None = None
    ticker_change_24h: Money | None = None
    stale: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    errors: tuple[str, ...] = Field(
        default=(), description="why each missing or stale input could not be fetched fresh"
    )


class DecisionMade(Event):
    TYPE = "DecisionMade"

    decision_id: uuid.UUID
    signal_id: uuid.UUID
    symbol: Symbol
    signal_action: SignalAction
    action: DecisionAction
    confidence: int = Field(ge=0, le=100)
    reasons: tuple[Reason, ...]
    context: MarketContext
    reference_price: Money | None = None
    stop_loss_percent: Percent | None = None
    take_profit_percent: Percent | None = None
    exchange: Exchange | None = None
    decided_at: AwareDatetime
    signal_price: Money | None = Field(default=None, description="the alert's price, if any")
    signal_time: AwareDatetime | None = Field(
        default=None, description="alert time (else receipt time) the signal's age is taken from"
    )
    policy_id: str | None = Field(
        default=None, max_length=64, description="fingerprint of the policy settings used"
    )

    def subject(self) -> str:
        return "decisions.made"
