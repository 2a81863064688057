"""Bybit V5 as a ``Venue``: spot orders, a stop-loss leg of our own, UNIFIED wallet.

How a position is protected on Bybit spot, and why:

* A spot Market order carrying takeProfit/stopLoss is refused with retCode 170130
  (reference/bybit-v5/order_create-order.mdx, the takeProfit row: "Spot Limit order
  supports take profit, stop loss"; bybit-exchange/pybit#200: "Market SPOT order doesn't
  support takeProfit and stopLoss").
* The TP/SL a spot Limit order carries are system-managed orders without an id of ours:
  ``parentOrderLinkId`` is "Supported for futures and options" only (order_order-list.mdx),
  and Bybit's maintainers answer that linking them is "impossible. TP/SL/TS are
  system-managed orders and you can't give them your own orderLinkId"
  (bybit-exchange/pybit#213). Matching them to a position would be a heuristic.
* So the stop loss is a spot TP/SL order of our own (``orderFilter=tpslOrder``, a Market
  sell at ``triggerPrice``; "the assets are occupied even before the order is triggered"),
  with an ``orderLinkId`` derived from the entry's. The assets it occupies cannot also back
  a resting take-profit order, so the take profit is a trigger the platform watches: when
  the price reaches it, the stop-loss order is cancelled by its id and the position is sold
  with the take-profit leg's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from marketbot.contracts import KeyPermissions, RejectReason
from marketbot.exchanges.base import BaseVenue
from marketbot.exchanges.bybit import constants as c
from marketbot.exchanges.bybit import endpoints as ep
from marketbot.exchanges.bybit.http import BybitHttp
from marketbot.exchanges.errors import (
    DuplicateClientOrderIdError,
    OrderNotFoundError,
    Rejected,
)
from marketbot.exchanges.numbers import format_decimal, round_down_to_step, round_to_step
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.venue import (
    AccountInfo,
    Balance,
    ExitKind,
    ExitLeg,
    Fill,
    InstrumentFilters,
    Kline,
    KlineInterval,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Position,
    Protection,
    ProtectionSpec,
    Ticker,
    leg_client_id,
)
from marketbot.runtime.clock import epoch_ms

SPOT = "spot"
EXECUTION_PAGE = 100  # execution.mdx: limit [1, 100]
OPEN_ORDERS_PAGE = 50  # order_open-order.mdx: limit [1, 50]
_EPOCH = datetime.fromtimestamp(0, tz=UTC)


class BybitVenue(BaseVenue):
    http: BybitHttp

    def __init__(self, http: BybitHttp, **kwargs: Any) -> None:
        super().__init__(http, **kwargs)

    async def _ping(self) -> None:
        await self.http.call(ep.SERVER_TIME)

    # ---- market data ------------------------------------------------------------------
    async def _all_tickers(self) -> list[Ticker]:
        result = await self.http.call(ep.TICKERS, {"category": SPOT})
        return [ep.parse_ticker(item) for item in result.get("list", [])]

    async def _one_ticker(self, symbol: str) -> Ticker:
        result = await self.http.call(ep.TICKERS, {"category": SPOT, "symbol": symbol})
        items = result.get("list", [])
        if not items:
            raise Rejected(
                f"unknown symbol {symbol}", reason=RejectReason.EXCHANGE, exchange=self.exchange
            )
        return ep.parse_ticker(items[0])

    async def ticker(self, symbol: str) -> Ticker:
        return await self.cached(("ticker", symbol), lambda: self._one_ticker(symbol))

    async def tickers(self, symbols: Sequence[str] | None = None) -> list[Ticker]:
        everything = await self.cached(("tickers",), self._all_tickers)
        if symbols is None:
            return everything
        wanted = set(symbols)
        return [t for t in everything if t.symbol in wanted]

    async def klines(
        self,
        symbol: str,
        interval: KlineInterval,
        *,
        limit: int = 200,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Kline]:
        params = {
            "category": SPOT,
            "symbol": symbol,
            "interval": c.KLINE_INTERVALS[interval.value],
            "limit": str(limit),
        }
        if start is not None:
            params["start"] = str(epoch_ms(start))
        if end is not None:
            params["end"] = str(epoch_ms(end))

        async def load() -> list[Kline]:
            return ep.parse_klines(await self.http.call(ep.KLINE, params))

        return await self.cached(("klines", tuple(params.items())), load)

    async def instrument(self, symbol: str) -> InstrumentFilters:
        async def load() -> InstrumentFilters:
            result = await self.http.call(ep.INSTRUMENTS, {"category": SPOT, "symbol": symbol})
            items = result.get("list", [])
            if not items:
                raise Rejected(
                    f"unknown symbol {symbol}", reason=RejectReason.EXCHANGE, exchange=self.exchange
                )
            return ep.parse_instrument(items[0])

        return await self.cached(("instrument", symbol), load, ttl_s=self.instrument_ttl_s)

    # ---- account --------------------------------------------------------------------
    async def account_info(self, signer: Signer) -> AccountInfo:
        return ep.parse_account_info(await self.http.call(ep.ACCOUNT_INFO, {}, signer))

    async def balances(self, signer: Signer) -> list[Balance]:
        result = await self.http.call(ep.WALLET_BALANCE, {"accountType": "UNIFIED"}, signer)
        return ep.parse_balances(result)

    async def key_permissions(self, signer: Signer) -> KeyPermissions:
        return ep.parse_key_permissions(await self.http.call(ep.QUERY_API, {}, signer))

    # ---- orders ---------------------------------------------------------------------
    def order_params(self, order: OrderRequest, filters: InstrumentFilters) -> dict[str, str]:
        """The create body. A spot market order always names its ``marketUnit`` explicitly:
        Bybit reads a market Buy's ``qty`` in the QUOTE coin unless ``marketUnit=baseCoin``."""
        params = {
            "category": SPOT,
            "symbol": order.symbol,
            "side": ep.SIDE_NAMES[order.side],
            "orderType": "Market" if order.order_type is OrderType.MARKET else "Limit",
        }
        if order.quote_quantity is not None:
            step = filters.quote_step or filters.tick_size
            amount = round_down_to_step(order.quote_quantity, step)
            params["qty"] = format_decimal(amount, step)
            params["marketUnit"] = "quoteCoin"
        else:
            assert order.quantity is not None
            amount = round_down_to_step(order.quantity, filters.qty_step)
            params["qty"] = format_decimal(amount, filters.qty_step)
            if order.order_type is OrderType.MARKET:
                params["marketUnit"] = "baseCoin"
        if amount <= 0:
            raise Rejected(
                f"quantity {order.quantity or order.quote_quantity} rounds to zero at the "
                f"step of {order.symbol}",
                reason=RejectReason.FILTER,
                exchange=self.exchange,
            )
        if order.order_type is OrderType.LIMIT:
            assert order.price is not None
            params["price"] = self._price(order.price, filters)
            params["timeInForce"] = order.time_in_force.value
        params["orderLinkId"] = order.client_order_id
        return params

    @staticmethod
    def _price(price: Decimal, filters: InstrumentFilters) -> str:
        return format_decimal(round_to_step(price, filters.tick_size), filters.tick_size)

    async def _submit(
        self,
        signer: Signer,
        order: OrderRequest,
        filters: InstrumentFilters,
        *,
        confirm: bool = True,
    ) -> OrderState:
        ack = await self.http.call(ep.ORDER_CREATE, self.order_params(order, filters), signer)
        if confirm:
            # The create response is only an acknowledgement: read the order itself once
            # (unless the caller follows it on the private stream's ``order`` topic).
            state = await self.get_order(
                signer, order.symbol, client_order_id=order.client_order_id
            )
            if state is not None:
                return state
        return OrderState(
            exchange_order_id=str(ack.get("orderId", "")),
            client_order_id=str(ack.get("orderLinkId", order.client_order_id)),
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type.value,
            status=OrderStatus.NEW,
            quantity=order.quantity or Decimal(0),
            quote_quantity=order.quote_quantity,
            filled_quantity=Decimal(0),
            price=order.price,
        )

    # ---- protection -----------------------------------------------------------------
    @staticmethod
    def stop_loss_id(spec: ProtectionSpec) -> str:
        return leg_client_id("sl", spec.client_id, spec.generation)

    @staticmethod
    def take_profit_id(spec: ProtectionSpec) -> str:
        return leg_client_id("tp", spec.client_id, spec.generation)

    def stop_loss_params(self, spec: ProtectionSpec, filters: InstrumentFilters) -> dict[str, str]:
        """A spot TP/SL order (order_create-order.mdx, ``orderFilter=tpslOrder``): a Market
        order of ``qty`` base placed when the last price reaches ``triggerPrice``."""
        assert spec.stop_loss is not None
        quantity = round_down_to_step(spec.quantity, filters.qty_step)
        if quantity <= 0 or quantity < filters.min_qty:
            raise Rejected(
                f"min_qty: protected quantity {quantity} is below the minimum {filters.min_qty}",
                reason=RejectReason.FILTER,
                exchange=self.exchange,
            )
        return {
            "category": SPOT,
            "symbol": spec.symbol,
            "side": ep.SIDE_NAMES[spec.exit_side],
            "orderType": "Market",
            "qty": format_decimal(quantity, filters.qty_step),
            "marketUnit": "baseCoin",
            "triggerPrice": self._price(spec.stop_loss, filters),
            "orderFilter": "tpslOrder",
            "orderLinkId": self.stop_loss_id(spec),
        }

    def _legs(self, spec: ProtectionSpec, stop: OrderState | None) -> Protection:
        legs: list[ExitLeg] = []
        if spec.stop_loss is not None:
            legs.append(
                ExitLeg(
                    kind=ExitKind.STOP_LOSS,
                    trigger_price=spec.stop_loss,
                    client_order_id=self.stop_loss_id(spec),
                    exchange_order_id=stop.exchange_order_id if stop else None,
                    status=stop.status if stop else None,
                    filled_quantity=stop.filled_quantity if stop else Decimal(0),
                    average_price=stop.average_price if stop else None,
                )
            )
        if spec.take_profit is not None:
            legs.append(
                ExitLeg(
                    kind=ExitKind.TAKE_PROFIT,
                    trigger_price=spec.take_profit,
                    client_order_id=self.take_profit_id(spec),
                    native=False,
                )
            )
        return Protection(legs=tuple(legs))

    async def protect(
        self, signer: Signer, spec: ProtectionSpec, *, first_attempt: bool = False
    ) -> Protection:
        if spec.stop_loss is None:  # only a take profit: watched, nothing to place
            return self._legs(spec, None)
        link_id = self.stop_loss_id(spec)
        stop = (
            None
            if first_attempt
            else await self.get_order(signer, spec.symbol, client_order_id=link_id)
        )
        if stop is None:
            filters = await self.instrument(spec.symbol)
            params = self.stop_loss_params(spec, filters)
            try:
                ack = await self.http.call(ep.ORDER_CREATE, params, signer)
            except DuplicateClientOrderIdError:
                pass  # an earlier attempt placed it: read it below
            else:
                if first_attempt:
                    # Placed now, and "Untriggered" until the last price reaches its trigger
                    # (enum.mdx, orderStatus): the create's acknowledgement names it; the
                    # private stream or the tracker follows it from here.
                    return self._legs(spec, self._stop_placed(spec, ack, params))
            stop = await self.get_order(signer, spec.symbol, client_order_id=link_id)
        return self._legs(spec, stop)

    @staticmethod
    def _stop_placed(
        spec: ProtectionSpec, ack: dict[str, Any], params: dict[str, str]
    ) -> OrderState:
        return OrderState(
            exchange_order_id=str(ack.get("orderId", "")),
            client_order_id=str(ack.get("orderLinkId", params["orderLinkId"])),
            symbol=spec.symbol,
            side=spec.exit_side,
            order_type="Market",
            status=OrderStatus.UNTRIGGERED,
            quantity=Decimal(params["qty"]),
            filled_quantity=Decimal(0),
        )

    async def protection(self, signer: Signer, spec: ProtectionSpec) -> Protection | None:
        if spec.stop_loss is None:
            return self._legs(spec, None)
        stop = await self.get_order(signer, spec.symbol, client_order_id=self.stop_loss_id(spec))
        return None if stop is None else self._legs(spec, stop)

    async def working_protections(
        self, signer: Signer, specs: Sequence[ProtectionSpec]
    ) -> dict[str, Protection]:
        """The stop losses still open, from the account's open spot TP/SL orders:
        ``GET /v5/order/realtime?category=spot&openOnly=0&orderFilter=tpslOrder``, 50 a page,
        ``nextPageCursor`` to the next (order_open-order.mdx; 50/s per UID,
        rate-limit_rate-limit.mdx). ``openOnly=0`` answers the open statuses only (New,
        PartiallyFilled, Untriggered: enum.mdx orderStatus): a stop loss that triggered,
        filled or was cancelled is not listed and is looked up by its id."""
        found: dict[str, Protection] = {
            s.client_id: self._legs(s, None) for s in specs if s.stop_loss is None
        }
        stops = [s for s in specs if s.stop_loss is not None]
        if not stops:
            return found
        working: dict[str, OrderState] = {}
        params = {
            "category": SPOT,
            "openOnly": "0",
            "orderFilter": "tpslOrder",
            "limit": str(OPEN_ORDERS_PAGE),
        }
        while True:
            result = await self.http.call(ep.ORDER_REALTIME, params, signer)
            items = result.get("list", []) if result else []
            for item in items:
                state = ep.parse_order(item)
                working[state.client_order_id] = state
            cursor = str(result.get("nextPageCursor") or "") if result else ""
            if not cursor or not items:
                break
            params = {**params, "cursor": cursor}
        for spec in stops:
            stop = working.get(self.stop_loss_id(spec))
            if stop is not None and not stop.status.is_final:
                found[spec.client_id] = self._legs(spec, stop)
        return found

    async def unprotect(self, signer: Signer, spec: ProtectionSpec) -> Protection | None:
        """Cancel the stop loss by its id first (one request when it is still working).

        A successful cancel of an untriggered TP/SL order means nothing executed (a
        triggered one is a market order that fills at once, and cancelling it is refused);
        only when the cancel is refused (not found, already ended) is the order read, to
        say how it ended."""
        if spec.stop_loss is None:
            return self._legs(spec, None)
        link_id = self.stop_loss_id(spec)
        try:
            # order_cancel-order.mdx, orderFilter row: "If not passed, `Order` by default":
            # a spot TP/SL order is cancelled only under its own filter.
            ack = await self.http.call(
                ep.ORDER_CANCEL,
                {
                    "category": SPOT,
                    "symbol": spec.symbol,
                    "orderLinkId": link_id,
                    "orderFilter": "tpslOrder",
                },
                signer,
            )
        except (OrderNotFoundError, Rejected):
            # Not found / refused: it ended first (triggered and filled), or never existed.
            stop = await self.get_order(signer, spec.symbol, client_order_id=link_id)
            return None if stop is None else self._legs(spec, stop)
        cancelled = OrderState(
            exchange_order_id=str(ack.get("orderId", "")),
            client_order_id=str(ack.get("orderLinkId") or link_id),
            symbol=spec.symbol,
            side=spec.exit_side,
            order_type="MARKET",
            status=OrderStatus.CANCELED,
            quantity=spec.quantity,
            filled_quantity=Decimal(0),
        )
        return self._legs(spec, cancelled)

    @staticmethod
    def _id_params(exchange_order_id: str | None, client_order_id: str | None) -> dict[str, str]:
        if exchange_order_id:
            return {"orderId": exchange_order_id}
        if client_order_id:
            return {"orderLinkId": client_order_id}
        raise ValueError("pass exchange_order_id or client_order_id")

    async def get_order(
        self,
        signer: Signer,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> OrderState | None:
        params = {"category": SPOT, "symbol": symbol}
        params.update(self._id_params(exchange_order_id, client_order_id))
        for endpoint in (ep.ORDER_REALTIME, ep.ORDER_HISTORY):
            result = await self.http.call(endpoint, params, signer)
            items = result.get("list", []) if result else []
            if items:
                return ep.parse_order(items[0])
        return None

    async def cancel_order(
        self,
        signer: Signer,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> OrderState:
        params = {"category": SPOT, "symbol": symbol}
        params.update(self._id_params(exchange_order_id, client_order_id))
        ack = await self.http.call(ep.ORDER_CANCEL, params, signer)
        state = await self.get_order(
            signer,
            symbol,
            exchange_order_id=str(ack.get("orderId") or "") or exchange_order_id,
            client_order_id=client_order_id,
        )
        if state is None:
            raise Rejected(
                f"cancelled order {exchange_order_id or client_order_id} not found",
                reason=RejectReason.EXCHANGE,
                exchange=self.exchange,
            )
        return state

    async def open_orders(self, signer: Signer, symbol: str | None = None) -> list[OrderState]:
        params = {"category": SPOT, "openOnly": "0", "limit": "50"}
        if symbol:
            params["symbol"] = symbol
        result = await self.http.call(ep.ORDER_REALTIME, params, signer)
        return [ep.parse_order(item) for item in result.get("list", [])]

    async def order_history(
        self, signer: Signer, symbol: str, *, limit: int = 50
    ) -> list[OrderState]:
        params = {"category": SPOT, "symbol": symbol, "limit": str(min(50, max(1, limit)))}
        result = await self.http.call(ep.ORDER_HISTORY, params, signer)
        return [ep.parse_order(item) for item in result.get("list", [])]

    async def positions(self, signer: Signer, symbol: str | None = None) -> list[Position]:
        """Spot has no positions: /v5/position/list takes only linear, inverse and option
        (position_position.mdx, the category row), which the vault never signs."""
        del signer, symbol
        return []

    async def trades(self, signer: Signer, symbol: str, *, exchange_order_id: str) -> list[Fill]:
        """``GET /v5/execution/list?category=spot&orderId`` (50/s per UID), every page.

        Without a time range Bybit answers for the last 7 days (execution.mdx), which covers
        an order the platform is still tracking."""
        filters = await self.instrument(symbol)
        params = {
            "category": SPOT,
            "symbol": symbol,
            "orderId": exchange_order_id,
            "limit": str(EXECUTION_PAGE),
        }
        fills: list[Fill] = []
        while True:
            result = await self.http.call(ep.EXECUTION_LIST, params, signer)
            fills.extend(
                ep.parse_executions(
                    result, base_asset=filters.base_asset, quote_asset=filters.quote_asset
                )
            )
            cursor = str(result.get("nextPageCursor") or "")
            if not cursor or not result.get("list"):
                fills.sort(key=lambda f: (f.filled_at or _EPOCH, f.trade_id or ""))
                return fills
            params = {**params, "cursor": cursor}
