"""Binance Spot as a ``Venue``: entry order, then an OCO exit list sized to the fill."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
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
    ExchangeError,
    OrderNotFoundError,
    OutcomeUnknown,
    Rejected,
)
from marketbot.exchanges.numbers import format_decimal, round_down_to_step, round_to_step
from marketbot.exchanges.signer import Signer
from marketbot.exchanges.venue import (
    AccountInfo,
    Balance,
    InstrumentFilters,
    Kline,
    KlineInterval,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Position,
    Ticker,
)
from marketbot.runtime.clock import epoch_ms

_WORKING = {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNTRIGGERED}


def derived_client_id(kind: str, client_order_id: str) -> str:
    """A deterministic id (<= 36 chars) for an order derived from an entry's client id."""
    return f"{kind}-{hashlib.sha256(client_order_id.encode()).hexdigest()[:30]}"


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
            params["timeInForce"] = "GTC"
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
        self, signer: Signer, order: OrderRequest, filters: InstrumentFilters
    ) -> OrderState:
        payload = await self.http.call(ep.NEW_ORDER, self.order_params(order, filters), signer)
        return ep.parse_order(payload)

    def exit_params(
        self, order: OrderRequest, filters: InstrumentFilters, entry: OrderState
    ) -> dict[str, str] | None:
        """The OCO exit list (``POST /api/v3/orderList/oco``) for a filled entry, or ``None``.

        Sized to the filled quantity less any fee paid in the base asset, rounded down to
        the LOT_SIZE step. Selling: above = TAKE_PROFIT (stopPrice = TP), below = STOP_LOSS
        (stopPrice = SL); buying back: above = STOP_LOSS, below = TAKE_PROFIT.
        """
        take_profit, stop_loss = order.take_profit_price, order.stop_loss_price
        if take_profit is None or stop_loss is None or entry.filled_quantity <= 0:
            return None
        base_fees = sum(
            (fee for asset, fee in entry.fees if asset == filters.base_asset), Decimal(0)
        )
        quantity = round_down_to_step(entry.filled_quantity - base_fees, filters.qty_step)
        if quantity <= 0:
            return None
        exit_side = Side.SELL if order.side is Side.BUY else Side.BUY
        tp_leg = {"Type": "TAKE_PROFIT", "StopPrice": self._price(take_profit, filters)}
        sl_leg = {"Type": "STOP_LOSS", "StopPrice": self._price(stop_loss, filters)}
        above, below = (tp_leg, sl_leg) if exit_side is Side.SELL else (sl_leg, tp_leg)
        above = {**above, "ClientOrderId": derived_client_id("ab", order.client_order_id)}
        below = {**below, "ClientOrderId": derived_client_id("be", order.client_order_id)}
        params = {
            "symbol": order.symbol,
            "listClientOrderId": derived_client_id("ol", order.client_order_id),
            "side": exit_side.value,
            "quantity": format_decimal(quantity, filters.qty_step),
        }
        params.update({f"above{k}": v for k, v in above.items()})
        params.update({f"below{k}": v for k, v in below.items()})
        params["newOrderRespType"] = "RESULT"
        return params

    async def _after_entry(
        self, signer: Signer, order: OrderRequest, filters: InstrumentFilters, entry: OrderState
    ) -> OrderState:
        if order.take_profit_price is None and order.stop_loss_price is None:
            return entry
        params = self.exit_params(order, filters, entry)
        if params is None:
            return replace(
                entry,
                exit_error="exit list not placed: needs both TP and SL and a filled quantity",
            )
        try:
            payload = await self.http.call(ep.NEW_OCO, params, signer)
        except (OutcomeUnknown, DuplicateClientOrderIdError) as exc:
            found = await self._find_order_list(signer, params["listClientOrderId"])
            if found is None:
                return replace(entry, exit_error=f"exit list outcome unknown: {exc}")
            payload = found
        except ExchangeError as exc:
            return replace(entry, exit_error=f"exit list rejected: {exc}")
        return replace(
            entry,
            exits=ep.parse_exit_legs(payload),
            exit_list_id=str(payload.get("orderListId")),
        )

    async def _find_order_list(self, signer: Signer, list_client_id: str) -> dict[str, Any] | None:
        deadline = self.clock.monotonic() + self.http.settings.recv_window_ms / 1000 + 1.0
        while True:
            try:
                found: dict[str, Any] = await self.http.call(
                    ep.QUERY_ORDER_LIST, {"origClientOrderId": list_client_id}, signer
                )
                return found
            except OrderNotFoundError:
                pass
            except ExchangeError:
                pass
            if self.clock.monotonic() >= deadline:
                return None
            await self.clock.sleep(self.resolve_poll_s)

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
        return ep.parse_order(await self.http.call(ep.CANCEL_ORDER, params, signer))

    async def cancel_exit_list(self, signer: Signer, symbol: str, list_client_id: str) -> None:
        await self.http.call(
            ep.CANCEL_ORDER_LIST, {"symbol": symbol, "listClientOrderId": list_client_id}, signer
        )

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
