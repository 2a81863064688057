"""TickBatcher: the calls of one event-loop tick are one batch, each answered in place."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from marketbot.runtime.batching import TickBatcher


async def test_the_calls_of_one_tick_are_one_batch_and_each_gets_its_own_answer() -> None:
    seen: list[list[int]] = []

    async def double(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        return [2 * i for i in items]

    batcher: TickBatcher[int, int] = TickBatcher(double, max_items=4)
    assert await asyncio.gather(*(batcher.call(i) for i in range(3))) == [0, 2, 4]
    assert seen == [[0, 1, 2]]
    # more than max_items: one full batch at once, the rest on the next tick
    assert await asyncio.gather(*(batcher.call(i) for i in range(6))) == [0, 2, 4, 6, 8, 10]
    assert seen[1:] == [[0, 1, 2, 3], [4, 5]]
    assert batcher.batches == 3


async def test_a_failed_batch_fails_each_of_its_calls_and_not_the_next() -> None:
    calls = 0

    async def flaky(items: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("connection lost")
        return [s.upper() for s in items]

    batcher: TickBatcher[str, str] = TickBatcher(flaky)
    results = await asyncio.gather(batcher.call("a"), batcher.call("b"), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert await batcher.call("c") == "C"


async def test_a_batch_answering_the_wrong_number_of_results_fails_its_calls() -> None:
    async def short(items: Sequence[int]) -> list[int]:
        return list(items)[:-1]

    batcher: TickBatcher[int, int] = TickBatcher(short)
    with pytest.raises(RuntimeError, match="2 results for a batch of 3"):
        await asyncio.gather(*(batcher.call(i) for i in range(3)))
    with pytest.raises(ValueError, match="max_items"):
        TickBatcher(short, max_items=0)
