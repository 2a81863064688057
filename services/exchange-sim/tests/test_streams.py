"""The private streams over a real WebSocket: Bybit ``/v5/private`` and Binance's WS API.

Each check cites the page it follows (shared/reference/bybit-v5/websocket_*.mdx,
shared/reference/binance-spot/web-socket-api.md and user-data-stream.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

GUARD_S = 10.0  # a hang guard, not a timing assertion


def ws_url(http_url: str, path: str) -> str:
    return http_url.replace("http://", "ws://", 1) + path


@asynccontextmanager
async def stream(url: str) -> AsyncIterator[ClientConnection]:
    async with connect(url, open_timeout=GUARD_S) as ws:
        yield ws


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), GUARD_S))
    return message


async def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    await send(ws, message)
    return await recv(ws)


def now_ms() -> int:
    return int(time.time() * 1000)


# ---- Bybit ---------------------------------------------------------------------------


def bybit_auth(key: str, secret: str, expires: int) -> dict[str, Any]:
    # websocket_wss-authentication.mdx: HMAC_SHA256(secret, "GET/realtime" + expires).
    signature = hmac.new(
        secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256
    ).hexdigest()
    return {"req_id": "a1", "op": "auth", "args": [key, expires, signature]}


async def bybit_stream(local: Any, client: Any, topics: list[str]) -> ClientConnection:
    ws = await connect(ws_url(local.urls["bybit"], "/v5/private"), open_timeout=GUARD_S)
    assert (await ask(ws, bybit_auth(client.key, client.secret, now_ms() + 1000)))["success"]
    subscribed = await ask(ws, {"op": "subscribe", "args": topics})
    assert subscribed["success"] is True
    return ws


async def test_bybit_auth_ping_and_subscribe_follow_the_docs(local, h):
    _, client = await h.new_bybit(local)
    async with stream(ws_url(local.urls["bybit"], "/v5/private")) as ws:
        # "Pong message example of private channels": req_id, op pong, args [ts], conn_id.
        pong = await ask(ws, {"req_id": "test", "op": "ping"})
        assert set(pong) == {"req_id", "op", "args", "conn_id"}
        assert (pong["req_id"], pong["op"]) == ("test", "pong")
        assert pong["args"][0].isdigit()

        # Private topics before auth are refused (pybit#37).
        early = await ask(ws, {"op": "subscribe", "args": ["order"]})
        assert early["success"] is False

        # Failed auth: {"success": false, "ret_msg": "Params Error", "op": "auth"} for an
        # expired ``expires`` (pybit#300) or a bad key/signature (Bybit.Net#231).
        expired = await ask(ws, bybit_auth(client.key, client.secret, now_ms() - 1))
        assert (expired["success"], expired["ret_msg"], expired["op"]) == (
            False,
            "Params Error",
            "auth",
        )
        forged = await ask(ws, bybit_auth(client.key, "not-the-secret", now_ms() + 1000))
        assert forged["success"] is False
        unknown = await ask(ws, bybit_auth("X" * 18, client.secret, now_ms() + 1000))
        assert unknown["success"] is False

        # "Successful authentication sample response".
        authed = await ask(ws, bybit_auth(client.key, client.secret, now_ms() + 1000))
        assert set(authed) == {"success", "ret_msg", "op", "conn_id", "req_id"}
        assert (authed["success"], authed["ret_msg"], authed["op"]) == (True, "", "auth")

        # "Topic subscription response message example" (Private).
        reply = await ask(ws, {"op": "subscribe", "args": ["order", "execution", "wallet"]})
        assert set(reply) == {"success", "ret_msg", "op", "conn_id"}
        assert (reply["success"], reply["op"]) == (True, "subscribe")
        bad = await ask(ws, {"op": "subscribe", "args": ["position.linear"]})
        assert bad["success"] is False
        streams = await local.bybit_admin.streams()
        mine = [c for c in streams["connections"] if c["conn_id"] == authed["conn_id"]]
        assert mine[0]["topics"] == ["execution", "order", "wallet"]


ORDER_FIELDS = {
    "category",
    "orderId",
    "orderLinkId",
    "symbol",
    "price",
    "qty",
    "side",
    "orderStatus",
    "cancelType",
    "rejectReason",
    "avgPrice",
    "leavesQty",
    "cumExecQty",
    "cumExecValue",
    "timeInForce",
    "orderType",
    "stopOrderType",
    "createdTime",
    "updatedTime",
    "cumFeeDetail",
}
EXECUTION_FIELDS = {
    "category",
    "symbol",
    "orderId",
    "orderLinkId",
    "side",
    "orderPrice",
    "orderQty",
    "leavesQty",
    "orderType",
    "execFee",
    "execId",
    "execPrice",
    "execQty",
    "execType",
    "execValue",
    "execTime",
    "isMaker",
    "feeRate",
    "feeCurrency",
    "seq",
}


async def test_bybit_market_buy_pushes_order_execution_and_wallet(local, h):
    _, client = await h.new_bybit(local)
    ws = await bybit_stream(local, client, ["order", "execution", "wallet"])
    try:
        created = await client.post(
            "/v5/order/create",
            {
                "category": "spot",
                "symbol": "BTCUSDT",
                "side": "Buy",
                "orderType": "Market",
                "qty": "100",
                "orderLinkId": "ws-mkt-1",
            },
        )
        order_id = created.json()["result"]["orderId"]
        messages = [await recv(ws) for _ in range(4)]
    finally:
        await ws.close()
    # websocket_private_*.mdx "Stream Example": id, topic, creationTime, data [..].
    for message in messages:
        assert set(message) == {"id", "topic", "creationTime", "data"}
    assert [m["topic"] for m in messages] == ["order", "order", "execution", "wallet"]
    new, filled, execution, wallet = (m["data"][0] for m in messages)
    assert set(new) >= ORDER_FIELDS
    assert (new["orderId"], new["orderStatus"], new["category"]) == (order_id, "New", "spot")
    assert (filled["orderStatus"], filled["orderLinkId"]) == ("Filled", "ws-mkt-1")
    assert set(execution) >= EXECUTION_FIELDS
    assert execution["orderId"] == order_id
    assert execution["execType"] == "Trade"
    assert execution["execQty"] == filled["cumExecQty"]
    assert execution["feeCurrency"] == "BTC"  # a buy pays its fee in base (enum.mdx)
    assert wallet["accountType"] == "UNIFIED"
    coins = {c["coin"]: c for c in wallet["coin"]}
    assert Decimal(coins["BTC"]["walletBalance"]) > 0
    assert Decimal(coins["USDT"]["walletBalance"]) < Decimal("10000")


async def test_bybit_take_profit_fill_is_pushed(local, h):
    _, client = await h.new_bybit(local)
    await local.bybit_admin.set_price("ADAUSDT", Decimal("0.4500"))
    ws = await bybit_stream(local, client, ["order"])
    try:
        created = await client.post(
            "/v5/order/create",
            {
                "category": "spot",
                "symbol": "ADAUSDT",
                "side": "Buy",
                "orderType": "Limit",
                "qty": "100",
                "price": "0.4600",
                "takeProfit": "0.5000",
                "stopLoss": "0.4000",
                "orderLinkId": "ws-tp",
            },
        )
        assert created.json()["retCode"] == 0, created.text
        # the entry New, Filled; then its TP and SL legs Untriggered.
        first = [(await recv(ws))["data"][0] for _ in range(4)]
        assert [o["orderStatus"] for o in first] == ["New", "Filled", "Untriggered", "Untriggered"]
        assert {o["stopOrderType"] for o in first[2:]} == {"TakeProfit", "StopLoss"}
        await local.bybit_admin.set_price("ADAUSDT", Decimal("0.5100"))
        after = [(await recv(ws))["data"][0] for _ in range(2)]
    finally:
        await ws.close()
    by_type = {o["stopOrderType"]: o for o in after}
    assert by_type["TakeProfit"]["orderStatus"] == "Filled"
    assert by_type["TakeProfit"]["parentOrderLinkId"] == "ws-tp"
    assert by_type["StopLoss"]["orderStatus"] == "Deactivated"


# ---- Binance -------------------------------------------------------------------------


def subscribe_signature(key: str, secret: str, request_id: str, **extra: Any) -> dict[str, Any]:
    # web-socket-api.md "SIGNED request example (HMAC)": the params sorted by name.
    params: dict[str, Any] = {"apiKey": key, "timestamp": now_ms(), "recvWindow": 5000}
    params.update(extra)
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["signature"] = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return {"id": request_id, "method": "userDataStream.subscribe.signature", "params": params}


async def binance_stream(local: Any) -> ClientConnection:
    return await connect(ws_url(local.urls["binance"], "/ws-api/v3"), open_timeout=GUARD_S)


async def test_binance_many_accounts_on_one_connection(local, h):
    _, first = await h.new_binance(local)
    _, second = await h.new_binance(local)
    async with stream(ws_url(local.urls["binance"], "/ws-api/v3")) as ws:
        # web-socket-api.md: response {"id", "status": 200, "result": {"subscriptionId"}}.
        one = await ask(ws, subscribe_signature(first.key, first.secret, "s1"))
        assert one == {"id": "s1", "status": 200, "result": {"subscriptionId": 0}}
        two = await ask(ws, subscribe_signature(second.key, second.secret, "s2"))
        assert two["result"] == {"subscriptionId": 1}
        # "You can have only one active subscription for a given account on a given
        # connection": errors.md -2035 SUBSCRIPTION_ACTIVE.
        again = await ask(ws, subscribe_signature(first.key, first.secret, "s3"))
        assert (again["status"], again["error"]["code"]) == (400, -2035)
        forged = subscribe_signature(first.key, "x" * 64, "s4")
        assert (await ask(ws, forged))["error"] == {
            "code": -1022,
            "msg": "Signature for this request is not valid.",
        }
        stale = subscribe_signature(second.key, second.secret, "s5", timestamp=now_ms() - 60_000)
        assert (await ask(ws, stale))["error"]["code"] == -1021
        listed = await ask(ws, {"id": "l", "method": "session.subscriptions", "params": {}})
        assert listed["result"] == [{"subscriptionId": 0}, {"subscriptionId": 1}]
        assert await ask(ws, {"id": "p", "method": "ping"}) == {
            "id": "p",
            "status": 200,
            "result": {},
        }
        # userDataStream.unsubscribe with an id closes that one; eventStreamTerminated.
        await send(
            ws, {"id": "u", "method": "userDataStream.unsubscribe", "params": {"subscriptionId": 1}}
        )
        answers = [await recv(ws), await recv(ws)]
        terminated = next(a for a in answers if "event" in a)
        assert terminated["subscriptionId"] == 1
        assert terminated["event"]["e"] == "eventStreamTerminated"
        assert {"id": "u", "status": 200, "result": {}} in answers


EXECUTION_REPORT = {
    "e", "E", "s", "c", "S", "o", "f", "q", "p", "P", "F", "g", "C", "x", "X", "r", "i", "l",
    "z", "L", "n", "N", "T", "t", "I", "w", "m", "M", "O", "Z", "Y", "Q", "V",
}  # fmt: skip


async def test_binance_events_are_tagged_and_in_the_documented_order(local, h):
    account, first = await h.new_binance(local)
    _, second = await h.new_binance(local)
    ws = await binance_stream(local)
    try:
        await ask(ws, subscribe_signature(second.key, second.secret, "other"))
        assert (await ask(ws, subscribe_signature(first.key, first.secret, "mine")))["result"] == {
            "subscriptionId": 1
        }
        response = await first.request(
            "POST",
            "/api/v3/order",
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "100"},
        )
        assert response.status_code == 200, response.text
        order_id = response.json()["orderId"]
        events = [await recv(ws) for _ in range(3)]
        # Nothing else is queued for either account: the next frame answers this ping.
        assert (await ask(ws, {"id": "after", "method": "ping"}))["id"] == "after"
    finally:
        await ws.close()
    # web-socket-api.md "Event format": {"subscriptionId", "event"}; all for account 1.
    assert all(set(e) == {"subscriptionId", "event"} for e in events)
    assert {e["subscriptionId"] for e in events} == {1}
    new, trade, position = (e["event"] for e in events)
    assert set(new) >= EXECUTION_REPORT
    assert set(trade) >= EXECUTION_REPORT
    assert (new["e"], new["x"], new["X"], new["i"]) == ("executionReport", "NEW", "NEW", order_id)
    assert (trade["x"], trade["X"], trade["i"]) == ("TRADE", "FILLED", order_id)
    assert trade["z"] == trade["l"]
    assert Decimal(trade["l"]) > 0
    assert trade["N"] == "BTC"
    assert trade["t"] > 0
    # "outboundAccountPosition is sent any time an account balance has changed and
    # contains the assets that were possibly changed".
    assert position["e"] == "outboundAccountPosition"
    assert {b["a"] for b in position["B"]} == {"BTC", "USDT"}
    balances = await local.binance_admin.balances(account)
    assert {b["a"]: Decimal(b["f"]) for b in position["B"]} == {
        "BTC": balances["BTC"],
        "USDT": balances["USDT"],
    }


async def test_binance_oco_sends_list_status_after_its_execution_reports(local, h):
    account, client = await h.new_binance(local)
    await local.binance_admin.set_price("SOLUSDT", Decimal("150"))
    await local.binance_admin.fund(account, "SOL", Decimal("2"))
    ws = await binance_stream(local)
    try:
        await ask(ws, subscribe_signature(client.key, client.secret, "oco"))
        response = await client.request(
            "POST",
            "/api/v3/orderList/oco",
            {
                "symbol": "SOLUSDT",
                "side": "SELL",
                "quantity": "1",
                "aboveType": "LIMIT_MAKER",
                "abovePrice": "165",
                "belowType": "STOP_LOSS",
                "belowStopPrice": "140",
                "listClientOrderId": "ws-oco",
            },
        )
        assert response.status_code == 200, response.text
        placed = [(await recv(ws))["event"] for _ in range(4)]
        await local.binance_admin.set_price("SOLUSDT", Decimal("166"))
        done = [(await recv(ws))["event"] for _ in range(4)]
    finally:
        await ws.close()
    # "If the order is an order list, an event named ListStatus will be sent in addition
    # to the executionReport event" (user-data-stream.md).
    assert [e["e"] for e in placed] == [
        "executionReport",
        "executionReport",
        "listStatus",
        "outboundAccountPosition",
    ]
    assert (placed[2]["l"], placed[2]["L"], placed[2]["C"]) == (
        "EXEC_STARTED",
        "EXECUTING",
        "ws-oco",
    )
    assert [e["e"] for e in done] == [
        "executionReport",
        "executionReport",
        "listStatus",
        "outboundAccountPosition",
    ]
    assert {(e["x"], e["X"]) for e in done[:2]} == {("EXPIRED", "EXPIRED"), ("TRADE", "FILLED")}
    assert (done[2]["l"], done[2]["L"]) == ("ALL_DONE", "ALL_DONE")


# ---- disconnection at a chosen moment ------------------------------------------------


async def test_binance_stream_cut_after_the_first_event_of_a_fill(local, h):
    account, client = await h.new_binance(local)
    ws = await binance_stream(local)
    try:
        await ask(ws, subscribe_signature(client.key, client.secret, "cut"))
        cut = await local.binance_admin.disconnect_streams(account, after_events=1)
        assert len(cut) == 1
        response = await client.request(
            "POST",
            "/api/v3/order",
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "50"},
        )
        assert response.status_code == 200, response.text
        first = await recv(ws)
        assert first["event"]["x"] == "NEW"
        # The TRADE and the balance never arrive: the connection is gone.
        with pytest.raises(ConnectionClosed):
            await recv(ws)
    finally:
        await ws.close()
    # The order filled all the same (what a client recovers by REST after reconnecting).
    orders = await local.binance_admin.orders(account)
    assert [o["status"] for o in orders] == ["FILLED"]

    async def gone() -> bool:
        listed = await local.binance_admin.streams()
        return all(account not in c["accounts"] for c in listed["connections"])

    for _ in range(100):
        if await gone():
            break
        await asyncio.sleep(0.02)
    assert await gone()


async def test_bybit_stream_closed_now_with_going_away(local, h):
    account, client = await h.new_bybit(local)
    ws = await bybit_stream(local, client, ["order"])
    try:
        assert await local.bybit_admin.disconnect_streams(account, mode="close")
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
    finally:
        await ws.close()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001


async def test_a_path_without_a_stream_refuses_the_handshake(local):
    with pytest.raises(Exception, match="403"):
        async with stream(ws_url(local.urls["bybit"], "/v5/public/linear")):
            pass
