"""The consumer loop: one durable pull consumer per plan tier, in the plan table's order.

Each tier is a runtime ``MessageLoop`` (fetching, decoding, bounded redelivery with backoff,
dead letters, readiness); this module only schedules them. The tier order is the shared
plan table's (``PlanTable.order()``: PRO, FLEX, TRIAL by default).

Every replica binds to the same durable consumers (one consumer group). A tier is fetched
from only when every higher tier is empty: nothing waiting in the stream and nothing
delivered-but-unacknowledged (in flight here or in another replica). A message that failed
and waits out its backoff, or is being retried, does not count: a poison message in one
tier never holds the lower tiers up (this replica knows which of its messages those are;
another replica's backoff counts as outstanding for at most ``max_deliver`` deliveries).
Within a tier, up to ``tier_concurrency`` requests run at once. A message is acked only
after its outcome is committed with its event, or once its order is recorded as unknown and
handed to the reconciler (``reconcile.py``): an unknown outcome never holds its tier, nor the
tiers below. Shutting down leaves unfinished requests in the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from marketbot.contracts import OrderRequested, Plan
from marketbot.contracts.orders import order_request_subject
from marketbot.execution import metrics
from marketbot.execution.placement import OrderExecutor, StoppingError
from marketbot.runtime.bus import Bus
from marketbot.runtime.logs import correlation, get_logger
from marketbot.runtime.loop import ConsumerSpec, Delivery, MessageLoop, Redelivery

log = get_logger("marketbot.execution.engine")

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
    tiers: tuple[Plan, ...] = (Plan.PRO, Plan.FLEX, Plan.TRIAL)
    """Served in this order: the plan table's ``order()``."""
    redelivery: Redelivery = field(
        default_factory=lambda: Redelivery(max_deliver=10, backoff_s=(1.0, 5.0, 15.0, 30.0))
    )
    max_lag: int | None = 100_000


@dataclass
class _Tier:
    plan: Plan
    loop: MessageLoop
    durable: str
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    retrying: int = 0
    """Redeliveries in flight here (a message that failed before): not counted as busy."""


