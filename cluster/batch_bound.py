"""A bound on page batches in flight whose limit can change while batches wait for it.

`asyncio.Semaphore` cannot take permits back: lowering its bound means queueing behind
every waiting document, so a run would keep its wider bound long after it should. Here the
limit is a number: a lower limit admits nothing new until enough batches have finished,
and a higher one admits waiters at once. The driver lets the parsers run ahead while the
embed pool is still loading its models, then narrows the bound (`cluster/driver.py`).
"""

from __future__ import annotations

import asyncio
from collections import deque


class BatchBound:
    """At most `limit` batches in flight; `acquire` waits for room, `release` makes it."""

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def limit(self) -> int:
        return self._limit

    async def acquire(self) -> None:
        if self._in_flight < self._limit and not self._waiters:
            self._in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # `_wake` counts the batch in before it sets the result
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # admitted, then cancelled: the room goes to the next waiter
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._in_flight -= 1
        self._wake()

    def set_limit(self, limit: int) -> None:
        """Batches in flight stay; new ones are admitted only below the new limit."""
        self._limit = max(1, limit)
        self._wake()

    def _wake(self) -> None:
        """Admit waiters, first come first served, while there is room."""
        while self._in_flight < self._limit and self._waiters:
            waiter = self._waiters.popleft()
            self._in_flight += 1
            waiter.set_result(None)
