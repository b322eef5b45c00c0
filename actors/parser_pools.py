"""The fetch, render and analyze pools of a run, as SupervisedPools (actors/supervision.py).

Kept apart from the driver so the driver wires three pools in one line, and apart from
supervision.py because the actor modules import that one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from actors.analyze import AnalyzeActor
from actors.fetch import FetchActor
from actors.named import actor_key
from actors.pool import PoolPlan
from actors.render import RenderActor
from actors.spares import (
    claim_spares,
    keeps_parsers,
    kept_actor_names,
    remove_other_spares,
    spawn_options,
)
from actors.supervision import ParserLimits, SupervisedPool, pages_label
from core.settings import Settings


def _page_batch_document(args: tuple[Any, ...]) -> str:
    """render/analyze arguments: (workspace, document, gridfs id, sha256, pages)."""
    return str(args[1])


def _page_batch_label(args: tuple[Any, ...]) -> str:
    return pages_label(args[4])


async def parser_pools(
    settings: Settings, plan: PoolPlan, fingerprint: str, aggregator: Any
) -> tuple[SupervisedPool, SupervisedPool, SupervisedPool]:
    """(fetch, render, analyze) pools sized by `plan`, with the settings' limits: parked
    actors of an earlier run first (`actors.spares`), new ones for the rest."""
    limits = ParserLimits.from_settings(settings)
    key = actor_key(settings, plan)
    keep = keeps_parsers(settings)
    names = kept_actor_names() if keep else []
    if keep:
        await remove_other_spares(key, aggregator, names)
    fetch_claims, render_claims, analyze_claims = await asyncio.gather(
        *(
            claim_spares(key, phase, count, aggregator, names)
            for phase, count in (
                ("fetch", plan.fetch_actors),
                ("render", plan.render_actors),
                ("analyze", plan.analyze_actors),
            )
        )
    )

    def spawn(actor_class: Any, phase: str, *args: Any, **resources: float) -> Callable[[], Any]:
        """A new actor each call: a name of its own when it may be parked later."""
        return lambda: actor_class.options(
            **resources, **(spawn_options(key, phase) if keep else {})
        ).remote(*args)

    return (
        SupervisedPool(
            "fetch",
            spawn(FetchActor, "fetch", settings, fingerprint, aggregator),
            plan.fetch_actors,
            limits,
            document_of=lambda args: str(args[0]["_id"]),
            describe=lambda args: "the document",
            claimed=fetch_claims,
        ),
        SupervisedPool(
            "render",
            spawn(RenderActor, "render", settings, aggregator, num_cpus=plan.render_cpus),
            plan.render_actors,
            limits,
            document_of=_page_batch_document,
            describe=_page_batch_label,
            claimed=render_claims,
        ),
        SupervisedPool(
            "analyze",
            spawn(AnalyzeActor, "analyze", settings, aggregator, num_cpus=plan.analyze_cpus),
            plan.analyze_actors,
            limits,
            document_of=_page_batch_document,
            describe=_page_batch_label,
            claimed=analyze_claims,
        ),
    )
