"""The fetch, render and analyze pools of a run, as SupervisedPools
(`actors.supervised_pool`): parked actors claimed first (`actors.lifecycle.parking`), new
ones started for the rest, each with the call description its errors name."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from actors.analyze import AnalyzeActor
from actors.fetch import FetchActor
from actors.incidents import RunIncidents
from actors.lifecycle.names import actor_key
from actors.lifecycle.parking import (
    claim_spares,
    keeps_parsers,
    kept_actor_names,
    spawn_options,
)
from actors.pool import PoolPlan
from actors.render import RenderActor
from actors.supervised_pool import ParserLimits, SupervisedPool, pages_label
from core.settings import Settings


def _page_batch_document(args: tuple[Any, ...]) -> str:
    """render/analyze arguments: (workspace, document, gridfs id, sha256, pages)."""
    return str(args[1])


def _page_batch_label(args: tuple[Any, ...]) -> str:
    return pages_label(args[4])


PHASES = ("fetch", "render", "analyze")


def parser_spawners(
    settings: Settings, plan: PoolPlan, fingerprint: str, aggregator: Any
) -> dict[str, tuple[Callable[[], Any], int]]:
    """For each parser phase, a function that starts one new actor as `plan` sizes it (a
    name of its own when it may be parked later), and how many the plan wants."""
    key = actor_key(settings, plan)
    named = keeps_parsers(settings)

    def spawn(actor_class: Any, phase: str, *args: Any, **resources: float) -> Callable[[], Any]:
        return lambda: actor_class.options(
            **resources, **(spawn_options(key, phase) if named else {})
        ).remote(*args)

    return {
        "fetch": (spawn(FetchActor, "fetch", settings, fingerprint, aggregator), plan.fetch_actors),
        "render": (
            spawn(RenderActor, "render", settings, aggregator, num_cpus=plan.render_cpus),
            plan.render_actors,
        ),
        "analyze": (
            spawn(AnalyzeActor, "analyze", settings, aggregator, num_cpus=plan.analyze_cpus),
            plan.analyze_actors,
        ),
    }


async def parser_pools(
    settings: Settings,
    plan: PoolPlan,
    fingerprint: str,
    aggregator: Any,
    incidents: RunIncidents | None = None,
) -> tuple[SupervisedPool, SupervisedPool, SupervisedPool]:
    """(fetch, render, analyze) pools sized by `plan`, with the settings' limits: parked
    actors of an earlier run first (`actors.lifecycle.parking`), new ones for the rest. `incidents`
    is where the run notes nodes lost and calls sent again. Parked actors of other keys
    are removed with the run's frame (`cluster.driver.run_frame`)."""
    limits = ParserLimits.from_settings(settings)
    key = actor_key(settings, plan)
    spawners = parser_spawners(settings, plan, fingerprint, aggregator)
    names = kept_actor_names() if keeps_parsers(settings) else []
    claims = await asyncio.gather(
        *(claim_spares(key, phase, spawners[phase][1], aggregator, names) for phase in PHASES)
    )
    page_batches = {"document_of": _page_batch_document, "describe": _page_batch_label}
    whole_documents = {
        "document_of": lambda args: str(args[0]["_id"]),
        "describe": lambda args: "the document",
    }
    fetch, render, analyze = (
        SupervisedPool(
            phase,
            *spawners[phase],
            limits,
            claimed=claimed,
            incidents=incidents,
            **(whole_documents if phase == "fetch" else page_batches),
        )
        for phase, claimed in zip(PHASES, claims, strict=True)
    )
    return fetch, render, analyze
