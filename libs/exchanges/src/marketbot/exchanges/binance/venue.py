"""Binance Spot as a ``Venue``: a bounded entry, then an OCO exit list sized to what it left.

The protection is an OCO order list (``POST /api/v3/orderList/oco``, rest-api.md "New
Order list - OCO"): a TAKE_PROFIT leg above and a STOP_LOSS leg below, one executes and the
other expires, assets reserved once. It is placed after the entry has filled, for the
quantity the user received after commission (a buy's commission is charged in the asset
received), so a partial fill is protected for what filled. Its ``listClientOrderId`` and
both legs' client ids derive from the entry's, so a retry finds what an earlier attempt
placed (``GET /api/v3/orderList`` by ``origClientOrderId``) instead of placing it twice.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from marketbot.contracts import KeyPermissions, RejectReason, Side
from marketbot.exchanges.base import BaseVenue
from marketbot.exchanges.binance import constants as c
from marketbot.exchanges.binance import endpoints as ep
from marketbot.exchanges.binance.http import BinanceHttp
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

MY_TRADES_PAGE = 1000  # rest-api.md "Account trade list": limit maximum 1000
_WORKING = {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNTRIGGERED}


class BinanceVenue(BaseVenue):
    http: BinanceHttp

    def __init__(self, http: BinanceHttp, **kwargs: Any) -> None:
        super().__init__(http, **kwargs)

    async def _ping(self) -> None:
        await self.http.call(ep.PING)

    # ---- market data ------------------------------------------------------------------
    async def ticker(self, symbol: str) -> Ticker:
        async def load() -> Ticker:
            return ep.parse_ticker(await self.http.call(ep.TICKER_24H, {"symbol": symbol}))

        return await self.cached(("ticker", symbol), load)

    async def tickers(self, symbols: Sequence[str] | None = None) -> list[Ticker]:
        params: dict[str, str] = {}
        if symbols is not None:
            params["symbols"] = json.dumps(sorted(set(symbols)), separators=(",", ":"))

        async def load() -> list[Ticker]:
            payload = await self.http.call(ep.TICKER_24H, params)
            return [ep.parse_ticker(item) for item in payload]

        return await self.cached(("tickers", params.get("symbols")), load)

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
            "symbol": symbol,
            "interval": c.KLINE_INTERVALS[interval.value],
            "limit": str(limit),
        }
        if start is not None:
            params["startTime"] = str(epoch_ms(start))
        if end is not None:
            params["endTime"] = str(epoch_ms(end))

        async def load() -> list[Kline]:
            return ep.parse_klines(await self.http.call(ep.KLINES, params))

        return await self.cached(("klines", tuple(params.items())), load)

    async def instrument(self, symbol: str) -> InstrumentFilters:
        async def load() -> InstrumentFilters:
            payload = await self.http.call(ep.EXCHANGE_INFO, {"symbol": symbol})
            if payload.get("rateLimits"):
                self.http.apply_rate_limits(payload["rateLimits"])
            symbols = payload.get("symbols", [])
            if not symbols:
                raise Rejected(
                    f"unknown symbol {symbol}", reason=RejectReason.EXCHANGE, exchange=self.exchange
                )
            return ep.parse_instrument(symbols[0])

        return await self.cached(("instrument", symbol), load, ttl_s=self.instrument_ttl_s)

    async def load_rate_limits(self) -> None:
        """Adopt the exchange's own ``rateLimits`` (request weight, orders) now."""
        payload = await self.http.call(ep.EXCHANGE_INFO, {"symbol": "BTCUSDT"})
        self.http.apply_rate_limits(payload.get("rateLimits", []))

    # ---- account --------------------------------------------------------------------
    async def _account(self, signer: Signer) -> dict[str, Any]:
        # omitZeroBalances is always sent: it binds the signature to this endpoint (policy).
        payload: dict[str, Any] = await self.http.call(
            ep.ACCOUNT, {"omitZeroBalances": "false"}, signer
        )
        return payload

    async def account_info(self, signer: Signer) -> AccountInfo:
        return ep.parse_account(await self._account(signer))

    async def balances(self, signer: Signer) -> list[Balance]:
        return ep.parse_balances(await self._account(signer))

    async def key_permissions(self, signer: Signer) -> KeyPermissions:
        restrictions = await self.http.call(ep.API_RESTRICTIONS, {}, signer)
        account = await self._account(signer)
        return ep.parse_key_permissions(restrictions, account)

    # ---- orders ---------------------------------------------------------------------
    def order_params(self, order: OrderRequest, filters: InstrumentFilters) -> dict[str, str]:
        params = {"symbol": order.symbol, "side": order.side.value, "type": order.order_type.value}
        if order.order_type is OrderType.LIMIT:
            params["timeInForce"] = order.time_in_force.value
        if order.quote_quantity is not None:
            step = filters.quote_step or filters.tick_size
            amount = round_down_to_step(order.quote_quantity, step)
            params["quoteOrderQty"] = format_decimal(amount, step)
        else:
            assert order.quantity is not None
            step = filters.qty_step
            if order.order_type is OrderType.MARKET and filters.market_qty_step:
                step = filters.market_qty_step
            amount = round_down_to_step(order.quantity, step)
            params["quantity"] = format_decimal(amount, step)
        if amount <= 0:
            raise Rejected(
                f"quantity rounds to zero at the step of {order.symbol}",
                reason=RejectReason.FILTER,
                exchange=self.exchange,
            )
        if order.order_type is OrderType.LIMIT:
            assert order.price is not None
            params["price"] = self._price(order.price, filters)
        params["newClientOrderId"] = order.client_order_id
        params["newOrderRespType"] = "FULL"
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
        del confirm  # the answer is the order itself (newOrderRespType FULL)
        payload = await self.http.call(ep.NEW_ORDER, self.order_params(order, filters), signer)
        return ep.parse_order(payload)

    # ---- protection -----------------------------------------------------------------
    @staticmethod
    def leg_ids(spec: ProtectionSpec) -> tuple[str, str, str]:
        """(listClientOrderId, take-profit leg id, stop-loss leg id)."""
        return (
            leg_client_id("ol", spec.client_id, spec.generation),
            leg_client_id("tp", spec.client_id, spec.generation),
            leg_client_id("sl", spec.client_id, spec.generation),
        )

    def exit_params(self, spec: ProtectionSpec, filters: InstrumentFilters) -> dict[str, str]:
        """The OCO for ``spec``. Selling: above = TAKE_PROFIT (stopPrice = TP), below =
        STOP_LOSS (stopPrice = SL); buying back: above = STOP_LOSS, below = TAKE_PROFIT."""
        if spec.take_profit is None or spec.stop_loss is None:
            raise Rejected(
                "an OCO exit list needs both a take profit and a stop loss",
                reason=RejectReason.FILTER,
                exchange=self.exchange,
            )
        quantity = round_down_to_step(spec.quantity, filters.qty_step)
        if quantity <= 0 or quantity < filters.min_qty:
            raise Rejected(
                f"LOT_SIZE: protected quantity {quantity} is below the minimum {filters.min_qty}",
                reason=RejectReason.FILTER,
                exchange=self.exchange,
            )
        list_id, tp_id, sl_id = self.leg_ids(spec)
        tp_leg = {
            "Type": "TAKE_PROFIT",
            "StopPrice": self._price(spec.take_profit, filters),
            "ClientOrderId": tp_id,
        }
        sl_leg = {
            "Type": "STOP_LOSS",
            "StopPrice": self._price(spec.stop_loss, filters),
            "ClientOrderId": sl_id,
        }
        above, below = (tp_leg, sl_leg) if spec.exit_side is Side.SELL else (sl_leg, tp_leg)
        params = {
            "symbol": spec.symbol,
            "listClientOrderId": list_id,
            "side": spec.exit_side.value,
            "quantity": format_decimal(quantity, filters.qty_step),
        }
        params.update({f"above{k}": v for k, v in above.items()})
        params.update({f"below{k}": v for k, v in below.items()})
        params["newOrderRespType"] = "RESULT"
        return params

    def _legs(
        self, spec: ProtectionSpec, reports: dict[str, OrderState], list_id: str
    ) -> Protection:
        _, tp_id, sl_id = self.leg_ids(spec)
        legs = []
        for kind, cid, trigger in (
            (ExitKind.TAKE_PROFIT, tp_id, spec.take_profit),
            (ExitKind.STOP_LOSS, sl_id, spec.stop_loss),
        ):
            state = reports.get(cid)
            legs.append(
                ExitLeg(
                    kind=kind,
                    trigger_price=trigger or Decimal(0),
                    client_order_id=cid,
                    exchange_order_id=state.exchange_order_id if state else None,
                    status=state.status if state else OrderStatus.NEW,
                    filled_quantity=state.filled_quantity if state else Decimal(0),
                    average_price=state.average_price if state else None,
                )
            )
        return Protection(legs=tuple(legs), list_id=list_id)

    async def _order_list(self, signer: Signer, list_client_id: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.http.call(
                ep.QUERY_ORDER_LIST, {"origClientOrderId": list_client_id}, signer
            )
        except OrderNotFoundError:
            return None
        return found

    async def _read_legs(
        self, signer: Signer, spec: ProtectionSpec, listing: dict[str, Any]
    ) -> Protection:
        """``GET /api/v3/orderList`` names the legs but not their fills: while the list is
        EXECUTING both legs are working; once ALL_DONE each leg is read by its id."""
        list_id = str(listing.get("orderListId"))
        if listing.get("listOrderStatus") == "EXECUTING":
            return self._legs(spec, {}, list_id)
        reports: dict[str, OrderState] = {}
        for leg in listing.get("orders", []) or []:
            cid = str(leg.get("clientOrderId", ""))
            state = await self.get_order(signer, spec.symbol, client_order_id=cid)
            if state is not None:
                reports[cid] = state
        return self._legs(spec, reports, list_id)

    def _single(self, spec: ProtectionSpec) -> tuple[ExitKind, str, Decimal] | None:
        """With only one of TP and SL there is no pair: one STOP_LOSS or TAKE_PROFIT order
        (enums.md order types; rest-api.md "New order": stopPrice) under that leg's id."""
        _, tp_id, sl_id = self.leg_ids(spec)
        if spec.take_profit is not None and spec.stop_loss is None:
            return ExitKind.TAKE_PROFIT, tp_id, spec.take_profit
        if spec.stop_loss is not None and spec.take_profit is None:
            return ExitKind.STOP_LOSS, sl_id, spec.stop_loss
        return None

    def _single_legs(self, spec: ProtectionSpec, state: OrderState | None) -> Protection:
        single = self._single(spec)
        assert single is not None
        kind, cid, trigger = single
        leg = ExitLeg(
            kind=kind,
            trigger_price=trigger,
            client_order_id=cid,
            exchange_order_id=state.exchange_order_id if state else None,
            status=state.status if state else None,
            filled_quantity=state.filled_quantity if state else Decimal(0),
            average_price=state.average_price if state else None,
        )
        return Protection(legs=(leg,))

    async def _protect_single(
        self, signer: Signer, spec: ProtectionSpec, *, first_attempt: bool
    ) -> Protection:
        single = self._single(spec)
        assert single is not None
        kind, cid, trigger = single
        state = (
            None
            if first_attempt
            else await self.get_order(signer, spec.symbol, client_order_id=cid)
        )
        if state is None:
            filters = await self.instrument(spec.symbol)
            quantity = round_down_to_step(spec.quantity, filters.qty_step)
            params = {
                "symbol": spec.symbol,
                "side": spec.exit_side.value,
                "type": kind.value,
                "quantity": format_decimal(quantity, filters.qty_step),
                "stopPrice": self._price(trigger, filters),
                "newClientOrderId": cid,
                "newOrderRespType": "RESULT",
            }
            try:
                state = ep.parse_order(await self.http.call(ep.NEW_ORDER, params, signer))
            except DuplicateClientOrderIdError:
                state = await self.get_order(signer, spec.symbol, client_order_id=cid)
        return self._single_legs(spec, state)

    async def protect(
        self, signer: Signer, spec: ProtectionSpec, *, first_attempt: bool = False
    ) -> Protection:
        if spec.take_profit is None and spec.stop_loss is None:
            return Protection(legs=())
        if self._single(spec) is not None:
            return await self._protect_single(signer, spec, first_attempt=first_attempt)
        list_client_id = self.leg_ids(spec)[0]
        # Looked up first unless nothing can have been sent: "a new order list with the same
        # listClientOrderId is accepted only when the previous one is filled or completely
        # expired" (rest-api.md, "New Order list - OCO"), so a retry must not just resend.
        listing = None if first_attempt else await self._order_list(signer, list_client_id)
        if listing is None:
            filters = await self.instrument(spec.symbol)
            try:
                payload = await self.http.call(ep.NEW_OCO, self.exit_params(spec, filters), signer)
            except DuplicateClientOrderIdError:
                listing = await self._order_list(signer, list_client_id)
                if listing is None:
                    raise
            else:
                reports = {leg.client_order_id or "": leg for leg in ep.parse_list_reports(payload)}
                return self._legs(spec, reports, str(payload.get("orderListId")))
        return await self._read_legs(signer, spec, listing)

    async def protection(self, signer: Signer, spec: ProtectionSpec) -> Protection | None:
        if spec.take_profit is None and spec.stop_loss is None:
            return Protection(legs=())
        single = self._single(spec)
        if single is not None:
            state = await self.get_order(signer, spec.symbol, client_order_id=single[1])
            return None if state is None else self._single_legs(spec, state)
        listing = await self._order_list(signer, self.leg_ids(spec)[0])
        return None if listing is None else await self._read_legs(signer, spec, listing)

    async def working_protections(
        self, signer: Signer, specs: Sequence[ProtectionSpec]
    ) -> dict[str, Protection]:
        """The OCO lists still executing, from one ``GET /api/v3/openOrderList`` (rest-api.md
        "Query Open Order lists": weight 6, every symbol; an open list is EXECUTING, and a
        list whose leg executed is ALL_DONE and is no longer listed). A single STOP_LOSS or
        TAKE_PROFIT order is not in a list: it is left out (looked up by its id), since the
        only open-order read covering it, GET /api/v3/openOrders, is never signed (its
        parameters would also authenticate DELETE /api/v3/openOrders)."""
        pairs = [s for s in specs if s.take_profit is not None and s.stop_loss is not None]
        found: dict[str, Protection] = {
            s.client_id: Protection(legs=())
            for s in specs
            if s.take_profit is None and s.stop_loss is None
        }
        if not pairs:
            return found
        lists = await self.http.call(ep.OPEN_ORDER_LISTS, {}, signer)
        executing = {
            str(item.get("listClientOrderId")): str(item.get("orderListId"))
            for item in lists or []
            if item.get("listOrderStatus") == "EXECUTING"
        }
        for spec in pairs:
            list_id = executing.get(self.leg_ids(spec)[0])
            if list_id is not None:
                found[spec.client_id] = self._legs(spec, {}, list_id)
        return found

    async def unprotect(self, signer: Signer, spec: ProtectionSpec) -> Protection | None:
        if spec.take_profit is None and spec.stop_loss is None:
            return Protection(legs=())
        single = self._single(spec)
        if single is not None:
            # Not found / refused: it ended first; the read says how.
            with contextlib.suppress(OrderNotFoundError, Rejected):
                await self.cancel_order(signer, spec.symbol, client_order_id=single[1])
            return await self.protection(signer, spec)
        list_client_id = self.leg_ids(spec)[0]
        try:
            payload = await self.http.call(
                ep.CANCEL_ORDER_LIST,
                {"symbol": spec.symbol, "listClientOrderId": list_client_id},
                signer,
            )
        except (OrderNotFoundError, Rejected):
            return await self.protection(signer, spec)  # already done (a leg executed)
        reports = {leg.client_order_id or "": leg for leg in ep.parse_list_reports(payload)}
        return self._legs(spec, reports, str(payload.get("orderListId")))

    @staticmethod
    def _id_params(exchange_order_id: str | None, client_order_id: str | None) -> dict[str, str]:
        if exchange_order_id:
            return {"orderId": exchange_order_id}
        if client_order_id:
            return {"origClientOrderId": client_order_id}
        raise ValueError("pass exchange_order_id or client_order_id")

    async def get_order(
        self,
        signer: Signer,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> OrderState | None:
        params = {"symbol": symbol, **self._id_params(exchange_order_id, client_order_id)}
        try:
            return ep.parse_order(await self.http.call(ep.QUERY_ORDER, params, signer))
        except OrderNotFoundError:
            return None

    async def cancel_order(
        self,
        signer: Signer,
        symbol: str,
        *,
        exchange_order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> OrderState:
        params = {"symbol": symbol, **self._id_params(exchange_order_id, client_order_id)}
        payload = await self.http.call(ep.CANCEL_ORDER, params, signer)
        # rest-api.md "Cancel order" response: the order's own id is ``origClientOrderId``;
        # ``clientOrderId`` is the cancel request's.
        if payload.get("origClientOrderId"):
            payload = {**payload, "clientOrderId": payload["origClientOrderId"]}
        return ep.parse_order(payload)

    async def open_orders(self, signer: Signer, symbol: str | None = None) -> list[OrderState]:
        """The working orders among the symbol's latest 1000 (allOrders).

        GET /api/v3/openOrders is not signed: its parameters (symbol, timestamp) would also
        authenticate DELETE /api/v3/openOrders, which cancels every order on the symbol.
        """
        if symbol is None:
            raise Rejected(
                "open orders are listed per symbol on Binance",
                reason=RejectReason.EXCHANGE,
                exchange=self.exchange,
            )
        orders = await self.order_history(signer, symbol, limit=1000)
        return [order for order in orders if order.status in _WORKING]

    async def order_history(
        self, signer: Signer, symbol: str, *, limit: int = 50
    ) -> list[OrderState]:
        params = {"symbol": symbol, "limit": str(min(1000, max(1, limit)))}
        payload = await self.http.call(ep.ALL_ORDERS, params, signer)
        return [ep.parse_order(item) for item in payload]

    async def positions(self, signer: Signer, symbol: str | None = None) -> list[Position]:
        return []

    async def trades(self, signer: Signer, symbol: str, *, exchange_order_id: str) -> list[Fill]:
        """``GET /api/v3/myTrades?symbol&orderId`` (weight 5), paged with ``fromId`` (the
        documented ``symbol + orderId + fromId`` combination) while pages come back full."""
        fills: list[Fill] = []
        params = {"symbol": symbol, "orderId": exchange_order_id, "limit": str(MY_TRADES_PAGE)}
        while True:
            page = ep.parse_my_trades(await self.http.call(ep.MY_TRADES, params, signer))
            fills.extend(page)
            if len(page) < MY_TRADES_PAGE:
                return fills
            params = {**params, "fromId": str(int(page[-1].trade_id or 0) + 1)}
