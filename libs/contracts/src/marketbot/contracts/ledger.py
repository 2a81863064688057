"""What the ledger publishes, and the queries it answers for the gateway."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from pydantic import AwareDatetime, Field

from marketbot.contracts.enums import Exchange, OperationStatus, Plan, Side
from marketbot.contracts.envelope import Event, Message, Money, Reply, Request


class CommissionAccrued(Event):
    """A platform commission on a closed operation's realized profit (and the referrer's share)."""

    TYPE = "CommissionAccrued"

    operation_id: uuid.UUID
    user_id: str
    plan: Plan
    rate: Money
    realized_pnl: Money
    amount: Money
    currency: str
    referrer_id: str | None = None
    affiliate_rate: Money | None = None
    affiliate_amount: Money | None = None

    def subject(self) -> str:
        return "ledger.CommissionAccrued"


class OperationStatusChanged(Event):
    TYPE = "OperationStatusChanged"

    operation_id: uuid.UUID
    user_id: str
    exchange: Exchange
    symbol: str
    side: Side
    status: OperationStatus
    detail: str | None = None
    realized_pnl: Money | None = None

    def subject(self) -> str:
        return "ledger.OperationStatusChanged"


class Operation(Message):
    operation_id: uuid.UUID
    signal_id: uuid.UUID
    decision_id: uuid.UUID
    user_id: str
    exchange: Exchange
    symbol: str
    side: Side
    plan: Plan
    status: OperationStatus
    client_order_id: str
    exchange_order_id: str | None = None
    requested_quantity: Money | None = None
    filled_quantity: Money | None = None
    average_price: Money | None = None
    exit_price: Money | None = None
    fees_quote: Money | None = None
    realized_pnl: Money | None = None
    commission: Money | None = None
    reject_reason: str | None = None
    requested_at: AwareDatetime
    updated_at: AwareDatetime
    limit_price: Money | None = Field(default=None, description="the entry's worst price")
    max_slippage_percent: Money | None = Field(
        default=None, description="the slippage bound the limit price was derived from"
    )
    exit_client_order_id: str | None = Field(
        default=None, description="the client id of the exit that closed the position"
    )
    fees_estimated: bool | None = Field(
        default=None, description="a fee is an estimate (true), exact (false), unknown (null)"
    )


class OperationsQuery(Request):
    TYPE = "OperationsQuery"
    SUBJECT = "ledger.query.operations"

    user_id: str
    status: OperationStatus | None = None
    symbol: str | None = None
    page: int = Field(default=1, ge=1)
    page_size: int = Field(default=50, ge=1, le=500)


class OperationsPage(Reply):
    operations: tuple[Operation, ...] = ()
    total: int = 0
    page: int = 1
    page_size: int = 50


class StatementLine(Message):
    day: date
    operations: int
    volume: Money
    realized_pnl: Money
    commissions: Money


class StatementQuery(Request):
    TYPE = "StatementQuery"
    SUBJECT = "ledger.query.statement"

    user_id: str | None = Field(default=None, description="None: the platform statement")
    since: date | None = None
    until: date | None = None


class StatementReply(Reply):
    lines: tuple[StatementLine, ...] = ()
    total_realized_pnl: Money = Decimal("0")
    total_commissions: Money = Decimal("0")
    total_volume: Money = Decimal("0")
    total_operations: int = 0
    total_affiliate_commissions: Money = Field(
        default=Decimal("0"),
        description="earned as a referrer (user statement) or paid to referrers (platform)",
    )


class CommissionEntry(Message):
    operation_id: uuid.UUID
    user_id: str
    plan: Plan
    rate: Money
    realized_pnl: Money
    amount: Money
    accrued_at: AwareDatetime
    referrer_id: str | None = None
    affiliate_amount: Money | None = None


class CommissionsQuery(Request):
    TYPE = "CommissionsQuery"
    SUBJECT = "ledger.query.commissions"

    user_id: str | None = None
    referrer_id: str | None = None


class CommissionsReply(Reply):
    entries: tuple[CommissionEntry, ...] = ()
    total: Money = Decimal("0")


class SignalTraceQuery(Request):
    TYPE = "SignalTraceQuery"
    SUBJECT = "ledger.query.trace"

    signal_id: uuid.UUID


class SignalTrace(Reply):
    signal_id: uuid.UUID | None = None
    signal: dict[str, object] | None = None
    decision: dict[str, object] | None = None
    operations: tuple[Operation, ...] = ()
