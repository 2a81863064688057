"""Requests the key vault sends (``Sender``) hold none of the client's own connections:
the vault's pool and concurrency bound them (issue 19: with 20 connections, 20 orders in
flight were all an executor could have, whatever the vault could carry)."""

from __future__ import annotations

import asyncio
import json

from marketbot.contracts import Exchange
from marketbot.exchanges.bybit.endpoints import WALLET_BALANCE
from marketbot.exchanges.http import HttpSettings
from marketbot.exchanges.signer import SentResponse, Signature, SigningInput

from .fakes import bybit_ok, make_venue


class HoldingSender:
    """The vault's side of the port: holds every send until released."""

    user_id = "u-1"

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.release = asyncio.Event()

    async def sign(self, request: SigningInput) -> Signature:
        raise AssertionError("a vault-sent endpoint is never signed here")

    async def send(self, request: SigningInput) -> SentResponse:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        body = json.dumps(bybit_ok({"list": []}))
        return SentResponse(status=200, headers=(), body=body)


async def _most_in_flight(http: HttpSettings, n: int) -> int:
    venue, _ = make_venue(Exchange.BYBIT, http=http)
    sender = HoldingSender()
    calls = [
        asyncio.ensure_future(venue.http.call(WALLET_BALANCE, {"accountType": "UNIFIED"}, sender))
        for _ in range(n)
    ]
    for _ in range(50):
        await asyncio.sleep(0)
    most = sender.most
    sender.release.set()
    results = await asyncio.gather(*calls)
    assert all(r == {"list": []} for r in results)
    await venue.aclose()
    return most


async def test_vault_sends_do_not_wait_for_the_clients_connections() -> None:
    assert await _most_in_flight(HttpSettings(max_connections=1), 8) == 8


async def test_vault_sends_have_their_own_bound() -> None:
    assert await _most_in_flight(HttpSettings(max_connections=20, max_vault_sends=3), 8) == 3