class ExecutionEngine:
    def __init__(self, bus: Bus, executor: OrderExecutor, config: EngineConfig) -> None:
        self.bus = bus
        self.executor = executor
        self.config = config
        self.exchange = executor.exchange.value
        self._tiers: list[_Tier] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._busy: dict[Plan, bool] = dict.fromkeys(config.tiers, False)
        self._refill = max(1, min(config.fetch_batch, config.tier_concurrency) // 4)
        """A full tier is topped up once this much room is free (a fetch per finished
        request would cost a fetch and a depth request each)."""
        executor.turn = self.wait_turn

    @property
    def tiers(self) -> tuple[Plan, ...]:
        return self.config.tiers

    async def wait_turn(self, plan: Plan, life_s: float) -> bool:
        """Hold a request while any higher tier has requests waiting or in flight, for at
        most ``life_s`` seconds (its remaining life): ``False`` if that ran out first."""
        higher = self.tiers[: self.tiers.index(plan)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + life_s
        while any(self._busy[p] for p in higher):
            if self.executor.stopping.is_set():
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(min(self.config.idle_poll_s, max(0.0, deadline - loop.time())))
        return True

    async def start(self) -> None:
        for plan in self.tiers:
            durable = durable_name(self.exchange, plan)
            spec = ConsumerSpec(
                durable,
                STREAM,
                (order_request_subject(self.executor.exchange, plan),),
                batch=self.config.fetch_batch,
                ack_wait=self.config.ack_wait_s,
                redelivery=self.config.redelivery,
                max_ack_pending=self.config.max_ack_pending,
                max_lag=self.config.max_lag,
            )
            loop = MessageLoop(self.bus, spec, expect=OrderRequested)
            await loop.start()
            self._tiers.append(_Tier(plan, loop, durable))
        # one scheduler drives every tier; each tier's loop reports it for /readyz
        self._task = asyncio.create_task(
            self._tiers[0].loop.supervise(self._run), name=f"executor:{self.exchange}"
        )

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
        for tier in self._tiers:
            await tier.loop.stop()

    @property
    def inflight(self) -> int:
        return sum(len(t.inflight) for t in self._tiers)

    # ---- the loop ------------------------------------------------------------------
    async def _run(self) -> None:
        for tier in self._tiers[1:]:  # the supervisor marks the first; the rest run with it
            tier.loop.mark_running(True)
        try:
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
        finally:
            for tier in self._tiers[1:]:
                tier.loop.mark_running(False)

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
            mine = len(tier.inflight)
            first_tries = mine - tier.retrying
            if first_tries > 0 and self.config.tier_concurrency - mine < self._refill:
                # (Nearly) full of first tries: busy whatever the server's depth, and too
                # little room to fetch into, so the depth is not even asked (a JetStream API
                # round trip per finished request, at full speed). Lower tiers wait.
                self._busy[tier.plan] = True
                await self._pause(self.config.idle_poll_s)
                return True
            waiting, outstanding = await self._depth(tier)
            # failed messages waiting out their backoff, or being retried, hold nobody up
            retries = tier.loop.parked() + tier.retrying
            self._busy[tier.plan] = bool(waiting or outstanding - retries > 0 or first_tries)
            room = self.config.tier_concurrency - mine
            if not self._busy[tier.plan]:
                if room > 0 and outstanding > mine:  # a retry may be due: take it, not wait
                    await self._take(tier, room, 0.01)
                continue
            if room > 0 and (waiting > 0 or outstanding > mine):
                timeout = 0.2 if waiting > 0 else self.config.idle_poll_s
                if await self._take(tier, room, timeout):
                    return True
            # This tier is busy (here or in another replica): lower tiers wait.
            await self._pause(self.config.idle_poll_s)
            return True
        return False

    async def _take(self, tier: _Tier, room: int, timeout: float) -> bool:
        deliveries = await tier.loop.fetch(min(room, self.config.fetch_batch), timeout)
        for delivery in deliveries:
            self._spawn(tier, delivery)
        return bool(tier.loop.fetched)

    async def _pause(self, seconds: float) -> None:
        """Sleep until a handler finishes or ``seconds`` pass."""
        self._wake.clear()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the event is set, and the loop would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _spawn(self, tier: _Tier, delivery: Delivery) -> None:
        retry = delivery.redelivered and delivery.sequence is not None
        if retry:
            tier.retrying += 1
        task = asyncio.create_task(tier.loop.handle_with(self._handle, [delivery]))
        tier.inflight.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            tier.inflight.discard(finished)
            if retry:
                tier.retrying -= 1
            self._wake.set()

        task.add_done_callback(done)

    async def _handle(self, batch: Sequence[Delivery]) -> None:
        """Run one order request; the loop acks, retries with backoff or dead-letters it."""
        (delivery,) = batch
        request = delivery.message
        assert isinstance(request, OrderRequested)
        if request.exchange.value != self.exchange:
            delivery.reject(
                f"exchange: this executor serves {self.exchange}, not {request.exchange}"
            )
            return
        heartbeat = asyncio.create_task(self._heartbeat(delivery))
        with correlation(request.correlation_id, client_order_id=request.client_order_id):
            try:
                # JetStream's delivery count: a first delivery skips the row read
                # (placement.OrderExecutor.execute says why that is safe).
                await self.executor.execute(request, first_delivery=not delivery.redelivered)
            except StoppingError:
                delivery.release()
                return
            except Exception as exc:
                log.exception("order request failed", message_id=delivery.message_id)
                delivery.retry(exc)
                return
            finally:
                heartbeat.cancel()
            delivery.ack()

    async def _heartbeat(self, delivery: Delivery) -> None:
        """Keep a long-running request (ban, not_before, reconciliation) from redelivery."""
        interval = max(0.5, self.config.ack_wait_s / 3)
        while True:
            await asyncio.sleep(interval)
            await delivery.in_progress()
