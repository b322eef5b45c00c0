"""CONTROL-PLANE MODE: how many pages per second the driver, the aggregator, the progress
path and the store sustain together, with parsing and the model taken out.

    .venv/bin/python bench/control_plane.py [--documents 10] [--pages 100] [--runs 3]
                                            [--page-batch 16]

A bench mode, not a product path: render, analyze and embed actors of this script's own
(`TrivialRender`, `TrivialAnalyze`, `TrivialEmbed`) take the real actors' calls and report
to the run's aggregator as they do, and store what they would store through the product's
own store (`actors.store.store_batch`: page documents with a tiny preview, three chunks a
page with fixed text and a fixed unit vector), but parse nothing and run no model. The rest
is the product: `cluster.driver.IndexRun` drives the run on a local Ray with 2 CPUs, the
real fetch actors open the PDFs and count their pages, the real aggregator throttles and
persists progress and publishes it (to no head), the real ontology actor builds concepts,
against the embedded MongoDB server on disk. Batches are a GPU plan's size by default
(`--page-batch`): with the model gone, this measures what a GPU node's pipeline asks of
the control plane. Prints pages/s for each run and the CPU
seconds per page of every process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
from harness import (
    CpuMeter,
    arguments,
    new_workspace,
    other_load,
    print_table,
    run_settings,
    sample_corpus,
)

from actors.ontology import ontology_actor
from actors.parser_pools import parser_spawners
from actors.pool import GPU_PAGE_BATCH, ActorPool, plan_pools
from actors.store import store_batch
from actors.supervised_actor import SupervisedActor, supervised_remote
from actors.supervised_pool import ParserLimits, SupervisedPool, pages_label
from cluster.driver import (
    IndexRun,
    RunActors,
    RunSummary,
    new_aggregator,
    settings_hash,
    workspace_documents,
)
from cluster.ray_runtime import cluster_size, connect_ray
from core.db import ensure_indexes, open_client
from core.embedded_mongo import EmbeddedMongo
from core.jobs import create_job, finish_job_patiently
from core.settings import Settings

RAY_CPUS = 2
CHUNKS_PER_PAGE = 3
CHUNK_TEXT = "a fixed chunk text of the control-plane bench " * 8
PNG_BYTES = bytes(200)
VECTOR = np.full(384, 1 / np.sqrt(384), dtype=np.float32)


@supervised_remote(num_cpus=0.25)
class TrivialRender(SupervisedActor):
    """The render actor's call and reports; a fixed 200-byte preview, no MuPDF."""

    def __init__(self, settings: Settings, aggregator: Any) -> None:
        self._supervise(settings, aggregator)

    async def render(self, workspace_id: str, document_id: str, gridfs_id: str, sha256: str,
                     page_nos: list[int]) -> dict[int, dict[str, Any]]:  # fmt: skip
        self._aggregator.record.remote("render", document_id, page_nos)
        return {p: {"image": {"png": PNG_BYTES, "width": 1, "height": 1}} for p in page_nos}


@supervised_remote(num_cpus=0.25)
class TrivialAnalyze(SupervisedActor):
    """The analyze actor's call and reports; fixed text and chunks, no MuPDF."""

    def __init__(self, settings: Settings, aggregator: Any) -> None:
        self._supervise(settings, aggregator)

    async def analyze(self, workspace_id: str, document_id: str, gridfs_id: str, sha256: str,
                      page_nos: list[int], rendered: dict[int, dict[str, Any]]
                      ) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
        stamp = {"documentId": document_id, "workspaceId": workspace_id, "sha256": sha256}
        self._aggregator.record.remote("analyze", document_id, page_nos)
        pages = [
            {**stamp, **rendered[p], "pageNo": p, "text": CHUNK_TEXT, "chunkCount": CHUNKS_PER_PAGE}
            for p in page_nos
        ]
        chunks = [
            {**stamp, "chunkNo": p * 10_000 + i, "pageNo": p, "pages": [p], "text": CHUNK_TEXT}
            for p in page_nos
            for i in range(CHUNKS_PER_PAGE)
        ]
        return {"pages": pages, "chunks": chunks}


@ray.remote(num_cpus=0.5, max_restarts=0, max_concurrency=16)
class TrivialEmbed:
    """The embed actor's call, liveness check, store and report; a fixed vector, no model."""

    def __init__(self, settings: Settings) -> None:
        self._uri = settings.mongodb_uri.reveal()  # type: ignore[union-attr]
        self._client: Any = None

    def describe(self) -> dict[str, Any]:
        return {"node": ray.get_runtime_context().get_node_id()}

    async def embed(self, database: str, aggregator: Any, document_id: str,
                    batch: dict[str, list[dict[str, Any]]], chunks_before: dict[int, int]
                    ) -> int:  # fmt: skip
        from bson.binary import Binary, BinaryVectorDtype

        if self._client is None:
            self._client = open_client(self._uri, retry_writes=False)
        await aggregator.snapshot.remote()  # the real actor asks whether the run still lives
        vector = Binary.from_vector(VECTOR.tolist(), BinaryVectorDtype.FLOAT32)
        for chunk in batch["chunks"]:
            chunk["embedding"] = vector
        for page in batch["pages"]:
            page["done"] = True
        await store_batch(
            self._client[database], document_id, batch["pages"], batch["chunks"], chunks_before
        )
        aggregator.pages_done.remote(document_id, [p["pageNo"] for p in batch["pages"]])
        return len(batch["chunks"])


