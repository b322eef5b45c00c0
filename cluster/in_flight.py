"""How many page batches a run keeps in flight: more while the embed pool loads its model."""

from __future__ import annotations

import asyncio
import contextlib


class InFlightBound:
    """At most `while_loading` batches in flight until `narrow`, then at most `steady`.

    A cold embed pool spends seconds importing torch and loading the model on one core while
    the parsers, held to the steady bound, soon wait for it; letting them run further ahead
    meanwhile uses the other core. Afterwards a deeper queue only delays each batch (and the
    small documents of a run that has a large one), so the bound narrows again. Slots are
    handed out first come, first served, as an asyncio.Semaphore does; narrowing withholds
    the extra slots as batches give them back, so no batch is stopped.
    """

    def __init__(self, steady: int, while_loading: int) -> None:
        self._slots = asyncio.Semaphore(max(steady, while_loading))
        self._extra = max(0, while_loading - steady)
        self._withholding: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()

    def narrow(self) -> None:
        """From now on, the steady bound (once enough batches are done); idempotent."""
        if self._withholding is None:
            self._withholding = asyncio.create_task(self._withhold(self._extra))

    async def close(self) -> None:
        """Stop withholding slots: the run is over."""
        if self._withholding is not None:
            self._withholding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._withholding

    async def _withhold(self, slots: int) -> None:
        for _ in range(slots):
            await self._slots.acquire()
