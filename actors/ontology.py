"""Ontology phase: the workspace's concepts, their chunks and co-occurrence edges."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import ray

from actors.lifecycle.idle import IdleTimer
from actors.lifecycle.names import NAMESPACE, actor_key
from actors.lifecycle.parking import ONTOLOGY_PREFIX, keeps_parsers
from actors.pool import PoolPlan
from actors.store import insert_or_replace
from core.concepts import build_concepts
from core.db import LazyDatabase, retried_once
from core.settings import Settings


@ray.remote(num_cpus=0.5, max_restarts=3, max_task_retries=3, max_concurrency=1)
class OntologyActor:
    """Ontology phase. Resources: given by the driver, used at the end of each run; shared by
    the runs with the same settings and left after INDEXER_PARSER_IDLE_S idle (see
    `actors.lifecycle.parking`). Retries: restarted and retried by Ray. Idempotency key:
    (workspace, conceptId); concepts no longer found are removed."""

    def __init__(self, settings: Settings) -> None:
        self._db = LazyDatabase(settings.mongodb_uri.reveal(), settings.mongodb_db)  # type: ignore[union-attr]
        self._idle = IdleTimer(settings.parser_idle_s)
        ray.get_runtime_context().current_actor.watch_idle.remote()

    async def watch_idle(self) -> None:
        """Start the idle check (see `actors.lifecycle.idle`); the constructor sends it."""
        self._idle.watch()

    async def ready(self) -> None:
        """Readiness probe. It counts as use: a driver that keeps the runtime warm calls it,
        and the actor stays."""
        self._idle.touch()

    async def build(self, workspace_id: str) -> int:
        self._idle.busy()
        try:
            return await self._build(workspace_id)
        finally:
            self._idle.done()

    async def _build(self, workspace_id: str) -> int:
        db = self._db.get()
        stored = await retried_once(
            lambda: db.chunks.find(
                {"workspaceId": workspace_id}, {"documentId": 1, "chunkNo": 1, "text": 1}
            ).to_list()
        )
        chunks = [(c["documentId"], c["chunkNo"], c.get("text", "")) for c in stored]
        concepts = build_concepts(chunks)
        before = set(
            await retried_once(
                lambda: db.concepts.distinct("conceptId", {"workspaceId": workspace_id})
            )
        )
        now = datetime.now(UTC)
        documents = [
            {
                "workspaceId": workspace_id,
                "conceptId": c.concept_id,
                "label": c.label,
                "score": c.score,
                "chunkCount": len(c.chunk_refs),
                "chunks": [{"documentId": d, "chunkNo": n} for d, n in c.chunk_refs],
                "edges": [{"conceptId": other, "weight": w} for other, w in c.edges],
                "updatedAt": now,
            }
            for c in concepts
        ]
        if documents:
            await insert_or_replace(db.concepts, documents, ("workspaceId", "conceptId"))
        # the concepts no longer found, named: a `$nin` of every concept kept would have the
        # server compare each stored concept with the whole list
        gone = sorted(before - {c.concept_id for c in concepts})
        if gone:
            query = {"workspaceId": workspace_id, "conceptId": {"$in": gone}}
            await retried_once(lambda: db.concepts.delete_many(query))
        return len(concepts)


def ontology_actor(settings: Settings, plan: PoolPlan) -> Any:
    """The ontology actor for a run: the kept one of this key, created when missing."""
    options: dict[str, Any] = {"num_cpus": plan.ontology_cpus}
    if keeps_parsers(settings):
        name = f"{ONTOLOGY_PREFIX}-{actor_key(settings, plan)}"
        options |= {"name": name, "namespace": NAMESPACE, "lifetime": "detached"}
        options["get_if_exists"] = True
    return OntologyActor.options(**options).remote(settings)
