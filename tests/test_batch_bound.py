"""The bound on page batches in flight, whose limit the driver narrows once the embed pool
has loaded its models."""

from __future__ import annotations

import asyncio

import pytest

from cluster.batch_bound import BatchBound


async def waiting(bound: BatchBound, count: int) -> list[asyncio.Task[None]]:
    """`count` tasks asking for room, each past its first step (queued, or admitted)."""
    tasks = [asyncio.create_task(bound.acquire()) for _ in range(count)]
    await asyncio.sleep(0)  # one turn of the loop: each task runs up to its first await
    return tasks


async def test_admits_up_to_the_limit_then_one_per_release_in_order() -> None:
    bound = BatchBound(2)
    tasks = await waiting(bound, 4)
    assert [t.done() for t in tasks] == [True, True, False, False]
    bound.release()
    await asyncio.sleep(0)
    assert [t.done() for t in tasks] == [True, True, True, False]
    assert bound.in_flight == 2


async def test_a_lower_limit_admits_nothing_until_enough_batches_finish() -> None:
    bound = BatchBound(5)
    for _ in range(5):
        await bound.acquire()
    bound.set_limit(2)
    (late,) = await waiting(bound, 1)
    for finished in range(3):
        bound.release()
        await asyncio.sleep(0)
        assert not late.done(), f"admitted after {finished + 1} of 5 batches finished"
    bound.release()  # 1 in flight: below the new limit
    await asyncio.sleep(0)
    assert late.done()
    assert (bound.in_flight, bound.limit) == (2, 2)


async def test_a_higher_limit_admits_waiters_at_once() -> None:
    bound = BatchBound(1)
    tasks = await waiting(bound, 3)
    assert sum(t.done() for t in tasks) == 1
    bound.set_limit(3)
    await asyncio.sleep(0)
    assert all(t.done() for t in tasks)
    assert bound.in_flight == 3


async def test_a_waiter_cancelled_while_queued_takes_no_room() -> None:
    bound = BatchBound(1)
    first, cancelled, last = await waiting(bound, 3)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    bound.release()
    await asyncio.sleep(0)
    assert first.done()
    assert last.done()
    assert bound.in_flight == 1


async def test_a_waiter_cancelled_after_it_was_admitted_passes_the_room_on() -> None:
    bound = BatchBound(1)
    _first, admitted, last = await waiting(bound, 3)
    bound.release()  # `admitted` is counted in, but has not run yet
    admitted.cancel()
    with pytest.raises(asyncio.CancelledError):
        await admitted
    await asyncio.sleep(0)
    assert last.done(), "the room of the cancelled waiter was lost"
    assert bound.in_flight == 1
