"""Group commit: the rows and outcomes of concurrently processed orders, a tick at a time.

``GroupRead``: the order rows read within one event-loop tick, in one SELECT.

``GroupInsert``: the record-before-send rows of the entries prepared within one event-loop
tick, with their first attempt marked, in one multi-row INSERT (one statement: each row is
committed when it returns, before its order is sent).

``GroupCommit``: the outcomes of concurrently processed orders in one transaction.

Each outcome is a state change (``effect``) and the events it emits, committed together
(the outbox). ``GroupCommit.commit`` gathers the outcomes recorded within one event-loop
tick (at most ``max_items``) and applies them on one connection in one transaction: each
effect's own statements, one outbox INSERT for all their events, one COMMIT; then the
events are published from memory (``Outbox.publish_staged``: nothing is read back) and
their rows deleted in one statement. Each caller returns only after its outcome is
committed, exactly as with a transaction of its own.

An effect on one order row that many outcomes have in common (``RowEffect``: an order
acknowledged, an entry filled) is applied for the whole group in one statement of its kind
(``UPDATE … FROM unnest``), each outcome still told whether its own row changed; a group in
which one row has two effects applies them one by one, in the order they came.

If any effect of a group fails (a deadlock with another writer, a constraint), the group's
transaction rolls back as a whole and each outcome is applied again in a transaction of its
own, so one failing outcome never takes the others with it; its caller gets its error.
Effects are only database statements (re-running a rolled-back one is safe).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg

from marketbot.contracts import Event
from marketbot.execution.repository import NewEntry, OrderRow, Repository
from marketbot.runtime.batching import TickBatcher
from marketbot.runtime.clock import Clock
from marketbot.runtime.consumer import Outbox, Staged
from marketbot.runtime.db import Conn

A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class RowEffect(Generic[A]):
    """An effect on the row ``key`` that a group applies together with the others of the
    same ``run``: ``run(conn, [args, ...])`` answers, for each, whether it applied (one
    statement for them all). Called alone, it is ``run`` with its own ``args``."""

    run: Callable[[Conn, Sequence[A]], Awaitable[Sequence[bool]]]
    key: str
    args: A

    async def __call__(self, conn: Conn) -> bool:
        return (await self.run(conn, [self.args]))[0]


Effect = Callable[[Conn], Awaitable[bool | None]]


@dataclass(slots=True)
class _Outcome:
    effect: Effect
    emitted: Sequence[Event]
    future: asyncio.Future[bool]
    applied: bool = False
    staged: list[Staged] = field(default_factory=list)


class GroupCommit:
    def __init__(self, pool: asyncpg.Pool, outbox: Outbox, *, max_items: int = 64) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._pool = pool
        self._outbox = outbox
        self._max = max_items
        self._pending: list[_Outcome] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.groups = 0
        """Transactions committed for groups (a group of one included)."""

    async def commit(self, effect: Effect, emitted: Sequence[Event]) -> bool:
        """Apply ``effect`` and store ``emitted`` (in a group's transaction), then publish
        them; ``False`` (nothing emitted) when the effect says another worker got there
        first."""
        loop = asyncio.get_running_loop()
        outcome = _Outcome(effect, emitted, loop.create_future())
        self._pending.append(outcome)
        if len(self._pending) >= self._max:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await outcome.future

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        group, self._pending = self._pending, []
        task = asyncio.create_task(self._apply(group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _apply(self, group: list[_Outcome]) -> None:
        try:
            try:
                await self._together(group)
            except Exception:
                if len(group) == 1:
                    raise
                for outcome in group:
                    outcome.applied, outcome.staged = False, []
                await asyncio.gather(*(self._alone(o) for o in group))
                return
        except BaseException as exc:
            for outcome in group:
                if not outcome.future.done():
                    outcome.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        await self._publish(group)

    async def _together(self, group: list[_Outcome]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            keys = [o.effect.key for o in group if isinstance(o.effect, RowEffect)]
            if len(keys) == len(group) and len(set(keys)) == len(keys):
                await self._by_kind(conn, group)
            else:
                for outcome in group:
                    outcome.applied = await outcome.effect(conn) is not False
            applied = [o for o in group if o.applied]
            staged = await Outbox.stage(conn, [e for o in applied for e in o.emitted])
        self.groups += 1
        by_event = {row.event_id: row for row in staged}
        for outcome in applied:
            outcome.staged = [
                by_event[e.event_id] for e in outcome.emitted if e.event_id in by_event
            ]

    @staticmethod
    async def _by_kind(conn: Conn, group: list[_Outcome]) -> None:
        """Each kind of row effect in one statement (every row of the group distinct)."""
        kinds: dict[Any, list[_Outcome]] = {}
        for outcome in group:
            assert isinstance(outcome.effect, RowEffect)
            kinds.setdefault(outcome.effect.run, []).append(outcome)
        for run, outcomes in kinds.items():
            answers = await run(conn, [o.effect.args for o in outcomes])  # type: ignore[attr-defined]
            for outcome, applied in zip(outcomes, answers, strict=True):
                outcome.applied = bool(applied)

    async def _alone(self, outcome: _Outcome) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                outcome.applied = await outcome.effect(conn) is not False
                if outcome.applied:
                    outcome.staged = await Outbox.stage(conn, outcome.emitted)
        except Exception as exc:
            outcome.future.set_exception(exc)
            return
        self.groups += 1
        await self._publish([outcome])

    async def _publish(self, group: list[_Outcome]) -> None:
        await self._outbox.publish_staged([row for o in group for row in o.staged])
        for outcome in group:
            if not outcome.future.done():
                outcome.future.set_result(outcome.applied)


class GroupInsert:
    """One INSERT for the entries recorded within one event-loop tick (at most
    ``max_items``): ``Repository.insert_entries_sent``. A failed statement fails every
    entry of the group (none was recorded, none is sent: each request retries)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        owner: str,
        lease_s: float,
        settle_s: float,
        max_items: int = 128,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._owner = owner
        self._lease_s = lease_s
        self._settle_s = settle_s
        self._batcher: TickBatcher[NewEntry, OrderRow | None] = TickBatcher(
            self._insert, max_items=max_items
        )

    @property
    def statements(self) -> int:
        return self._batcher.batches

    async def insert(self, entry: NewEntry) -> OrderRow | None:
        """The entry's committed row (SENDING, leased, first attempt marked), or ``None``
        when its client order id is already recorded."""
        return await self._batcher.call(entry)

    async def _insert(self, entries: Sequence[NewEntry]) -> Sequence[OrderRow | None]:
        async with self._pool.acquire() as conn:
            return await Repository.insert_entries_sent(
                conn,
                list(entries),
                now=self._clock.now(),
                owner=self._owner,
                lease_s=self._lease_s,
                settle_s=self._settle_s,
            )


class GroupRead:
    """One SELECT for the order rows read within one event-loop tick (at most
    ``max_items``): ``Repository.get_orders``. Each caller gets the row as committed when
    the statement ran, which is after it asked (what a read of its own would see, or
    newer). A failed statement fails every read of the group."""

    def __init__(self, pool: asyncpg.Pool, *, max_items: int = 256) -> None:
        self._pool = pool
        self._batcher: TickBatcher[str, OrderRow | None] = TickBatcher(
            self._read, max_items=max_items
        )

    @property
    def statements(self) -> int:
        return self._batcher.batches

    async def get(self, client_order_id: str) -> OrderRow | None:
        return await self._batcher.call(client_order_id)

    async def _read(self, client_order_ids: Sequence[str]) -> Sequence[OrderRow | None]:
        async with self._pool.acquire() as conn:
            rows = await Repository.get_orders(conn, list(set(client_order_ids)))
        return [rows.get(cid) for cid in client_order_ids]
