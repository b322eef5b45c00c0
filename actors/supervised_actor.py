"""The actor side of a supervised parser pool (`actors.supervised_pool`), mixed into the
fetch, render and analyze actors: a readiness probe that says where the actor runs, the
measured call wrapper (its RSS with each result, for recycling), the memory cap of
`actors.memory`, and claiming and parking between runs (`actors.lifecycle.parking`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import ray

from actors.lifecycle.idle import IdleTimer
from actors.lifecycle.liveness import run_is_alive
from actors.memory import MIB, cap_allocations, is_out_of_memory, rss_bytes
from core.errors import DocumentError
from core.pdf import load_pymupdf
from core.settings import Settings

# Parser actors take claim and park calls in a concurrency group of their own, so a run
# looking for parked actors is never queued behind another run's page on a busy one.
CONTROL_GROUP = "control"


def supervised_remote(num_cpus: float) -> Callable[[type], Any]:
    """`ray.remote` with what every supervised parser actor needs: one call at a time, no
    restarts or retries by Ray (its SupervisedPool decides those), and the control group
    that claim and park run in."""
    return ray.remote(
        num_cpus=num_cpus,
        max_restarts=0,
        max_task_retries=0,
        max_concurrency=1,
        concurrency_groups={CONTROL_GROUP: 1},
    )


class SupervisedActor:
    """Mixed into the parser actors: what a SupervisedPool calls, and the memory cap."""

    _memory_mb: int = 0

    def _supervise(self, settings: Settings, aggregator: Any) -> None:
        """Cap what the process may allocate from now on. MuPDF is imported first so its
        footprint counts as the actor's own, not as the pages' budget. `aggregator` is the
        run that owns the actor (None while parked)."""
        load_pymupdf()
        self._memory_mb = settings.parser_memory_mb
        cap_allocations(settings.parser_memory_mb * MIB)
        self._aggregator = aggregator
        self._documents_before = 0
        self._idle_s = settings.parser_idle_s
        self._idle = IdleTimer(settings.parser_idle_s, should_leave=self._unused)

    async def ready(self) -> dict[str, Any]:
        """Readiness probe: answers once the constructor ran, with where the actor runs
        (its process, its Ray node: a pool tells a lost node from a crash by it). Its pool
        calls it first, so this is where the idle check starts."""
        self._idle.watch()
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    async def measured(self, method: str, *args: Any) -> tuple[Any, int]:
        """Run `method` and report this process's RSS with its result (for recycling)."""
        self._idle.busy()
        try:
            value = await getattr(self, method)(*args)
        finally:
            self._idle.done()
        return value, rss_bytes()

    @ray.method(concurrency_group=CONTROL_GROUP)
    async def park(self, documents: int) -> None:
        """Wait for the next run: owned by none, `documents` parsed so far. Idle time counts
        from here."""
        self._aggregator = None
        self._documents_before = documents
        self._idle.touch()

    @ray.method(concurrency_group=CONTROL_GROUP)
    async def touch(self) -> bool:
        """Count as used now (a driver keeping the cluster warm); whether it is parked. A
        parked actor stays claimable meanwhile."""
        self._idle.touch()
        return self._aggregator is None

    @ray.method(concurrency_group=CONTROL_GROUP)
    async def claim(self, aggregator: Any) -> int | None:
        """Join the run of `aggregator`: the documents parsed so far (its pool counts them
        towards recycling), or None when another run claimed this actor first. Calls run
        one at a time, so two runs cannot both claim it."""
        if self._aggregator is not None:
            return None
        self._aggregator = aggregator
        return self._documents_before

    async def _unused(self, idle_for: float) -> bool:
        """Parked and idle for INDEXER_PARSER_IDLE_S, or idle and owned by a run that is
        gone (its driver was killed, so nobody would park it): the CPUs it holds go back."""
        if self._aggregator is None:
            return idle_for >= self._idle_s
        return not await run_is_alive(self._aggregator)

    def parse_error(self, phase: str, where: str, exc: BaseException) -> DocumentError:
        """A DocumentError for an exception MuPDF (or Python) raised on a document."""
        if is_out_of_memory(exc):
            return DocumentError(
                phase,
                f"{where}: out of memory: it needs more than the {self._memory_mb} MiB a "
                "parser may allocate (INDEXER_PARSER_MEMORY_MB)",
            )
        return DocumentError(phase, f"{where}: {type(exc).__name__}: {exc}")
