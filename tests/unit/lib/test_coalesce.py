"""`Coalescer`: batches per loop turn, and with `max_in_flight` a group commit (memanto_server/lib/coalesce.py).

A pure asyncio primitive: the `run` functions here stand in for a pipeline or an INSERT and
record what they were handed and how many ran at once. The backends' side is covered where
the primitive is used (test_grouped_inserts.py, test_redis_scripts.py).
"""

from __future__ import annotations

import asyncio

import pytest

from memanto_server.lib.coalesce import BACKLOG_BATCHES, Coalescer


class Recorder:
    """A `run` that echoes its items, holds each batch until released, and records batches."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_at_once = 0
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
            return [ValueError(item) if item < 0 else item * 10 for item in items]
        finally:
            self.running -= 1


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_calls_of_one_turn_go_as_one_batch_and_each_caller_gets_its_own_outcome() -> None:
    run = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(run)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(5)), return_exceptions=True)
    assert run.batches == [[0, 1, 2, 3, 4]]
    assert results == [0, 10, 20, 30, 40]
    [failed] = await asyncio.gather(coalescer.submit(-1), return_exceptions=True)
    assert isinstance(failed, ValueError)


async def test_without_a_limit_a_later_turn_starts_its_own_batch_at_once() -> None:
    run = Recorder(hold=True)
    coalescer: Coalescer[int, int] = Coalescer(run)
    first = [asyncio.ensure_future(coalescer.submit(i)) for i in range(3)]
    await turns()
    second = [asyncio.ensure_future(coalescer.submit(i)) for i in range(3, 5)]
    await turns()
    assert run.batches == [[0, 1, 2], [3, 4]]
    assert run.most_at_once == 2
    run.release.set()
    assert await asyncio.gather(*first, *second) == [0, 10, 20, 30, 40]


async def test_one_in_flight_calls_made_meanwhile_wait_and_then_go_together() -> None:
    run = Recorder(hold=True)
    coalescer: Coalescer[int, int] = Coalescer(run, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.submit(0))
    await turns()
    later = []
    for i in range(1, 6):  # over several loop turns, while the first batch runs
        later.append(asyncio.ensure_future(coalescer.submit(i)))
        await turns(2)
    assert run.batches == [[0]]
    run.release.set()
    assert await asyncio.gather(first, *later) == [0, 10, 20, 30, 40, 50]
    assert run.batches == [[0], [1, 2, 3, 4, 5]]
    assert run.most_at_once == 1


async def test_a_burst_is_cut_into_batches_that_run_one_after_the_other_and_answer_in_waves() -> None:
    answered: list[int] = []
    waves_seen: list[int] = []
    run_batches: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        run_batches.append(items)
        waves_seen.append(len(answered))  # callers answered before this batch started
        await asyncio.sleep(0.01)
        return items

    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=16, max_in_flight=1)

    async def call(i: int) -> None:
        await coalescer.submit(i)
        answered.append(i)

    await asyncio.gather(*(call(i) for i in range(40)))
    assert [len(b) for b in run_batches] == [16, 16, 8]
    # Each batch starts once the one before it is done, and its callers answered by then.
    assert waves_seen == [0, 16, 32]
    assert answered == list(range(40))


async def test_a_deep_backlog_starts_one_more_batch() -> None:
    run = Recorder(hold=True)
    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=2, max_in_flight=1)
    calls = [asyncio.ensure_future(coalescer.submit(0))]
    await turns()
    assert len(run.batches) == 1
    backlog = 2 * BACKLOG_BATCHES  # calls in BACKLOG_BATCHES full batches
    calls += [asyncio.ensure_future(coalescer.submit(i)) for i in range(1, backlog)]  # one short of it
    await turns()
    assert len(run.batches) == 1
    calls += [asyncio.ensure_future(coalescer.submit(i)) for i in range(backlog, backlog + 1)]  # and reach it
    await turns()
    assert run.most_at_once == 2
    assert run.batches[1] == [1, 2]
    run.release.set()
    assert await asyncio.gather(*calls) == [i * 10 for i in range(backlog + 1)]
    assert all(len(batch) <= 2 for batch in run.batches)


async def test_a_failed_batch_fails_its_callers_and_frees_its_place() -> None:
    calls = 0

    async def run(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.01)
            raise ConnectionError("gone")
        return items

    coalescer: Coalescer[int, int] = Coalescer(run, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.submit(1))
    await turns()
    second = asyncio.ensure_future(coalescer.submit(2))
    with pytest.raises(ConnectionError):
        await first
    assert await second == 2


async def test_a_batch_whose_callers_all_went_away_is_stopped_and_the_next_one_starts() -> None:
    stopped = asyncio.Event()
    batches: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        batches.append(items)
        if items == [1]:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                stopped.set()
                raise
        return items

    coalescer: Coalescer[int, int] = Coalescer(run, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.submit(1))
    await turns()
    second = asyncio.ensure_future(coalescer.submit(2))
    await turns()
    assert batches == [[1]]
    first.cancel()
    await asyncio.wait_for(stopped.wait(), 1)
    assert await asyncio.wait_for(second, 1) == 2


async def test_a_call_whose_caller_went_away_while_it_waited_is_not_made() -> None:
    run = Recorder(hold=True)
    coalescer: Coalescer[int, int] = Coalescer(run, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.submit(1))
    await turns()
    gone = asyncio.ensure_future(coalescer.submit(2))
    kept = asyncio.ensure_future(coalescer.submit(3))
    await turns()
    gone.cancel()
    run.release.set()
    assert await asyncio.gather(first, kept) == [10, 30]
    assert run.batches == [[1], [3]]
