"""Per-user orders: the request the decision fans out, and every outcome an executor reports."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, Field

from marketbot.contracts.enums import (
    CloseReason,
    Exchange,
    Plan,
    RejectReason,
    RiskLevel,
    Side,
)
from marketbot.contracts.envelope import Event, Message, Money, derived_id
from marketbot.contracts.signals import Percent, Symbol

ClientOrderId = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9_-]{1,36}$", description="orderLinkId / newClientOrderId"),
]
AllocationCurrency = Annotated[str, Field(pattern=r"^(USDT|BRL)$")]


class OrderRequested(Event):
    """One user's order for one decision. Exactly one per (decision, user).

    v2 added ``commission_rate``: the plan's rate in force when the order was requested,
    which the ledger charges (v1 events are upcast with the rate the ledger used for them).

    ``not_before`` is when the plan's dispatch delay ends (decided_at + delay) and
    ``requested_at`` when the request became runnable, which is the same moment: a request's
    age, and the executors' maximum age, count from there, never from the decision, so a
    TRIAL request is not 3 s older than a PRO one and a fan-out redelivered after a crash is
    judged by how long its requests have really been waiting. (Requests published before
    this rule carry ``requested_at = decided_at``; ``runnable_at`` reads both right.)
    """

    TYPE = "OrderRequested"
    VERSION = 2

    request_id: uuid.UUID
    decision_id: uuid.UUID
    signal_id: uuid.UUID
    user_id: str = Field(min_length=1, max_length=64)
    exchange: Exchange
    symbol: Symbol
    side: Side
    plan: Plan
    priority: int = Field(ge=1)
    not_before: AwareDatetime
    risk_level: RiskLevel
    client_order_id: ClientOrderId
    reference_price: Money | None = None
    stop_loss_percent: Percent | None = None
    take_profit_percent: Percent | None = None
    allocation: Money | None = Field(default=None, gt=0)
    allocation_currency: AllocationCurrency | None = None
    requested_at: AwareDatetime = Field(
        description="when the request became runnable (= not_before); its age counts from here"
    )
    commission_rate: Money = Field(
        ge=0, le=1, description="the plan's commission rate when the order was requested"
    )

    @property
    def runnable_at(self) -> datetime:
        """When the request could first be sent: the later of requested_at and not_before."""
        return max(self.requested_at, self.not_before)

    def age_s(self, now: datetime) -> float:
        """Seconds since the request became runnable (negative while it still waits)."""
        return (now - self.runnable_at).total_seconds()

    def subject(self) -> str:
        return order_request_subject(self.exchange, self.plan)


def order_request_subject(exchange: Exchange, plan: Plan) -> str:
    return f"orders.requested.{exchange.value}.{plan.value.lower()}"


class OrderEvent(Event):
    """Fields every outcome of an order carries: which request, whose, where."""

    request_id: uuid.UUID
    decision_id: uuid.UUID
    signal_id: uuid.UUID
    user_id: str
    exchange: Exchange
    symbol: Symbol
    side: Side
    plan: Plan
    client_order_id: ClientOrderId

    def subject(self) -> str:
        return f"orders.{self.exchange.value}.{self.TYPE}"


class OrderPlaced(OrderEvent):
    """v2 adds the entry's price bound: ``limit_price`` and the ``max_slippage_percent``
    it was derived from (an IOC limit order fills at that price or better, or not)."""

    TYPE = "OrderPlaced"
    VERSION = 2

    exchange_order_id: str
    quantity: Money = Field(gt=0, description="base quantity sent")
    quote_amount: Money = Field(gt=0, description="position size in quote currency")
    reference_price: Money
    stop_loss_price: Money | None = None
    take_profit_price: Money | None = None
    limit_price: Money | None = Field(default=None, description="worst price accepted")
    max_slippage_percent: Percent | None = None
    placed_at: AwareDatetime


class Fill(Message):
    """One trade as the exchange recorded it (Binance myTrades / FULL fills, Bybit
    execution list). The fee is in the asset actually charged; ``fee_quote`` values it in
    the quote currency, at ``fee_price`` when charged in a third asset."""

    trade_id: str
    price: Money
    quantity: Money
    fee: Money
    fee_asset: str
    fee_quote: Money = Field(description="the fee valued in the quote currency")
    fee_price: Money | None = Field(
        default=None, description="price of fee_asset in quote used for fee_quote (third asset)"
    )
    fee_estimated: bool = Field(
        default=False, description="fee_quote is an estimate (no price for a third asset)"
    )
    filled_at: AwareDatetime | None = Field(default=None, description="the exchange's time")


class OrderFilled(OrderEvent):
    """v2: fills from the exchange's trade records, ``fees_estimated`` (``None`` for v1
    events, whose fees could be estimates without saying so), exchange times."""

    TYPE = "OrderFilled"
    VERSION = 2

    exchange_order_id: str
    fills: tuple[Fill, ...]
    filled_quantity: Money = Field(gt=0)
    average_price: Money = Field(gt=0)
    quote_quantity: Money
    fees_quote: Money
    fees_estimated: bool | None = False
    filled_at: AwareDatetime = Field(description="the exchange's time of the last fill")


class OrderRejected(OrderEvent):
    TYPE = "OrderRejected"

    reason: RejectReason
    message: str
    exchange_code: str | None = None
    rejected_at: AwareDatetime


class OrderOutcomeUnknown(OrderEvent):
    """Sent, but no answer: resolved later by querying the client order id."""

    TYPE = "OrderOutcomeUnknown"

    detail: str
    since: AwareDatetime


class PositionReduced(OrderEvent):
    """Part of a position was sold and the rest stays open: a close or an exit leg filled
    partially (a market sell's remainder cancelled for want of liquidity: Binance
    ``EXPIRED``, Bybit ``PartiallyFilledCanceled``). Carries the entry's identity, like
    ``PositionClosed``.

    ``quantity``, ``exit_price``, ``fees_quote`` and ``realized_pnl`` are this part's (the
    entry fees charged to the part pro rata); ``sold_quantity``, ``fees_quote_total`` and
    ``realized_pnl_total`` add every part sold so far, this one included, so the latest
    reduction says everything (a consumer keeps the one with the largest
    ``sold_quantity``). The remainder stays protected; the ``PositionClosed`` that ends the
    position carries the totals over every part."""

    TYPE = "PositionReduced"
    VERSION = 1

    exchange_order_id: str | None = None
    exit_client_order_id: str | None = None
    fees_estimated: bool = False
    opened_at: AwareDatetime | None = None
    reason: CloseReason = Field(description="what sold the part: TP, SL or a signal")
    quantity: Money = Field(gt=0, description="base quantity sold in this part")
    remaining_quantity: Money = Field(gt=0, description="base quantity still open")
    entry_price: Money
    exit_price: Money = Field(description="average price of this part")
    fees_quote: Money = Field(description="this part's share of the entry fees + its exit fees")
    realized_pnl: Money = Field(description="this part's profit, quote currency, net of fees")
    sold_quantity: Money = Field(gt=0, description="every part sold so far, this one included")
    fees_quote_total: Money
    realized_pnl_total: Money
    reduced_at: AwareDatetime = Field(description="the exchange's time of the part's last fill")


class PositionClosed(OrderEvent):
    """v2: the exit is named by its own client id (``exit_client_order_id``: the TP or SL
    leg, or the close order of a signal); fees say whether they are estimated; the times
    are the exchange's.

    A position that was sold in parts (``PositionReduced``) closes with the totals over
    every part: ``quantity`` all it sold, ``exit_price`` the average over the parts,
    ``fees_quote`` and ``realized_pnl`` their sums (the close's own part included)."""

    TYPE = "PositionClosed"
    VERSION = 2

    exchange_order_id: str | None = None
    exit_client_order_id: str | None = None
    fees_estimated: bool | None = False
    opened_at: AwareDatetime | None = None
    close_reason: CloseReason
    quantity: Money = Field(gt=0)
    entry_price: Money
    exit_price: Money
    fees_quote: Money = Field(description="entry + exit fees in quote currency")
    realized_pnl: Money = Field(description="quote currency, net of fees")
    closed_at: AwareDatetime


def request_id_for(decision_id: uuid.UUID, user_id: str) -> uuid.UUID:
    return derived_id("order-request", decision_id, user_id)


def client_order_id_for(decision_id: uuid.UUID, user_id: str) -> str:
    """Deterministic client order id: ``mb-`` + 32 hex chars (35 <= 36, [A-Za-z0-9_-])."""
    digest = hashlib.sha256(f"{decision_id}|{user_id}".encode()).hexdigest()
    return f"mb-{digest[:32]}"
