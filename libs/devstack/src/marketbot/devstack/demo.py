"""Demo users, a sample alert, and a narrator that shows the flow as it happens.

Everything goes through the platform's public edges, as a person would: users and keys via
the gateway's admin and user APIs (keys are sealed for the vault and verified against the
simulator), exchange accounts via the simulator's admin API, the alert via the webhook.
The narrator listens on the bus and prints the decision, each user's order and the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

import httpx
from nats.aio.msg import Msg

from marketbot.contracts import (
    ContractError,
    DecisionMade,
    Event,
    OrderFilled,
    OrderPlaced,
    OrderRejected,
    PositionClosed,
    decode,
)
from marketbot.contracts.ledger import CommissionAccrued, StatementQuery, StatementReply
from marketbot.runtime.bus import Bus
from marketbot.sim.admin import SimAdmin

PLAN_ORDER = {"PRO": 0, "FLEX": 1, "TRIAL": 2}
DEMO_PASSWORD = "marketbot-demo"  # noqa: S105 - the demo users' web sign-in, printed by make run
DEMO_EMAIL_DOMAIN = "demo.marketbot.dev"


def demo_email(user_id: str) -> str:
    return f"{user_id}@{DEMO_EMAIL_DOMAIN}"


def num(value: Decimal | None) -> str:
    """A decimal as a person reads it: no trailing zeros, never scientific notation."""
    if value is None:
        return "-"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    display_name: str
    plan: str
    exchange: str
    risk_level: str
    funds: Decimal = Decimal("1000")
    referrer_id: str | None = None
    eligible: bool = True
    can_withdraw: bool = False
    trading_mode: str = "PERSONAL"
    subscription_status: str = "ACTIVE"
    expires_in_days: int = 14
    """Subscription expiry for TRIAL users; negative means already expired."""
    register_key: bool = True
    web_password: bool = True
    """Give the user the demo's web sign-in (an argon2id hash: skipped for big populations
    that never sign in)."""


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("ana", "Ana (PRO, Bybit)", "PRO", "bybit", "high"),
    DemoUser("bruno", "Bruno (PRO, Binance)", "PRO", "binance", "medium", referrer_id="ana"),
    DemoUser("carla", "Carla (FLEX, Bybit)", "FLEX", "bybit", "medium", referrer_id="ana"),
    DemoUser("davi", "Davi (FLEX, Binance)", "FLEX", "binance", "low"),
    DemoUser("elis", "Elis (TRIAL, Bybit)", "TRIAL", "bybit", "low", referrer_id="bruno"),
    DemoUser("fabio", "Fabio (TRIAL, Binance)", "TRIAL", "binance", "medium"),
    DemoUser("gil", "Gil (PRO, Bybit, no funds)", "PRO", "bybit", "medium", funds=Decimal("3")),
    DemoUser(
        "hana",
        "Hana (key can withdraw)",
        "PRO",
        "binance",
        "low",
        eligible=False,
        can_withdraw=True,
    ),
)


class DemoError(RuntimeError):
    pass


@dataclass
class SeededUser:
    user: DemoUser
    key_status: str


@dataclass
class Demo:
    gateway_url: str
    admin_token: str
    sims: dict[str, SimAdmin]
    """exchange name ("bybit", "binance") and "market" -> the simulator's admin client."""
    http: httpx.AsyncClient
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    users: dict[str, SeededUser] = field(default_factory=dict)

    def _admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def _check(self, response: httpx.Response, what: str) -> Any:
        if response.status_code >= 300:
            raise DemoError(f"{what}: HTTP {response.status_code} {response.text}")
        return response.json() if response.content else None

    async def set_bullish_market(self) -> None:
        """Sentiment that supports a buy, so the demo alert is traded (HOLD is shown too)."""
        await self.sims["market"].set_market_data(
            fear_greed=68,
            classification="Greed",
            btc_dominance=54.2,
            market_cap_change_24h=1.8,
            all_changes_24h=2.1,
        )

    async def seed_user(self, user: DemoUser) -> SeededUser:
        sim = self.sims[user.exchange]
        account_id = await sim.create_account(user.user_id)
        await sim.fund(account_id, "USDT", user.funds)
        api_key, api_secret = await sim.create_api_key(
            account_id, read=True, trade=True, withdraw=user.can_withdraw
        )
        expires = (
            (self.now() + timedelta(days=user.expires_in_days)).isoformat()
            if user.plan == "TRIAL"
            else None
        )
        existing = await self.http.get(
            f"{self.gateway_url}/admin/users/{user.user_id}", headers=self._admin()
        )
        if existing.status_code == 404:
            await self._check(
                await self.http.post(
                    f"{self.gateway_url}/admin/users",
                    headers=self._admin(),
                    json={
                        "user_id": user.user_id,
                        "email": demo_email(user.user_id),
                        "display_name": user.display_name,
                        "referrer_id": user.referrer_id,
                        "plan": user.plan,
                        "subscription_status": user.subscription_status,
                        "expires_at": expires,
                        "trading_mode": user.trading_mode,
                        "preferred_exchange": user.exchange,
                        "risk_level": user.risk_level,
                    },
                ),
                f"create user {user.user_id}",
            )
        else:
            # A kept data folder from an earlier run: renew the subscription (a TRIAL expires).
            await self._check(existing, f"read user {user.user_id}")
            await self._check(
                await self.http.put(
                    f"{self.gateway_url}/admin/users/{user.user_id}/subscription",
                    headers=self._admin(),
                    json={
                        "plan": user.plan,
                        "status": user.subscription_status,
                        "expires_at": expires,
                    },
                ),
                f"renew {user.user_id}",
            )
        if user.web_password:
            await self.set_password(user.user_id, DEMO_PASSWORD)
        if not user.register_key:
            no_key = SeededUser(user, "no key")
            self.users[user.user_id] = no_key
            return no_key
        # The simulator starts empty on every run, so the key is always a new one.
        response = await self.http.put(
            f"{self.gateway_url}/users/{user.user_id}/keys/{user.exchange}",
            headers=self._admin(),
            json={"api_key": api_key, "api_secret": api_secret},
        )
        if response.status_code in (422, 503):
            # 422: the vault refused the key (e.g. it can withdraw): show the user's reason.
            # 503: it could not be checked now (exchange busy); the caller may verify again.
            error = response.json().get("error", {})
            refused = SeededUser(user, f"refused ({error.get('code')}): {error.get('message')}")
            self.users[user.user_id] = refused
            return refused
        registered = await self._check(response, f"register key of {user.user_id}")
        seeded = SeededUser(user, _key_state(registered))
        self.users[user.user_id] = seeded
        return seeded

    async def set_password(self, user_id: str, password: str) -> None:
        """The user's web sign-in password (argon2id in the gateway)."""
        await self._check(
            await self.http.put(
                f"{self.gateway_url}/admin/users/{user_id}/password",
                headers=self._admin(),
                json={"password": password},
            ),
            f"password of {user_id}",
        )

    async def wait_verified(self, seeded: SeededUser, timeout: float = 30.0) -> str:
        """Until the vault has verified (or rejected) the key; returns the final state."""
        if seeded.key_status.startswith("refused") or seeded.key_status == "no key":
            return seeded.key_status
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            body = await self._check(
                await self.http.get(
                    f"{self.gateway_url}/users/{seeded.user.user_id}/keys/{seeded.user.exchange}",
                    headers=self._admin(),
                ),
                "key status",
            )
            state = _key_state(body)
            if state != "pending" or asyncio.get_running_loop().time() > deadline:
                seeded.key_status = state
                return state
            await asyncio.sleep(0.2)

    async def verify(self, seeded: SeededUser) -> str:
        """Ask the vault to verify the user's key again; returns the new state."""
        user = seeded.user
        try:
            response = await self.http.post(
                f"{self.gateway_url}/users/{user.user_id}/keys/{user.exchange}/verify",
                headers=self._admin(),
            )
        except httpx.TransportError as exc:  # e.g. an idle keep-alive connection closed
            seeded.key_status = f"refused (unavailable): {type(exc).__name__}"
            return seeded.key_status
        if response.status_code in (422, 503):
            # 422: the vault's verdict; 503: the vault is busy (asked to retry).
            error = response.json().get("error", {})
            seeded.key_status = f"refused ({error.get('code')}): {error.get('message')}"
        else:
            seeded.key_status = _key_state(await self._check(response, "verify"))
        return seeded.key_status

    async def pause(self, user_id: str) -> None:
        """Stop trading for a user (their trading mode becomes PAUSED)."""
        await self._check(
            await self.http.put(
                f"{self.gateway_url}/admin/users/{user_id}/preferences",
                headers=self._admin(),
                json={"trading_mode": "PAUSED"},
            ),
            f"pause {user_id}",
        )

    async def get(self, path: str) -> Any:
        """GET an admin-authorised gateway path (e.g. a user's operations) as JSON."""
        return await self._check(
            await self.http.get(f"{self.gateway_url}{path}", headers=self._admin()), path
        )

    async def price(self, symbol: str) -> Decimal:
        return await self.sims["bybit"].price(symbol)

    async def send_alert(self, source: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(
            f"{self.gateway_url}/webhooks/tradingview/{source}",
            params={"token": token},
            content=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        result: dict[str, Any] = await self._check(response, "webhook")
        return result


def _key_state(body: Any) -> str:
    key = body.get("key", body) if isinstance(body, dict) else {}
    if not isinstance(key, dict):
        return "pending"
    if key.get("verified"):
        return "verified"
    if key.get("status_message") and not key.get("enabled", True):
        return "rejected: " + str(key["status_message"])
    if key.get("status_message") and key.get("verified") is False and key.get("active") is False:
        return "rejected: " + str(key["status_message"])
    return "pending"


class Narrator:
    """Prints the flow of one signal as the bus carries it."""

    def __init__(self, bus: Bus, out: TextIO, plans: dict[str, str]) -> None:
        self._bus = bus
        self._out = out
        self._plans = plans
        self.outcomes: dict[str, str] = {}
        self.decision: DecisionMade | None = None
        self.closed: dict[str, PositionClosed] = {}
        self.commissions: list[CommissionAccrued] = []
        self._subs: list[Any] = []
        self.changed = asyncio.Event()

    async def start(self) -> None:
        for subject in ("decisions.made", "orders.*.*", "ledger.>"):
            self._subs.append(
                await self._bus.nc.subscribe(self._bus.subject(subject), cb=self._on_message)
            )

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def say(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    async def _on_message(self, msg: Msg) -> None:
        try:
            event = decode(msg.data)
        except ContractError:
            return
        if isinstance(event, Event):
            self.show(event)
            self.changed.set()

    def show(self, event: Event) -> None:
        if isinstance(event, DecisionMade):
            self.decision = event
            self.say(
                f"\n▶ decision {event.action.value} {event.symbol} "
                f"confidence {event.confidence}/100"
            )
            for reason in event.reasons:
                value = f" [{reason.value}]" if reason.value is not None else ""
                self.say(f"    {reason.contribution:>+7} {reason.code}{value}: {reason.text}")
        elif isinstance(event, OrderPlaced):
            self.say(
                f"  {event.plan.value:<5} {event.user_id:<6} {event.exchange.value:<7} "
                f"placed   {event.side.value} {num(event.quantity)} {event.symbol} "
                f"(~{num(event.quote_amount)} USDT, TP {num(event.take_profit_price)}, "
                f"SL {num(event.stop_loss_price)})"
            )
        elif isinstance(event, OrderFilled):
            self.outcomes[event.user_id] = "filled"
            self.say(
                f"  {event.plan.value:<5} {event.user_id:<6} {event.exchange.value:<7} "
                f"filled   {num(event.filled_quantity)} @ {num(event.average_price)} "
                f"fees {num(event.fees_quote)} USDT"
            )
        elif isinstance(event, OrderRejected):
            self.outcomes[event.user_id] = "rejected"
            self.say(
                f"  {event.plan.value:<5} {event.user_id:<6} {event.exchange.value:<7} "
                f"REJECTED {event.reason.value}: {event.message}"
            )
        elif isinstance(event, PositionClosed):
            self.closed[event.user_id] = event
            self.say(
                f"  {event.plan.value:<5} {event.user_id:<6} {event.exchange.value:<7} "
                f"closed   {event.close_reason.value} @ {num(event.exit_price)}, "
                f"PnL {num(event.realized_pnl)} USDT"
            )
        elif isinstance(event, CommissionAccrued):
            self.commissions.append(event)
            extra = (
                f", referrer {event.referrer_id} gets {num(event.affiliate_amount)}"
                if event.referrer_id
                else ""
            )
            self.say(
                f"  ledger {event.user_id:<6} commission {num(event.amount)} {event.currency} "
                f"({event.plan.value} {num(event.rate)}){extra}"
            )

    async def _until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while not done():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=remaining)
        return True

    async def wait_for(self, users: set[str], timeout: float) -> bool:
        """Until each of ``users`` has an order outcome (filled or rejected)."""
        return await self._until(lambda: users <= set(self.outcomes), timeout)

    async def wait_for_closes(self, users: set[str], timeout: float) -> bool:
        return await self._until(lambda: users <= set(self.closed), timeout)

    async def wait_for_commissions(self, count: int, timeout: float) -> bool:
        return await self._until(lambda: len(self.commissions) >= count, timeout)


async def ledger_totals(bus: Bus, correlation_id: str) -> StatementReply:
    query = StatementQuery(occurred_at=datetime.now(UTC), correlation_id=correlation_id)
    return await bus.request(query, StatementReply, timeout=10)
