"""The bound on a run's page batches in flight, wider while the embed pool loads."""

from __future__ import annotations

import asyncio

from cluster.in_flight import InFlightBound


async def can_acquire(bound: InFlightBound) -> bool:
    """Whether a slot is free now: an acquire that does not finish within one turn of the
    loop is waiting for one (and is withdrawn)."""
    attempt = asyncio.ensure_future(bound.acquire())
    await asyncio.sleep(0)
    if attempt.done():
        return True
    attempt.cancel()
    return False


async def test_the_wide_bound_holds_until_narrowed() -> None:
    bound = InFlightBound(steady=2, while_loading=5)
    assert [await can_acquire(bound) for _ in range(6)] == [True] * 5 + [False]
    await bound.close()


async def test_narrowing_waits_for_batches_to_finish_and_then_holds_the_steady_bound() -> None:
    bound = InFlightBound(steady=2, while_loading=5)
    for _ in range(5):
        await bound.acquire()
    bound.narrow()
    bound.narrow()  # idempotent: withholds the extra slots once
    for _ in range(3):  # the first three slots given back are withheld
        bound.release()
        assert not await can_acquire(bound)
    bound.release()  # four done: one in flight, below the steady bound of 2
    assert await can_acquire(bound)
    assert not await can_acquire(bound)  # two in flight again
    await bound.close()


async def test_narrowed_before_any_batch_it_is_the_steady_bound() -> None:
    bound = InFlightBound(steady=2, while_loading=5)
    bound.narrow()
    await asyncio.sleep(0)  # one turn: the withholding task takes the free extra slots
    assert [await can_acquire(bound) for _ in range(3)] == [True, True, False]
    await bound.close()
