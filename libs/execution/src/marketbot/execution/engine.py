"""The consumer loop: one durable pull consumer per plan tier, PRO before FLEX before TRIAL.

Every replica binds to the same three durable consumers (one consumer group). A tier is
fetched from only when every higher tier is empty: nothing waiting in the stream and
nothing delivered-but-unacknowledged (in flight here, in another replica, or waiting for
redelivery). Within a tier, up to ``tier_concurrency`` requests run at once. A message is
acked only after its outcome is committed with its event; shutting down leaves unfinished
requests in the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError

from marketbot.contracts import ContractError, OrderRequested, Plan, decode_as
from marketbot.contracts.orders import order_request_subject
from marketbot.execution import metrics
from marketbot.execution.placement import OrderExecutor, StoppingError
from marketbot.runtime.bus import Bus
from marketbot.runtime.logs import correlation, get_logger

log = get_logger("marketbot.execution.engine")

TIERS: tuple[Plan, ...] = (Plan.PRO, Plan.FLEX, Plan.TRIAL)
STREAM = "ORDER_REQUESTS"


def durable_name(exchange: str, plan: Plan) -> str:
    return f"executor-{exchange}-{plan.value.lower()}"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    tier_concurrency: int = 64
    fetch_batch: int = 64
    ack_wait_s: float = 60.0
    idle_poll_s: float = 0.05
    max_ack_pending: int = 10_000
    shutdown_grace_s: float = 10.0


@dataclass
class _Tier:
    plan: Plan
    sub: Any
    durable: str
    inflight: set[asyncio.Task[None]] = field(default_factory=set)


class ExecutionEngine:
    def __init__(self, bus: Bus, executor: OrderExecutor, config: EngineConfig) -> None:
        self.bus = bus
        self.executor = executor
        self.config = config
        self.exchange = executor.exchange.value
        self._tiers: list[_Tier] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._busy: dict[Plan, bool] = dict.fromkeys(TIERS, False)
        executor.turn = self.wait_turn

    async def wait_turn(self, plan: Plan) -> None:
        """Hold a request while any higher tier has requests waiting or in flight."""
        higher = TIERS[: TIERS.index(plan)]
        while any(self._busy[p] for p in higher):
            if self.executor.stopping.is_set():
                return
            await asyncio.sleep(self.config.idle_poll_s)

    async def start(self) -> None:
        for plan in TIERS:
            durable = durable_name(self.exchange, plan)
            sub = await self.bus.pull(
                STREAM,
                durable,
                [order_request_subject(self.executor.exchange, plan)],
                ack_wait=self.config.ack_wait_s,
                max_ack_pending=self.config.max_ack_pending,
            )
            self._tiers.append(_Tier(plan, sub, durable))
        self._task = asyncio.create_task(self._run(), name=f"executor:{self.exchange}")

    async def stop(self) -> None:
        """Stop fetching, let requests in flight reach a safe point, leave the rest unacked."""
        self.executor.stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        pending = [t for tier in self._tiers for t in tier.inflight]
        if pending:
            _, still = await asyncio.wait(pending, timeout=self.config.shutdown_grace_s)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    @property
    def inflight(self) -> int:
        return sum(len(t.inflight) for t in self._tiers)

    # ---- the loop ------------------------------------------------------------------
    async def _run(self) -> None:
        while not self.executor.stopping.is_set():
            try:
                progressed = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("executor loop step failed")
                progressed = False
            if not progressed:
                await self._pause(self.config.idle_poll_s)

    async def _depth(self, tier: _Tier) -> tuple[int, int]:
        info = await self.bus.js.consumer_info(
            self.bus.stream(STREAM), self.bus.namespace.durable(tier.durable)
        )
        waiting, outstanding = int(info.num_pending or 0), int(info.num_ack_pending or 0)
        metrics.QUEUE_DEPTH.labels(self.exchange, tier.plan.value).set(waiting + outstanding)
        return waiting, outstanding

    async def _step(self) -> bool:
        """Serve the highest tier with work; ``False`` when every tier is empty."""
        for tier in self._tiers:
            waiting, outstanding = await self._depth(tier)
            mine = len(tier.inflight)
            self._busy[tier.plan] = bool(waiting or outstanding or mine)
            if not self._busy[tier.plan]:
                continue
            room = self.config.tier_concurrency - mine
            if room > 0 and (waiting > 0 or outstanding > mine):
                timeout = 0.2 if waiting > 0 else self.config.idle_poll_s
                messages = await self._fetch(tier, min(room, self.config.fetch_batch), timeout)
                for msg in messages:
                    self._spawn(tier, msg)
                if messages:
                    return True
            # This tier is busy (here or in another replica): lower tiers wait.
            await self._pause(self.config.idle_poll_s)
            return True
        return False

    async def _fetch(self, tier: _Tier, batch: int, timeout: float) -> list[Msg]:
        try:
            messages: list[Msg] = await tier.sub.fetch(batch, timeout=timeout)
        except (NatsTimeoutError, TimeoutError):
            return []
        return messages

    async def _pause(self, seconds: float) -> None:
        """Sleep until a handler finishes or ``seconds`` pass."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def _spawn(self, tier: _Tier, msg: Msg) -> None:
        task = asyncio.create_task(self._handle(msg))
        tier.inflight.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            tier.inflight.discard(finished)
            self._wake.set()

        task.add_done_callback(done)

    async def _handle(self, msg: Msg) -> None:
        try:
            request = decode_as(msg.data, OrderRequested)
        except ContractError as exc:
            log.error("undecodable order request terminated", error=str(exc))
            await msg.term()
            return
        if request.exchange.value != self.exchange:
            log.error("order request for another exchange terminated", exchange=request.exchange)
            await msg.term()
            return
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        with correlation(request.correlation_id, client_order_id=request.client_order_id):
            try:
                await self.executor.execute(request)
            except StoppingError:
                with contextlib.suppress(Exception):
                    await msg.nak()
                return
            except Exception:
                log.exception("order request failed; left for redelivery")
                with contextlib.suppress(Exception):
                    await msg.nak(delay=1.0)
                return
            finally:
                heartbeat.cancel()
            await msg.ack()

    async def _heartbeat(self, msg: Msg) -> None:
        """Keep a long-running request (ban, not_before, reconciliation) from redelivery."""
        interval = max(0.5, self.config.ack_wait_s / 3)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()
