"""How many actors of each phase a cluster gets, and a small async pool to call them.

Policy apart from mechanism: `plan_pools` only decides from the cluster's resources;
`ActorPool` only hands out actor slots. Neither imports Ray.

The sizing rule: embedding is the bottleneck (most of a page's CPU time on a CPU node; see
docs/BENCHMARKS.md, 'Pipeline throughput'), so embed actors get the GPUs, or most of the
CPUs; render and analyze get small fractional CPUs so they never starve the actors they
feed, and the sum of all reservations stays under the cluster's CPUs (otherwise actors stay
pending and a run stalls).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

# Pages of one document a render → analyze → embed call takes at most (see `page_batch`).
PAGE_BATCH = 4
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

    @property
    def encode_streams(self) -> int:
        """Batches the embed pool encodes at once: its actors times the streams of each."""
        return self.embed_actors * self.embed_streams


def plan_pools(cpus: float, gpus: float) -> PoolPlan:
    """Size the pools for a cluster with `cpus` CPUs and `gpus` GPUs in all."""
    cpus = max(cpus, 1.0)
    if cpus <= 4:
        parsers, parser_cpus = 1, 0.25
    else:
        parsers, parser_cpus = max(1, int(cpus // 8)), 1.0
    streams = 1
    if gpus >= 1:
        embed_actors, embed_cpus, embed_gpus, threads = int(min(gpus, 8)), 1.0, 1.0, 1
    elif cpus <= 4:
        # One single-threaded encode stream per core: on cores shared with the parsers and
        # MongoDB, torch's threads of one stream would wait on each other at every barrier.
        # The streams share one actor, which imports torch and sentence-transformers once
        # (see docs/BENCHMARKS.md, 'Design choices'). It reserves at most one logical CPU so
        # the parsers and the ontology actor (a quarter each) always fit beside it.
        embed_actors, embed_gpus, threads, streams = 1, 0.0, 1, int(cpus)
        embed_cpus = min(1.0, cpus - 3 * parser_cpus)
    else:
        left = cpus - 2 * parsers * parser_cpus - 1
        embed_actors = max(1, int(left // 4))
        embed_cpus, embed_gpus, threads = 4.0, 0.0, 4
    return PoolPlan(
        fetch_actors=1 if cpus <= 4 else 2,
        render_actors=parsers,
        analyze_actors=parsers,
        embed_actors=embed_actors,
        render_cpus=parser_cpus,
        analyze_cpus=parser_cpus,
        embed_cpus=embed_cpus,
        embed_gpus=embed_gpus,
        embed_threads=threads,
        embed_streams=streams,
        ontology_cpus=0.25,
        max_batches_in_flight=batches_in_flight(parsers, embed_actors * streams),
    )


def page_batch(pages: int, plan: PoolPlan) -> int:
    """Pages per batch for a document of `pages` pages: PAGE_BATCH, fewer for a small one,
    so it still makes two batches per encode stream and every stream starts embedding
    while the next pages are parsed (a 10-page document on two streams: 2-page batches;
    `bench/latency.py`)."""
    return max(1, min(PAGE_BATCH, pages // (2 * plan.encode_streams)))


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
