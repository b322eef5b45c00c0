"""The fetch, render and analyze pools of a run, as SupervisedPools (actors/supervision.py).

Kept apart from the driver so the driver wires three pools in one line, and apart from
supervision.py because the actor modules import that one.
"""

from __future__ import annotations

from typing import Any

from actors.analyze import AnalyzeActor
from actors.fetch import FetchActor
from actors.pool import PoolPlan
from actors.render import RenderActor
from actors.supervision import ParserLimits, SupervisedPool, pages_label
from core.settings import Settings


def _page_batch_document(args: tuple[Any, ...]) -> str:
    """render/analyze arguments: (workspace, document, gridfs id, sha256, pages)."""
    return str(args[1])


def _page_batch_label(args: tuple[Any, ...]) -> str:
    return pages_label(args[4])


def parser_pools(
    settings: Settings, plan: PoolPlan, fingerprint: str, aggregator: Any
) -> tuple[SupervisedPool, SupervisedPool, SupervisedPool]:
    """(fetch, render, analyze) pools sized by `plan`, with the settings' limits."""
    limits = ParserLimits.from_settings(settings)
    render = RenderActor.options(num_cpus=plan.render_cpus)
    analyze = AnalyzeActor.options(num_cpus=plan.analyze_cpus)
    return (
        SupervisedPool(
            "fetch",
            lambda: FetchActor.remote(settings, fingerprint),
            plan.fetch_actors,
            limits,
            document_of=lambda args: str(args[0]["_id"]),
            describe=lambda args: "the document",
        ),
        SupervisedPool(
            "render",
            lambda: render.remote(settings, aggregator),
            plan.render_actors,
            limits,
            document_of=_page_batch_document,
            describe=_page_batch_label,
        ),
        SupervisedPool(
            "analyze",
            lambda: analyze.remote(settings, aggregator),
            plan.analyze_actors,
            limits,
            document_of=_page_batch_document,
            describe=_page_batch_label,
        ),
    )
