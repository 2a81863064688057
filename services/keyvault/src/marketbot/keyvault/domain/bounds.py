"""An order is signed only within the terms of the order request that asked for it.

The decision service is the only identity that may publish ``OrderRequested``
(marketbot.contracts.access); the vault keeps each request (user, exchange, symbol, side,
risk level, allocation, reference price, client order id) and signs an order placement
only when it carries one out:

* **an entry** (a buy) names its request: same user, exchange, symbol and side, the
  request's own client order id, a limit order priced at most
  ``reference x (1 + max_entry_price_percent)``, and a notional (``quantity x price``) at
  most the blueprint's position size for the user's available balance
  (``size_quote = max(min_order, min(available x risk%, available x max_balance%))``,
  available capped by the request's allocation), plus the executor's slippage bound;
  at most ``max_signs`` signatures per request (retries), so one request cannot be
  executed again and again under its client id once the first order has ended;
* **a sell** (a close, an exit leg, a protection list) names the entries it sells from:
  each one an entry the vault signed, on the same user, exchange and symbol, and the sell's
  quantity at most what was signed for them together.

Pure: the records come from the vault's store, the balance from its cache or the exchange.
Every refusal names the field and the rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from marketbot.contracts import Exchange, RiskLevel, Side
from marketbot.contracts.sizing import HUNDRED, SizingRules, position_size_quote
from marketbot.contracts.sizing import available_quote as capped_by_allocation
from marketbot.exchanges.policy import OrderTerms


@dataclass(frozen=True, slots=True)
class BoundRules:
    """The sizing numbers (the executors' own, or larger) and the vault's margins."""

    sizing: SizingRules = field(default_factory=SizingRules)
    """The blueprint formula's numbers, as the executors size with them."""
    slippage_percent: Decimal = Decimal("0.5")
    """The executors' entry slippage: a limit buy's notional at its limit price may exceed
    the size at the live price by this much."""
    max_entry_price_percent: Decimal = Decimal(2)
    """How far above the request's reference price an entry's limit may be (the price moves
    between the decision and the order, plus the slippage)."""
    max_signs: int = 3
    """Signatures per order request (the first send and its retries)."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One ``OrderRequested`` as the vault stored it, with what it has signed for it."""

    request_id: uuid.UUID
    client_order_id: str
    user_id: str
    exchange: Exchange
    symbol: str
    side: Side
    risk_level: RiskLevel
    reference_price: Decimal | None
    allocation: Decimal | None = None
    allocation_currency: str | None = None
    signs: int = 0
    signed_quantity: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    field: str
    rule: str
    message: str


def available_quote(balance: Decimal, request: RequestRecord, rules: BoundRules) -> Decimal:
    """The free quote balance, capped by the request's allocation (BRL converted)."""
    return capped_by_allocation(
        balance,
        rules.sizing,
        allocation=request.allocation,
        allocation_currency=request.allocation_currency,
    )


def size_cap(balance: Decimal, request: RequestRecord, rules: BoundRules) -> Decimal:
    """The largest notional an entry of this request may have at its limit price."""
    available = available_quote(balance, request, rules)
    size = position_size_quote(available, request.risk_level, rules.sizing)
    return size * (1 + rules.slippage_percent / HUNDRED)


def notional(terms: OrderTerms) -> Decimal:
    if terms.quote_quantity is not None:
        return terms.quote_quantity
    assert terms.quantity is not None
    assert terms.price is not None
    return terms.quantity * terms.price


def _n(value: Decimal) -> str:
    return format(value.normalize(), "f")


def check_entry(
    terms: OrderTerms,
    request: RequestRecord | None,
    *,
    user_id: str,
    exchange: Exchange,
    rules: BoundRules,
) -> Refusal | None:
    """Everything about an entry but its size (which needs the balance)."""
    if request is None:
        return Refusal("request_id", "known_request", "no order request with this id")
    for name, have, want in (
        ("user_id", user_id, request.user_id),
        ("exchange", exchange.value, request.exchange.value),
        ("symbol", terms.symbol, request.symbol),
        ("side", terms.side.value, request.side.value),
    ):
        if have != want:
            return Refusal(
                name, "matches_request", f"{name} {have!r} is not the order request's {want!r}"
            )
    if terms.client_ids != (request.client_order_id,):
        return Refusal(
            "client_order_id",
            "matches_request",
            f"an entry carries its request's client order id {request.client_order_id!r}",
        )
    if not terms.limit or terms.price is None or terms.quantity is None:
        return Refusal(
            "type",
            "limit_entry",
            "an entry is a limit order with a base quantity and a price, so its price is bounded",
        )
    if request.reference_price is None or request.reference_price <= 0:
        return Refusal("reference_price", "known_price", "the order request has no reference price")
    ceiling = request.reference_price * (1 + rules.max_entry_price_percent / HUNDRED)
    if terms.price > ceiling:
        return Refusal(
            "price",
            "max_entry_price",
            f"limit price {_n(terms.price)} is above the request's reference "
            f"{_n(request.reference_price)} + {_n(rules.max_entry_price_percent)} % "
            f"({_n(ceiling)})",
        )
    if request.signs >= rules.max_signs:
        return Refusal(
            "request_id",
            "max_signs",
            f"this order request was signed {request.signs} times already (at most "
            f"{rules.max_signs})",
        )
    return None


def check_size(
    terms: OrderTerms, request: RequestRecord, balance: Decimal, rules: BoundRules
) -> Refusal | None:
    cap = size_cap(balance, request, rules)
    value = notional(terms)
    if value > cap:
        return Refusal(
            "quantity",
            "max_position_size",
            f"order value {_n(value)} {rules.sizing.quote_asset} is above the position size "
            f"{_n(cap)} {rules.sizing.quote_asset} for an available balance of "
            f"{_n(available_quote(balance, request, rules))} {rules.sizing.quote_asset} "
            f"(risk {request.risk_level.value})",
        )
    return None


def check_sell(
    terms: OrderTerms,
    entries: Sequence[RequestRecord],
    named: Sequence[str],
    *,
    user_id: str,
    exchange: Exchange,
) -> Refusal | None:
    """A sell names entries the vault signed, and sells at most what was signed for them.

    The bound is the signed quantity, not the fill the executor reports (the vault does not
    trust it); a spot sell beyond the account's holdings is refused by the exchange anyway
    (Binance -2010 "Account has insufficient balance for requested action.", errors.md;
    Bybit 170131 "Balance insufficient", error.mdx "Spot Trade")."""
    if not named:
        return Refusal("entries", "names_entries", "a sell names the entries it sells from")
    if len(set(named)) != len(named):
        return Refusal("entries", "names_entries", "an entry is named twice")
    found = {entry.client_order_id: entry for entry in entries}
    total = Decimal(0)
    for entry_id in named:
        entry = found.get(entry_id)
        if entry is None or entry.signed_quantity is None:
            return Refusal(
                "entries", "signed_entry", f"{entry_id!r} is not an entry the vault signed"
            )
        if entry.side is not Side.BUY:
            return Refusal("entries", "signed_entry", f"{entry_id!r} is not a buy")
        for name, have, want in (
            ("user_id", user_id, entry.user_id),
            ("exchange", exchange.value, entry.exchange.value),
            ("symbol", terms.symbol, entry.symbol),
        ):
            if have != want:
                return Refusal(
                    name, "matches_entry", f"{name} {have!r} is not entry {entry_id!r}'s {want!r}"
                )
        total += entry.signed_quantity
    if terms.side is not Side.SELL:
        return Refusal("side", "sell", "only a sell is bounded by entries")
    if terms.quantity is None:
        return Refusal("quantity", "base_quantity", "a sell is sized in base quantity")
    if terms.quantity > total:
        return Refusal(
            "quantity",
            "max_sell_quantity",
            f"sell quantity {_n(terms.quantity)} is above the {_n(total)} signed for its entries",
        )
    return None
