"""The state of one simulated exchange: accounts, API keys, balances and the order lifecycle.

Venue-neutral: the Bybit and Binance apps validate requests in their own dialect and format
responses; this module moves money. Orders fill at the simulated price (no order book).
"""

from __future__ import annotations

import itertools
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from typing import Any

from marketbot.sim.instruments import Instrument, floor_to
from marketbot.sim.prices import PriceBook

ZERO = Decimal(0)
FEE_QUANTUM = Decimal("0.00000001")
_ALNUM = string.ascii_letters + string.digits


class Status(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    UNTRIGGERED = "UNTRIGGERED"
    TRIGGERED = "TRIGGERED"
    """Triggered, its order not executed yet: held only while the admin API holds triggers
    (Bybit enum.mdx: "Triggered: instantaneous state for conditional orders from
    Untriggered to New"). Not open: it can no longer be cancelled."""
    DEACTIVATED = "DEACTIVATED"


OPEN_STATUSES = frozenset({Status.NEW, Status.PARTIALLY_FILLED, Status.UNTRIGGERED})


@dataclass(slots=True)
class Account:
    account_id: str
    uid: int
    created_ms: int
    free: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)

    def available(self, asset: str) -> Decimal:
        return self.free.get(asset, ZERO)

    def credit(self, asset: str, amount: Decimal) -> None:
        self.free[asset] = self.free.get(asset, ZERO) + amount
        self.locked.setdefault(asset, ZERO)


@dataclass(slots=True)
class ApiKey:
    api_key: str
    secret: str
    secret_bytes: bytes
    account_id: str
    read: bool
    trade: bool
    withdraw: bool
    ips: list[str]
    created_ms: int
    expires_at_ms: int | None
    key_id: int
    extra: tuple[str, ...] = ()
    """More permissions the key reports, in the exchange's names (Bybit ``Group.Name``,
    Binance apiRestrictions flags), so tests can show the vault refusing them."""

    @property
    def ip_bound(self) -> bool:
        return bool(self.ips) and self.ips != ["*"]

    def allows_ip(self, ip: str) -> bool:
        return not self.ip_bound or ip in self.ips


@dataclass(slots=True)
class Fill:
    """One trade record, as the venues keep them (Binance myTrades, Bybit execution/list)."""

    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int
    account_id: str = ""
    order_id: str = ""
    symbol: str = ""
    side: str = ""  # BUY | SELL
    time_ms: int = 0
    is_maker: bool = False
    list_id: int = -1
    fee_rate: Decimal = ZERO


@dataclass(slots=True)
class Order:
    account_id: str
    order_id: str
    client_id: str
    symbol: str
    side: str  # BUY | SELL
    type: str  # the venue's own order type name
    market: bool  # executes as a market order once active
    qty: Decimal  # base quantity; zero when sized by quote_qty
    quote_qty: Decimal
    price: Decimal  # limit price, zero for market
    stop_price: Decimal  # trigger price, zero when not conditional
    trigger_dir: int  # +1 fires when the price rises to stop_price, -1 when it falls, 0 none
    time_in_force: str
    created_ms: int
    status: Status = Status.NEW
    updated_ms: int = 0
    working_ms: int = -1
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    fee: Decimal = ZERO
    fee_asset: str = ""
    locked_asset: str = ""
    locked: Decimal = ZERO
    list_id: int = -1
    fills: list[Fill] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(slots=True)
class OrderList:
    """An OCO pair (Binance order list, Bybit attached TP/SL): one executes, the others end."""

    list_id: int
    list_client_id: str
    symbol: str
    orders: list[Order]
    created_ms: int
    done: bool = False
    updated_ms: int = 0


