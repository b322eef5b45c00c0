"""Leaving when idle: a long-lived actor that has had no work for a while exits on its own.

The embed pool, the ontology actor and parked parser actors outlive runs so the next run
does not start them again, but an idle actor still holds its CPUs or GPUs; after `idle_s`
without a call it gives them back. The check runs
as a task on the actor's event loop and exits through `ray.actor.exit_actor`, which Ray
treats as intended (no restart), so the next run simply creates fresh actors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import ray

CHECK_EVERY_S = 5.0


class IdleTimer:
    """Counts calls in flight. `watch` starts the check; it needs the actor's event loop, which
    a constructor does not run in, so the actor calls it through its own handle (an actor
    that never gets a call must leave too). By default an actor leaves once idle for
    `idle_s`; `should_leave`, given the seconds idle, decides instead (a parser actor owned
    by a run stays while that run lives, and leaves as soon as it is gone)."""

    def __init__(
        self, idle_s: float, should_leave: Callable[[float], Awaitable[bool]] | None = None
    ) -> None:
        self._idle_s = idle_s
        self._should_leave = should_leave or self._idle_long_enough
        self._in_flight = 0
        self._last_used = time.monotonic()
        self._watch: asyncio.Task[None] | None = None

    def watch(self) -> None:
        """Start checking for idleness, once; call it from a coroutine on the actor's loop."""
        if self._watch is None and self._idle_s > 0:
            self._watch = asyncio.get_running_loop().create_task(self._exit_when_idle())

    def busy(self) -> None:
        self._in_flight += 1
        self._last_used = time.monotonic()
        self.watch()

    def done(self) -> None:
        self._in_flight -= 1
        self._last_used = time.monotonic()

    def touch(self) -> None:
        """Count as used now, without a call (a driver keeping the actor warm)."""
        self._last_used = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self._in_flight else time.monotonic() - self._last_used

    async def _idle_long_enough(self, idle_for: float) -> bool:
        return idle_for >= self._idle_s

    async def _exit_when_idle(self) -> None:
        while True:
            await asyncio.sleep(min(CHECK_EVERY_S, self._idle_s))
            if not self._in_flight and await self._should_leave(self.idle_for()):
                ray.actor.exit_actor()
