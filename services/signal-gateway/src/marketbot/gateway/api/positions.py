"""``GET /users/{user_id}/positions``: the user's open positions valued at the market.

The operations come from the ledger (status OPEN or PLACED), the mark prices from the
exchanges' public tickers (``MARKET_DATA_URLS``); unrealized PnL is (mark - entry) * filled
quantity before exit fees. A mark that cannot be read is ``null``, never an error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends

from marketbot.contracts import OperationStatus
from marketbot.contracts.ledger import Operation
from marketbot.gateway.api.context import Caller, Gateway, ask, caller, check_owner, gateway
from marketbot.gateway.api.context import request_id as request_id_dep
from marketbot.gateway.api.errors import ERROR_SCHEMA, ApiError
from marketbot.gateway.domain.positions import OPEN_STATUSES, unrealized_pnl

router = APIRouter(tags=["user"], responses={c: ERROR_SCHEMA for c in (401, 403, 404, 503)})
CallerDep = Depends(caller)
GatewayDep = Depends(gateway)
RequestIdDep = Depends(request_id_dep)
MAX_POSITIONS = 200


def _text(value: object) -> str | None:
    return None if value is None else format(value, "f")


@router.get("/users/{user_id}/positions")
async def positions(
    user_id: str, who: Caller = CallerDep, gw: Gateway = GatewayDep, rid: str = RequestIdDep
) -> dict[str, Any]:
    check_owner(who, user_id)
    if who.is_admin and await gw.repo.get_user(user_id) is None:
        raise ApiError(404, "not_found", f"no user {user_id!r}", "user_id")
    now = gw.clock.now()
    pages = await asyncio.gather(
        *(
            ask(gw.ledger.operations(user_id, OperationStatus(s), None, 1, MAX_POSITIONS, now, rid))
            for s in OPEN_STATUSES
        )
    )
    found: dict[str, Operation] = {}
    for page in pages:
        for op in page.operations:
            if op.user_id == user_id and op.status.value in OPEN_STATUSES:
                found[str(op.operation_id)] = op
    ops = sorted(found.values(), key=lambda op: op.requested_at, reverse=True)
    marks = await gw.marks.prices((op.exchange, op.symbol) for op in ops) if gw.marks else {}
    out = []
    for op in ops:
        mark = marks.get((op.exchange, op.symbol))
        out.append(
            {
                **op.model_dump(mode="json"),
                "mark_price": _text(mark),
                "unrealized_pnl": _text(unrealized_pnl(op, mark)),
            }
        )
    return {"positions": out, "priced": gw.marks is not None, "as_of": now.isoformat()}