class TradingError(Exception):
    """A business rejection; the venue layer maps ``reason`` to its own code and message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


OrderEvent = Callable[[Order, Status], None]
OrderUpdate = Callable[[Order, "Fill | None"], None]
"""An order was accepted (status NEW/UNTRIGGERED) or closed; ``fill`` when it just traded."""
ListUpdate = Callable[[OrderList], None]
FundsUpdate = Callable[[str], None]


class Exchange:
    """One venue's books. Synchronous: every mutation happens on the event loop thread."""

    def __init__(
        self,
        *,
        instruments: dict[str, Instrument],
        prices: PriceBook,
        now_ms: Callable[[], int],
        fee_rate: Decimal,
        order_id_start: int,
        uid_start: int,
    ) -> None:
        self.instruments = instruments
        self.prices = prices
        self.now_ms = now_ms
        self.fee_rate = fee_rate
        self._order_id_start = order_id_start
        self._uid_start = uid_start
        self.on_status_change: OrderEvent | None = None
        # The private streams listen here (the apps' stream hubs): every order accepted or
        # closed, every order list started or done, and funds credited by the admin API.
        self.order_listeners: list[OrderUpdate] = []
        self.list_listeners: list[ListUpdate] = []
        self.funds_listeners: list[FundsUpdate] = []
        prices.subscribe(self._on_price)
        self.reset()

    def reset(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.keys: dict[str, ApiKey] = {}
        self.orders: list[Order] = []
        self.by_id: dict[str, Order] = {}
        self.by_client: dict[tuple[str, str], Order] = {}
        self.lists: dict[int, OrderList] = {}
        self.lists_by_client: dict[tuple[str, str], OrderList] = {}
        self.trades: list[Fill] = []
        self.list_of: dict[str, OrderList] = {}
        self.resting: dict[str, dict[str, Order]] = {s: {} for s in self.instruments}
        self._order_ids = itertools.count(self._order_id_start)
        self._uids = itertools.count(self._uid_start)
        self._trade_ids = itertools.count(1_000_001)
        self._list_ids = itertools.count(1)
        self._key_ids = itertools.count(2_208_369)
        self.liquidity: dict[str, Decimal] = {}
        """Most base quantity one taker order can execute, per symbol (admin-set): what is
        beyond it is left unfilled, so an IOC or market order fills partially and its
        remainder ends (there is no order book to exhaust)."""
        self.hold_triggers = False
        """While set (admin), a triggered order stops in TRIGGERED, unexecuted, until the
        triggers are released: the instant between trigger and fill, made observable."""
        self.held: list[Order] = []

    # accounts and keys -------------------------------------------------------------------

    def create_account(self, account_id: str | None = None) -> Account:
        uid = next(self._uids)
        account_id = account_id or f"acct-{uid}"
        if account_id in self.accounts:
            raise ValueError(f"account {account_id!r} already exists")
        account = Account(account_id=account_id, uid=uid, created_ms=self.now_ms())
        self.accounts[account_id] = account
        return account

    def create_key(
        self,
        account_id: str,
        *,
        key_length: int,
        secret_length: int,
        read: bool,
        trade: bool,
        withdraw: bool,
        ips: list[str] | None,
        expires_at_ms: int | None,
        api_key: str | None = None,
        secret: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> ApiKey:
        if account_id not in self.accounts:
            raise KeyError(account_id)
        api_key = api_key or "".join(secrets.choice(_ALNUM) for _ in range(key_length))
        secret = secret or "".join(secrets.choice(_ALNUM) for _ in range(secret_length))
        if api_key in self.keys:
            raise ValueError("api key already exists")
        key = ApiKey(
            api_key=api_key,
            secret=secret,
            secret_bytes=secret.encode(),
            account_id=account_id,
            read=read,
            trade=trade,
            withdraw=withdraw,
            ips=list(ips) if ips else ["*"],
            created_ms=self.now_ms(),
            expires_at_ms=expires_at_ms,
            key_id=next(self._key_ids),
            extra=tuple(extra),
        )
        self.keys[api_key] = key
        return key

    def fund(self, account_id: str, asset: str, amount: Decimal) -> None:
        account = self.accounts[account_id]
        if account.available(asset) + amount < 0:
            raise ValueError("balance would become negative")
        account.credit(asset, amount)
        for listener in self.funds_listeners:
            listener(account_id)

    def _notify(self, order: Order, fill: Fill | None = None) -> None:
        for listener in self.order_listeners:
            listener(order, fill)

    def _notify_list(self, order_list: OrderList) -> None:
        for listener in self.list_listeners:
            listener(order_list)

    # orders ------------------------------------------------------------------------------

    def next_order_id(self) -> str:
        return str(next(self._order_ids))

    def next_list_id(self) -> int:
        return next(self._list_ids)

    def open_with_client_id(self, account_id: str, client_id: str) -> Order | None:
        order = self.by_client.get((account_id, client_id))
        return order if order is not None and order.is_open else None

    def market_fill_qty(self, order: Order, price: Decimal, step: Decimal) -> Decimal:
        if order.qty > 0:
            return order.qty
        return floor_to(order.quote_qty / price, step)

    def can_afford(self, order: Order, price: Decimal, step: Decimal) -> bool:
        """Whether the account can pay for ``order`` now (limit: at its price)."""
        account = self.accounts[order.account_id]
        inst = self.instruments[order.symbol]
        if order.side == "BUY":
            if order.market and order.qty == 0:
                need = order.quote_qty
            else:
                need = order.qty * (price if order.market else order.price)
            return account.available(inst.quote) >= need
        qty = self.market_fill_qty(order, price, step) if order.market else order.qty
        return account.available(inst.base) >= qty

    def accept(self, order: Order, step: Decimal) -> None:
        """Record an order that passed validation, then run it: fill, rest or wait for trigger."""
        now = self.now_ms()
        order.updated_ms = now
        self.orders.append(order)
        self.by_id[order.order_id] = order
        if order.client_id:
            self.by_client[(order.account_id, order.client_id)] = order
        if order.stop_price and order.trigger_dir:
            order.status = Status.UNTRIGGERED
            self._lock_for(order)
            self.resting[order.symbol][order.order_id] = order
            self._notify(order)
            return
        order.working_ms = now
        self._notify(order)
        self._activate(order, step)

    def accept_list(self, order_list: OrderList, step: Decimal) -> None:
        """Record an OCO: funds are reserved once, by the first leg, for whichever executes."""
        now = self.now_ms()
        order_list.updated_ms = now
        self.lists[order_list.list_id] = order_list
        account_id = order_list.orders[0].account_id
        if order_list.list_client_id:
            self.lists_by_client[(account_id, order_list.list_client_id)] = order_list
        for index, order in enumerate(order_list.orders):
            order.updated_ms = now
            order.list_id = order_list.list_id
            self.orders.append(order)
            self.by_id[order.order_id] = order
            self.list_of[order.order_id] = order_list
            if order.client_id:
                self.by_client[(order.account_id, order.client_id)] = order
            if index == 0:
                self._lock_for(order)
            if order.stop_price and order.trigger_dir:
                order.status = Status.UNTRIGGERED
            else:
                order.working_ms = now
            self.resting[order.symbol][order.order_id] = order
        for order in order_list.orders:
            self._notify(order)
        self._notify_list(order_list)
        self._check_symbol(order_list.symbol, self.prices.price(order_list.symbol), step)

    def cancel(self, order: Order, *, status: Status = Status.CANCELED) -> None:
        order_list = self.list_of.get(order.order_id)
        if order_list is not None:
            for leg in order_list.orders:
                if leg.is_open:
                    self._close(leg, status)
            order_list.done = True
            order_list.updated_ms = self.now_ms()
            self._notify_list(order_list)
            return
        self._close(order, status)

    # execution ---------------------------------------------------------------------------

    def _activate(self, order: Order, step: Decimal) -> None:
        price = self.prices.price(order.symbol)
        if order.market:
            self._execute(order, price, step)
            return
        order.status = Status.NEW
        if not order.locked_asset:
            self._lock_for(order)
        if self._crosses(order, price):
            self._execute(order, price, step)
        elif order.time_in_force in ("IOC", "FOK"):
            # Immediate-or-cancel / fill-or-kill that cannot trade now ends unfilled
            # (Binance enums.md: EXPIRED "LIMIT IOC or MARKET orders that partially fill").
            self._close(order, Status.EXPIRED)
        else:
            self.resting[order.symbol][order.order_id] = order

    def _lock_for(self, order: Order) -> None:
        inst = self.instruments[order.symbol]
        account = self.accounts[order.account_id]
        if order.side == "BUY":
            if order.market:
                return  # a triggered market buy pays from free balance when it fires
            asset, amount = inst.quote, order.qty * order.price
        else:
            asset, amount = inst.base, order.qty
        amount = min(amount, account.available(asset))
        account.free[asset] = account.available(asset) - amount
        account.locked[asset] = account.locked.get(asset, ZERO) + amount
        order.locked_asset, order.locked = asset, amount

    def _release(self, order: Order) -> None:
        if order.locked and order.locked_asset:
            account = self.accounts[order.account_id]
            account.locked[order.locked_asset] -= order.locked
            account.credit(order.locked_asset, order.locked)
        order.locked = ZERO

    def _pay(self, account: Account, order: Order, asset: str, amount: Decimal) -> None:
        from_lock = min(order.locked, amount) if order.locked_asset == asset else ZERO
        if from_lock:
            account.locked[asset] -= from_lock
            order.locked -= from_lock
        account.free[asset] = account.available(asset) - (amount - from_lock)

    @staticmethod
    def _crosses(order: Order, price: Decimal) -> bool:
        return price <= order.price if order.side == "BUY" else price >= order.price

    def _execute(self, order: Order, price: Decimal, step: Decimal, *, maker: bool = False) -> None:
        """Fill ``order`` at ``price``. ``maker``: a resting limit order taken by the market.

        The commission is charged in the asset received: base for a buy, quote for a sell
        (Binance rest-api.md "Account trade list": a BUY's commissionAsset is the base asset;
        Bybit enum.mdx "Spot Fee Currency Instruction": with a positive fee rate, Buy -> base,
        Sell -> quote).
        """
        inst = self.instruments[order.symbol]
        account = self.accounts[order.account_id]
        wanted = self.market_fill_qty(order, price, step) if order.market else order.qty
        qty = wanted
        taker = order.market or order.time_in_force in ("IOC", "FOK")
        cap = self.liquidity.get(order.symbol)
        if taker and cap is not None:
            qty = min(qty, floor_to(cap, step))
        if qty <= 0 or not self._funded(account, order, qty, price, inst):
            self._close(order, Status.EXPIRED if order.market else Status.CANCELED)
            order.extra["expired_reason"] = "insufficient_balance"
            return
        quote = qty * price
        if order.side == "BUY":
            self._pay(account, order, inst.quote, quote)
            fee = (qty * self.fee_rate).quantize(FEE_QUANTUM, rounding=ROUND_DOWN)
            account.credit(inst.base, qty - fee)
            fee_asset = inst.base
        else:
            self._pay(account, order, inst.base, qty)
            fee = (quote * self.fee_rate).quantize(FEE_QUANTUM, rounding=ROUND_DOWN)
            account.credit(inst.quote, quote - fee)
            fee_asset = inst.quote
        self._release(order)
        fill = Fill(
            price,
            qty,
            fee,
            fee_asset,
            next(self._trade_ids),
            account_id=order.account_id,
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            time_ms=self.now_ms(),
            is_maker=maker,
            list_id=order.list_id,
            fee_rate=self.fee_rate,
        )
        order.fills.append(fill)
        self.trades.append(fill)
        order.executed_qty += qty
        order.cum_quote += quote
        order.fee += fee
        order.fee_asset = fee_asset
        if order.qty == 0:
            order.qty = wanted
        if order.working_ms < 0:
            order.working_ms = self.now_ms()
        if qty < wanted:
            order.extra["partial_remainder"] = str(wanted - qty)
            self._close(order, Status.EXPIRED, fill)
        else:
            self._close(order, Status.FILLED, fill)

    def _funded(
        self, account: Account, order: Order, qty: Decimal, price: Decimal, inst: Instrument
    ) -> bool:
        if order.side == "BUY":
            held = order.locked if order.locked_asset == inst.quote else ZERO
            return account.available(inst.quote) + held >= qty * price
        held = order.locked if order.locked_asset == inst.base else ZERO
        return account.available(inst.base) + held >= qty

    def _close(self, order: Order, status: Status, fill: Fill | None = None) -> None:
        self._release(order)
        self.resting[order.symbol].pop(order.order_id, None)
        previous = order.status
        order.status = status
        order.updated_ms = self.now_ms()
        if previous != status or fill is not None:
            self._notify(order, fill)
        if self.on_status_change is not None and previous != status:
            self.on_status_change(order, previous)

    # price-driven triggers ---------------------------------------------------------------

    def _on_price(self, symbol: str, price: Decimal) -> None:
        if self.resting.get(symbol):
            step = self.step_for(symbol)
            self._check_symbol(symbol, price, step)

    def step_for(self, symbol: str) -> Decimal:
        """Quantity step used when a quote-sized order is converted to base quantity."""
        return self.instruments[symbol].binance.step_size

    def _check_symbol(self, symbol: str, price: Decimal, step: Decimal) -> None:
        for order in list(self.resting[symbol].values()):
            if not order.is_open:
                continue
            if order.status == Status.UNTRIGGERED:
                fired = (order.trigger_dir > 0 and price >= order.stop_price) or (
                    order.trigger_dir < 0 and price <= order.stop_price
                )
                if fired:
                    self._fire(order, price, step)
            elif self._crosses(order, price):
                order_list = self.list_of.get(order.order_id)
                if order_list is not None:
                    self._end_siblings(order_list, order)
                self._execute(order, price, step, maker=True)
                if order_list is not None:
                    self._finish_list(order_list)

    def _fire(self, order: Order, price: Decimal, step: Decimal) -> None:
        order_list = self.list_of.get(order.order_id)
        if order_list is not None:
            self._end_siblings(order_list, order)
        order.extra["triggered"] = True
        if self.hold_triggers:
            self.resting[order.symbol].pop(order.order_id, None)
            order.status = Status.TRIGGERED
            order.updated_ms = self.now_ms()
            self.held.append(order)
            self._notify(order)
            return
        self._run_triggered(order, price, step)

    def release_triggers(self) -> int:
        """Execute every held triggered order at the current price; stop holding."""
        self.hold_triggers = False
        held, self.held = self.held, []
        for order in held:
            step = self.step_for(order.symbol)
            self._run_triggered(order, self.prices.price(order.symbol), step)
        return len(held)

    def _run_triggered(self, order: Order, price: Decimal, step: Decimal) -> None:
        order_list = self.list_of.get(order.order_id)
        order.status = Status.NEW
        order.working_ms = self.now_ms()
        self.resting[order.symbol].pop(order.order_id, None)
        if order.market:
            self._execute(order, price, step)
        else:
            self._activate(order, step)
        if order_list is not None:
            self._finish_list(order_list)

    def _end_siblings(self, order_list: OrderList, winner: Order) -> None:
        for leg in order_list.orders:
            if leg is winner or not leg.is_open:
                continue
            if leg.locked and not winner.locked:
                winner.locked_asset, winner.locked = leg.locked_asset, leg.locked
                leg.locked = ZERO
            leg.extra["ended_by"] = winner.order_id
            self._close(leg, Status.EXPIRED)

    def _finish_list(self, order_list: OrderList) -> None:
        if not order_list.done and not any(leg.is_open for leg in order_list.orders):
            order_list.done = True
            order_list.updated_ms = self.now_ms()
            self._notify_list(order_list)