def trivial_pool(phase: str, actor: Any, settings: Settings, aggregator: Any, size: int) -> Any:
    limits = ParserLimits.from_settings(settings)
    return SupervisedPool(
        phase,
        lambda: actor.remote(settings, aggregator),
        size,
        limits,
        document_of=lambda args: str(args[1]),
        describe=lambda args: pages_label(args[4]),
    )


async def control_plane_run(
    settings: Settings, workspace_id: str, page_batch: int
) -> tuple[RunSummary, float]:
    """One run of IndexRun with the trivial actors, `page_batch` pages a batch; its summary
    and wall seconds."""
    client = open_client(settings.mongodb_uri.reveal())  # type: ignore[union-attr]
    db = client[settings.mongodb_db]
    try:
        await ensure_indexes(db)
        plan = dataclasses.replace(plan_pools(*cluster_size()), page_batch=page_batch)
        aggregator = new_aggregator(settings)
        spawn_fetch, fetchers = parser_spawners(
            settings, plan, settings_hash(settings), aggregator
        )["fetch"]
        fetch = SupervisedPool(
            "fetch", spawn_fetch, fetchers, ParserLimits.from_settings(settings),
            document_of=lambda args: str(args[0]["_id"]), describe=lambda args: "the document",
        )  # fmt: skip
        actors = RunActors(
            fetch=fetch,
            render=trivial_pool("render", TrivialRender, settings, aggregator, 1),
            analyze=trivial_pool("analyze", TrivialAnalyze, settings, aggregator, 1),
            embed=ActorPool([TrivialEmbed.remote(settings)], streams=2),
            ontology=ontology_actor(settings, plan),
            aggregator=aggregator,
        )
        await aggregator.ready.remote()
        job_id = await create_job(db, workspace_id, mode="local", requested_by="bench")
        documents = await workspace_documents(db, workspace_id)
        started = time.monotonic()
        announced = aggregator.start.remote(workspace_id, len(documents))

        async def record(summary: RunSummary) -> bool:
            return await finish_job_patiently(db, job_id, summary.status)

        run = IndexRun(settings, workspace_id, db, actors, plan)
        summary = await run.execute(job_id, record, documents, announced)
        seconds = time.monotonic() - started
        await actors.release(settings.with_overrides(parser_idle_s=0))
        for actor in actors.embed.actors:
            ray.kill(actor)
        return summary, seconds
    finally:
        await client.close()


def main() -> None:
    parser = arguments(__doc__, documents=10, pages=100)
    parser.add_argument("--runs", type=int, default=3, help="runs on fresh workspaces")
    parser.add_argument("--page-batch", type=int, default=GPU_PAGE_BATCH,
                        help="pages per render → analyze → embed batch")  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-control-plane-"))
    paths = sample_corpus(work / "corpus", args)
    print(f"other load before: {other_load():.0%} of the CPUs")
    print("CONTROL-PLANE MODE: trivial render, analyze and embed actors (see the docstring)")
    rows, per_page = [], {}
    with EmbeddedMongo(work / "mongo") as mongo:
        connect_ray(None, num_cpus=RAY_CPUS)
        settings = run_settings(mongo.uri, work / "data")
        for run in range(1, args.runs + 1):
            workspace_id = asyncio.run(new_workspace(mongo.uri, settings.mongodb_db, paths))
            with CpuMeter() as meter:
                run_once = control_plane_run(settings, workspace_id, args.page_batch)
                summary, seconds = asyncio.run(run_once)
            if summary.status != "succeeded":
                raise RuntimeError(f"run {run}: {summary.error}")
            label = f"run {run}"
            rows.append([label, summary.pages, f"{summary.pages / seconds:.0f}",
                         f"{meter.foreign_load():.0%}"])  # fmt: skip
            per_page[label] = {k: 1000 * v / summary.pages for k, v in meter.by_label().items()}
    print_table(["run", "pages", "pages/s", "other load"], rows)
    labels = sorted({k for table in per_page.values() for k in table})
    print_table(
        ["CPU ms per page", *per_page],
        [[k, *(f"{t.get(k, 0.0):.2f}" for t in per_page.values())] for k in labels],
    )


if __name__ == "__main__":
    main()
