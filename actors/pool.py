"""How many actors of each phase a cluster gets, and a small async pool to call them.

Policy apart from mechanism: `plan_pools` only decides from the cluster's resources;
`ActorPool` only hands out actor slots. Neither imports Ray.

How the plan is chosen. The actors reserve the cluster's CPUs, all but a remainder smaller
than one parser actor's share: a CPU nobody reserves is a CPU a run leaves idle, and
reserving more than there is leaves actors pending and the run stalled. Every reservation
is 1, 1/2 or 1/4 of a CPU, or a whole number of CPUs, so the actors pack onto nodes with
whole numbers of CPUs however Ray places them.
- Without a GPU, embedding takes about ten times the CPU of render and analyze together per
  page on this model, so it gets about nine tenths of the CPUs: on up to 4 CPUs one embed
  actor running a single-threaded encode stream per core (threads of one process sharing
  cores with the parsers wait on each other; docs/BENCHMARKS.md, "Pipeline throughput"), on
  more, actors of about 4 torch threads each.
- With GPUs, one embed actor per GPU holds it and a CPU to feed it (less when CPUs are
  scarce: together never more than half of them), and render and analyze get every other
  CPU: a GPU embeds far faster than a CPU parses.
- Render and analyze actors reserve a quarter CPU each on up to 4 CPUs without a GPU, half
  on up to 16, one above; fetch reserves none (it waits on I/O); the ontology actor what
  is left, a quarter CPU or more.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

# Pages of one document a render → analyze → embed call takes at most (see `page_batch`):
# a GPU encodes a large batch for about the price of a small one, so GPU plans take more.
CPU_PAGE_BATCH = 8
GPU_PAGE_BATCH = 16
SLOTS_PER_ACTOR = 2


@dataclass(frozen=True, kw_only=True)
class PoolPlan:
    """Actor counts and per-actor resources for one run."""

    fetch_actors: int
    render_actors: int
    analyze_actors: int
    embed_actors: int
    render_cpus: float
    analyze_cpus: float
    embed_cpus: float
    embed_gpus: float
    embed_threads: int
    embed_streams: int
    ontology_cpus: float
    max_batches_in_flight: int
    page_batch: int

    @property
    def encode_streams(self) -> int:
        """Batches the embed pool encodes at once: its actors times the streams of each."""
        return self.embed_actors * self.embed_streams


ONTOLOGY_CPUS = 0.25
SMALL_CLUSTER_CPUS = 4
MEDIUM_CLUSTER_CPUS = 16
# Without a GPU, render and analyze take about this share of the CPUs (embedding the rest).
PARSER_SHARE_CPU_ONLY = 0.1
CPU_EMBED_THREADS = 4
MAX_GPU_ACTORS = 64


def plan_pools(cpus: float, gpus: float) -> PoolPlan:
    """Size the pools for a cluster with `cpus` CPUs and `gpus` GPUs in all (see the module
    docstring for how)."""
    cpus = float(max(math.floor(cpus), 1))
    if gpus >= 1:
        return _gpu_plan(cpus, int(min(gpus, MAX_GPU_ACTORS)))
    if cpus <= SMALL_CLUSTER_CPUS:
        return _small_cpu_plan(cpus)
    return _cpu_plan(cpus)


def parser_unit(cpus: float, gpus: float = 0) -> float:
    """What one render or analyze actor reserves on a cluster of `cpus` CPUs."""
    if cpus <= SMALL_CLUSTER_CPUS and not gpus:
        return 0.25
    return 0.5 if cpus <= MEDIUM_CLUSTER_CPUS else 1.0


def _small_cpu_plan(cpus: float) -> PoolPlan:
    """One embed actor, one single-threaded stream per core; a quarter-CPU parser pair."""
    unit = parser_unit(cpus)
    embed_cpus = max(0.25, math.floor(cpus - 2 * unit - ONTOLOGY_CPUS))
    return _plan(
        cpus, parsers=2, unit=unit, embed_actors=1, embed_cpus=embed_cpus, embed_gpus=0.0,
        threads=1, streams=int(cpus),
    )  # fmt: skip


def _cpu_plan(cpus: float) -> PoolPlan:
    """About a tenth of the CPUs to parsers, the rest to embed actors of about 4 threads."""
    unit = parser_unit(cpus)
    parsers = max(2, round(cpus * PARSER_SHARE_CPU_ONLY / unit))
    embedding = cpus - parsers * unit - ONTOLOGY_CPUS
    actors = max(1, round(embedding / CPU_EMBED_THREADS))
    per_actor = math.floor(embedding / actors)
    parsers += int((embedding - actors * per_actor) // unit)  # what is left parses
    return _plan(
        cpus, parsers=parsers, unit=unit, embed_actors=actors, embed_cpus=float(per_actor),
        embed_gpus=0.0, threads=per_actor, streams=1,
    )  # fmt: skip


def _gpu_plan(cpus: float, gpus: int) -> PoolPlan:
    """An embed actor per GPU with a CPU (or a half, a quarter, none) to feed it; every
    other CPU to parsers."""
    unit = parser_unit(cpus, gpus)
    budget = min(cpus / 2, cpus - 2 * unit - ONTOLOGY_CPUS)
    embed_cpus = next(share for share in (1.0, 0.5, 0.25, 0.0) if gpus * share <= budget)
    parsers = max(2, int((cpus - gpus * embed_cpus - ONTOLOGY_CPUS) // unit))
    return _plan(
        cpus, parsers=parsers, unit=unit, embed_actors=gpus, embed_cpus=embed_cpus,
        embed_gpus=1.0, threads=1, streams=1,
    )  # fmt: skip


def _plan(
    cpus: float,
    *,
    parsers: int,
    unit: float,
    embed_actors: int,
    embed_cpus: float,
    embed_gpus: float,
    threads: int,
    streams: int,
) -> PoolPlan:
    """Parsers split into render (the odd one: it costs a little more) and analyze; the
    ontology actor takes what is left (a whole, half or quarter CPU)."""
    render, analyze = (parsers + 1) // 2, parsers // 2
    left = cpus - parsers * unit - embed_actors * embed_cpus
    ontology = next((share for share in (1.0, 0.5) if share <= left), ONTOLOGY_CPUS)
    return PoolPlan(
        fetch_actors=1 if cpus <= SMALL_CLUSTER_CPUS else 2,
        render_actors=render,
        analyze_actors=analyze,
        embed_actors=embed_actors,
        render_cpus=unit,
        analyze_cpus=unit,
        embed_cpus=embed_cpus,
        embed_gpus=embed_gpus,
        embed_threads=threads,
        embed_streams=streams,
        ontology_cpus=ontology,
        max_batches_in_flight=batches_in_flight(analyze, embed_actors * streams),
        page_batch=GPU_PAGE_BATCH if embed_gpus else CPU_PAGE_BATCH,
    )


def page_batch(pages: int, documents: int, plan: PoolPlan) -> int:
    """Pages per batch for a document of `pages` pages in a run of `documents` documents.

    The plan's page batch when the run has documents enough to keep every encode stream busy with
    batches of its own (large batches: fewer, larger writes, docs/BENCHMARKS.md, "What a
    page costs outside the model"). In a run of a few documents, a small one is cut finer,
    so it still makes two batches per encode stream and every stream starts embedding
    while the next pages are parsed (a 10-page document on two streams: 2-page batches;
    docs/BENCHMARKS.md, "Start → ready on a warm head")."""
    spread = 2 * plan.encode_streams
    if documents >= spread:
        return plan.page_batch
    return max(1, min(plan.page_batch, pages // spread))


def batches_in_flight(parser_pairs: int, encode_streams: int) -> int:
    """The driver's bound on page batches in flight: every actor slot busy (render and
    analyze of each parser pair, each encode stream), and two more waiting."""
    return SLOTS_PER_ACTOR * (2 * parser_pairs + encode_streams) + 2


class ActorPool:
    """Hands out actor slots: at most SLOTS_PER_ACTOR calls in flight per stream of an actor
    (`streams` calls run at once in it), so the next batch is already queued at an actor
    while it finishes the current one."""

    def __init__(self, actors: list[Any], streams: int = 1) -> None:
        self.actors = actors
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        for _ in range(SLOTS_PER_ACTOR * streams):
            for actor in actors:
                self._idle.put_nowait(actor)

    async def call(self, method: str, *args: Any) -> Any:
        actor = await self._idle.get()
        try:
            return await getattr(actor, method).remote(*args)
        finally:
            self._idle.put_nowait(actor)
