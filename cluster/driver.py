"""One indexing run: wires the actors together, pipelines pages, records the job.

Per-page phases are pipelined: each page batch goes render → analyze → embed through its
own actor pool, and a bounded number of batches is in flight at once, so page 40 renders
while page 3 embeds and memory stays flat whatever the workspace size. A document that
fails is marked failed alone; only a failure of the run itself ends in `index:failed`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import ray
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.embed_pool import embed_pool
from actors.fetch import FetchedDocument
from actors.incidents import RunIncidents, alive_nodes, node_is_alive
from actors.layout import CHUNK_OVERLAP_WORDS, CHUNK_WORDS
from actors.lifecycle.names import actor_key
from actors.lifecycle.parking import (
    keeps_parsers,
    kept_actor_names,
    remove_other_spares,
    touch_parked,
)
from actors.ontology import ontology_actor
from actors.parser_pools import parser_pools, parser_spawners
from actors.pool import ActorPool, PoolPlan, page_batch, plan_pools
from actors.progress import ProgressAggregator
from actors.supervised_pool import SupervisedPool, pages_label
from cluster.delivery_watch import DeliveryWatch
from cluster.ray_runtime import cluster_size
from core.db import Document, ensure_indexes, open_client, require_uri
from core.errors import DocumentError, RunError
from core.jobs import create_job, failure_message, finish_job_patiently, update_job
from core.settings import Settings
from core.workspaces import find_workspace

logger = logging.getLogger(__name__)

PIPELINE_VERSION = 1
# A batch whose embed actor died under it this many times (each time on a new pool) fails
# its document; an ontology build, its run.
EMBED_ATTEMPTS = 3
ONTOLOGY_ATTEMPTS = 3
# How often a run looks for nodes Ray declared dead (see IndexRun._watch_nodes).
NODE_CHECK_S = 1.0
HEARTBEAT_S = 10.0
# Aggregators a long-lived driver keeps starting ahead of the next run's: two cover runs
# that follow each other faster than a worker process starts on a busy node.
SPARE_AGGREGATORS = 2
# Warming: a parser actor not started by then has no room on the cluster and is not kept.
WARM_START_TIMEOUT_S = 30.0


def settings_hash(settings: Settings) -> str:
    """What makes an index of a document reusable: same model, DPI and chunking rules."""
    key = {
        "v": PIPELINE_VERSION,
        "model": settings.embed_model,
        "dpi": settings.render_dpi,
        "chunk": [CHUNK_WORDS, CHUNK_OVERLAP_WORDS],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


async def workspace_documents(db: AsyncDatabase[Document], workspace_id: str) -> list[Document]:
    """The workspace's documents, in the order a run takes them (see `expected_size`)."""
    documents = await db.documents.find({"workspaceId": workspace_id}).to_list()
    return sorted(documents, key=expected_size, reverse=True)


def expected_size(document: Document) -> tuple[int, int]:
    """Longest first: its page batches enter the pools' rotation earliest, so a 1,000-page
    document is not still alone at the end of a run. Pages when a past fetch counted them,
    else bytes (an unfetched document counts no pages)."""
    return int(document.get("pageCount") or 0), int(document.get("bytes") or 0)


@dataclass
class RunSummary:
    """What the CLI prints at the end and the `jobs` document records."""

    job_id: str
    status: str
    documents: int = 0
    failed_documents: dict[str, str] = field(default_factory=dict)
    skipped_documents: int = 0
    pages: int = 0
    chunks: int = 0
    concepts: int = 0
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    incidents: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunActors:
    """The actors of one run; handed to `on_start` so callers can watch (or test) them."""

    fetch: SupervisedPool
    render: SupervisedPool
    analyze: SupervisedPool
    embed: ActorPool
    ontology: Any
    aggregator: Any
    incidents: RunIncidents = field(default_factory=RunIncidents)

    async def release(self, settings: Settings) -> None:
        """The run is over: parser actors are parked for the next run or killed (see
        `actors.lifecycle.parking`); the aggregator is the run's own. The embed pool
        outlives runs."""
        keep = keeps_parsers(settings)
        if not keep:
            ray.kill(self.ontology)
        try:
            await release_parsers(self.fetch, self.render, self.analyze, park=keep)
        finally:
            # last: an idle parser still owned by the run takes a dead aggregator for a run
            # that is gone and leaves, so its park call must have landed first
            ray.kill(self.aggregator)


@dataclass
class RunFrame:
    """What a run needs besides its parser actors, made ready ahead of it by a long-lived
    driver: its aggregator, and handles on the embed pool and the ontology actor (which
    outlive runs) that have answered, models loaded."""

    plan: PoolPlan
    aggregator: Any
    embed: ActorPool
    ontology: Any

    async def ready(self) -> dict[str, Any]:
        """Wait until every actor has started; what the embed actors report. Each answer
        counts as use, so the embed pool and the ontology actor stay."""
        described = await asyncio.gather(
            *(actor.describe.remote() for actor in self.embed.actors),
            self.ontology.ready.remote(),
            self.aggregator.ready.remote(),
        )
        return dict(described[0])


async def release_parsers(*pools: SupervisedPool, park: bool) -> None:
    await asyncio.gather(*(pool.release(park=park) for pool in pools))


class _PhaseClock:
    """Busy time per phase: wall time during which at least one call of the phase ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._running: dict[str, int] = {}
        self._since: dict[str, float] = {}

    def enter(self, phase: str) -> None:
        if self._running.get(phase, 0) == 0:
            self._since[phase] = time.monotonic()
        self._running[phase] = self._running.get(phase, 0) + 1

    def leave(self, phase: str) -> None:
        self._running[phase] -= 1
        if self._running[phase] == 0:
            elapsed = time.monotonic() - self._since[phase]
            self.seconds[phase] = self.seconds.get(phase, 0.0) + elapsed

    def running_phases(self) -> set[str]:
        """Phases with a call running now."""
        return {phase for phase, count in self._running.items() if count}


def new_aggregator(settings: Settings) -> Any:
    """A run's ProgressAggregator, on this driver's node: a worker node lost mid-run then
    never takes the run's progress with it."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ProgressAggregator.options(scheduling_strategy=here).remote(settings)


async def run_frame(settings: Settings, plan: PoolPlan, aggregator: Any) -> RunFrame:
    """A run's frame for `plan`. Kept actors of other settings or another plan go first
    (parked parsers, an ontology actor; `embed_pool` removes other embed pools): they would
    hold the CPUs this frame's actors need, and wait for them forever."""
    if keeps_parsers(settings):
        await remove_other_spares(actor_key(settings, plan), aggregator, kept_actor_names())
    return RunFrame(
        plan=plan,
        aggregator=aggregator,
        embed=ActorPool(embed_pool(settings, plan), plan.embed_streams),
        ontology=ontology_actor(settings, plan),
    )


async def create_run_actors(settings: Settings, frame: RunFrame) -> RunActors:
    """The run's actors: the frame's, and parser pools of parked actors (claimed) or new."""
    incidents = RunIncidents()
    fetch, render, analyze = await parser_pools(
        settings, frame.plan, settings_hash(settings), frame.aggregator, incidents
    )
    return RunActors(
        fetch=fetch,
        render=render,
        analyze=analyze,
        embed=frame.embed,
        ontology=frame.ontology,
        aggregator=frame.aggregator,
        incidents=incidents,
    )


class IndexRun:
    """One run of one workspace; `execute` returns its summary."""

    def __init__(
        self,
        settings: Settings,
        workspace_id: str,
        db: AsyncDatabase[Document],
        actors: RunActors,
        plan: PoolPlan,
    ) -> None:
        self._settings = settings
        self._workspace_id = workspace_id
        self._db = db
        self._actors = actors
        self._plan = plan
        self._in_flight = asyncio.Semaphore(plan.max_batches_in_flight)
        self._clock = _PhaseClock()
        self._failed: dict[str, str] = {}
        self._skipped = 0
        self._phase = "fetch"
        self._embed_ready: asyncio.Future[None] | None = None
        self._embed_nodes: set[str] = set()  # where this run's embed actors ran
        self._documents = 0  # in this run: how finely its documents' pages are batched
        actors.incidents.on_node_lost = self._node_lost

    async def execute(
        self,
        job_id: str,
        record: Callable[[RunSummary], Awaitable[bool]],
        documents: list[Document],
        announced: Any,
    ) -> RunSummary:
        """Run every phase over `documents` (the workspace's, as `workspace_documents`
        lists them); `announced` is the aggregator's `start` call. `record` stores the
        outcome before the last event goes out, so a browser that refetches on
        `index:ready`/`index:failed` finds it. When `record` says the job had already ended
        (cancelled meanwhile), no last event is sent."""
        started = time.monotonic()
        self._documents = len(documents)
        aggregator = self._actors.aggregator
        watching = asyncio.create_task(self._watch_nodes())
        try:
            await asyncio.gather(announced, *(self._index_document(d) for d in documents))
            self._phase = "ontology"
            aggregator.set_phase.remote("ontology")
            concepts = await self._timed("ontology", self._build_ontology())
            self._phase = "finalize"
            aggregator.set_phase.remote("finalize")
            page_count, chunks = await self._counts()
        except asyncio.CancelledError:
            self._stop_ontology()
            raise
        except Exception as exc:
            self._stop_ontology()
            error = failure_message(exc)
            summary = self._summary(job_id, "failed", documents, started, error=error)
            if await record(summary):
                summary.events = await aggregator.fail.remote(error, self._phase)
            return summary
        finally:
            watching.cancel()
        summary = self._summary(job_id, "succeeded", documents, started)
        summary.pages, summary.chunks, summary.concepts = page_count, chunks, concepts
        if await record(summary):
            summary.events = await aggregator.finish.remote(page_count)
        return summary

    def _summary(
        self,
        job_id: str,
        status: str,
        documents: list[Document],
        started: float,
        error: str | None = None,
    ) -> RunSummary:
        return RunSummary(
            job_id=job_id,
            status=status,
            documents=len(documents),
            failed_documents=dict(self._failed),
            skipped_documents=self._skipped,
            seconds=time.monotonic() - started,
            phase_seconds=dict(self._clock.seconds),
            error=error,
            incidents=self._actors.incidents.as_document(),
        )

    def _stop_ontology(self) -> None:
        """The run ends early: a build already sent to the ontology actor is stopped with
        the actor, so nothing of this run writes after it returns."""
        if "ontology" in self._clock.running_phases():
            ray.kill(self._actors.ontology, no_restart=True)

    async def _build_ontology(self) -> int:
        """The build, sent again when its actor is gone: a kept one that left, idle, between
        the look-up and the call, or one the run replaced after a node was lost."""
        for attempt in range(1, ONTOLOGY_ATTEMPTS + 1):
            try:
                return int(await self._ontology().build.remote(self._workspace_id))
            except RayActorError:
                if attempt == ONTOLOGY_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _ontology(self) -> Any:
        """The run's ontology actor. A kept one is looked up again: it leaves when idle, and
        a run can be busy with its pages for longer than INDEXER_PARSER_IDLE_S."""
        if keeps_parsers(self._settings):
            self._actors.ontology = ontology_actor(self._settings, self._plan)
        return self._actors.ontology

    async def _counts(self) -> tuple[int, int]:
        cursor = self._db.documents.find(
            {"workspaceId": self._workspace_id, "status": {"$in": ["indexed", "partial"]}},
            {"pageCount": 1},
        )
        page_count = sum([int(d.get("pageCount", 0)) async for d in cursor])
        chunks = await self._db.chunks.count_documents({"workspaceId": self._workspace_id})
        return page_count, chunks

    async def _index_document(self, document: Document) -> None:
        document_id = str(document["_id"])
        try:
            self._clock.enter("fetch")
            try:
                fetched: FetchedDocument = await self._actors.fetch.call("fetch", document)
            finally:
                self._clock.leave("fetch")
            if fetched.skipped:
                self._skipped += 1
                await self._document_unchanged(fetched)
                self._actors.aggregator.document_fetched.remote(
                    document_id, fetched.page_count, fetched.page_count
                )
                return
            await self._index_pages(fetched)
        except DocumentError as exc:
            await self._document_failed(document_id, exc)
            return
        await self._document_indexed(fetched)

    async def _index_pages(self, fetched: FetchedDocument) -> None:
        stored = await self._db.pages.find(
            {"documentId": fetched.document_id, "sha256": fetched.sha256},
            {"pageNo": 1, "done": 1, "chunkCount": 1},
        ).to_list()
        done = {p["pageNo"] for p in stored if p.get("done")}
        # pages stored before and not done (another version's analysis): the store drops
        # what their new chunks do not cover
        chunks_before = {
            p["pageNo"]: int(p.get("chunkCount", 0)) for p in stored if not p.get("done")
        }
        self._actors.aggregator.document_fetched.remote(
            fetched.document_id, fetched.page_count, len(done)
        )
        todo = [p for p in range(fetched.page_count) if p not in done]
        tasks: list[asyncio.Task[None]] = []
        try:
            size = page_batch(fetched.page_count, self._documents, self._plan)
            for start in range(0, len(todo), size):
                if fetched.document_id in self._failed:
                    break
                await self._in_flight.acquire()
                batch = todo[start : start + size]
                before = {p: chunks_before[p] for p in batch if p in chunks_before}
                tasks.append(asyncio.create_task(self._run_batch(fetched, batch, before)))
            results = await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            # a cancelled run (its driver going away) takes its batches with it: none may go
            # on writing, or end with an error nobody reads
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _run_batch(
        self, fetched: FetchedDocument, pages: list[int], chunks_before: dict[int, int]
    ) -> None:
        args = (self._workspace_id, fetched.document_id, fetched.gridfs_id, fetched.sha256, pages)
        try:
            batch = await self._parse_batch(args)
            await self._embed(fetched.document_id, pages, batch, chunks_before)
        except RayActorError:  # embed actors died under this batch EMBED_ATTEMPTS times
            error = DocumentError("embed", f"{pages_label(pages)}: the embed actor died")
            await self._document_failed(fetched.document_id, error)
            raise error from None
        except DocumentError as exc:  # fail now: no more batches of it are started
            await self._document_failed(fetched.document_id, exc)
            raise
        finally:
            self._in_flight.release()

    async def _parse_batch(self, args: tuple[Any, ...]) -> dict[str, list[Document]]:
        """Render (previews stored) and analyze a batch: its page and chunk documents, for
        the embed phase to store."""
        rendered = await self._timed("render", self._actors.render.call("render", *args))
        return await self._timed("analyze", self._actors.analyze.call("analyze", *args, rendered))

    async def _embed(
        self,
        document_id: str,
        pages: list[int],
        batch: dict[str, list[Document]],
        chunks_before: dict[int, int],
    ) -> None:
        """Embed and store a batch. An embed actor that dies under it (a crash, or its node
        lost) is not restarted by Ray, which would wait forever for a GPU node that is gone:
        the pool is made again for the cluster as it is now, and the batch sent again."""
        for attempt in range(1, EMBED_ATTEMPTS + 1):
            pool = await self._embed_pool_started()
            db = self._settings.mongodb_db
            args = (db, self._actors.aggregator, document_id, batch, chunks_before)
            try:
                await self._timed("embed", pool.call("embed", *args))
                return
            except RayActorError:
                if attempt == EMBED_ATTEMPTS:
                    raise
                reason = await self._replace_embed_pool(pool)
                self._actors.incidents.redo("embed", document_id, pages_label(pages), reason)

    async def _embed_pool_started(self) -> ActorPool:
        """The embed pool, once its actors answered. One that cannot start (a model that
        does not load) fails the run, not each document in turn: asked once per pool,
        shared by every batch."""
        if self._embed_ready is None:
            self._embed_ready = asyncio.ensure_future(self._describe_embed_pool())
        await asyncio.shield(self._embed_ready)
        return self._actors.embed

    async def _describe_embed_pool(self) -> None:
        """Ask the pool's actors; one that died after it started (killed, its process lost)
        is replaced, with the pool, a few times; one whose constructor raised fails the run."""
        for attempt in range(1, EMBED_ATTEMPTS + 1):
            pool = self._actors.embed
            try:
                described = await asyncio.gather(*(a.describe.remote() for a in pool.actors))
            except RayActorError as exc:
                if exc.actor_init_failed or attempt == EMBED_ATTEMPTS:
                    reason = failure_message(exc)
                    raise RunError("embed", f"the embed actors cannot start: {reason}") from None
                plan = plan_pools(*cluster_size())
                self._actors.embed = ActorPool(embed_pool(self._settings, plan), plan.embed_streams)
                continue
            self._embed_nodes.update(d["node"] for d in described)
            return

    async def _watch_nodes(self) -> None:
        """Ray declares a node dead after missed health checks; an actor of the run that
        was there may have no call to fail with it (the ontology actor, restarted by Ray
        where there is no room for it). A node gone since the run started is a node lost."""
        alive = alive_nodes()
        while True:
            await asyncio.sleep(NODE_CHECK_S)
            now = alive_nodes()
            for node in alive - now:
                self._actors.incidents.node_lost(node)
            alive = now

    def _node_lost(self, node_id: str) -> None:
        """A node of the run is gone: pools sized for what is left (see `_replan`), at once,
        so that the call that noticed it is sent again to the new ones."""
        self._replan()

    def _replan(self) -> None:
        """Pools sized for what is left: the actors of the old plan no longer fit (those on
        the lost node die, their replacements would wait for room the survivors hold). New
        parser actors take the place of the old ones (a call running ends first), a new
        embed pool that of the old one (its calls are sent again), and the ontology actor
        is the new plan's."""
        cpus, gpus = cluster_size()
        plan = plan_pools(cpus, gpus)
        logger.warning("a node was lost: pools planned again for %g CPUs and %g GPUs", cpus, gpus)
        if plan == self._plan:
            return
        self._plan = plan
        actors = self._actors
        spawners = parser_spawners(
            self._settings, plan, settings_hash(self._settings), actors.aggregator
        )
        for pool in (actors.fetch, actors.render, actors.analyze):
            pool.replan(*spawners[pool.phase])
        actors.embed = ActorPool(embed_pool(self._settings, plan), plan.embed_streams)
        self._embed_ready = None
        ray.kill(actors.ontology, no_restart=True)  # a build on it is sent to the new one
        actors.ontology = ontology_actor(self._settings, plan)

    async def _replace_embed_pool(self, failed: ActorPool) -> str:
        """A new embed pool for the cluster's resources now, unless another batch has made
        one already; says why ("node lost", "actor died")."""
        lost = [node for node in self._embed_nodes if not node_is_alive(node)]
        for node in lost:
            self._actors.incidents.node_lost(node)  # plans the pools again
        if lost:
            return "node lost"
        if self._actors.embed is not failed:
            return "re-planned"
        plan = plan_pools(*cluster_size())
        self._actors.embed = ActorPool(embed_pool(self._settings, plan), plan.embed_streams)
        self._embed_ready = None
        return "actor died"

    async def _timed(self, phase: str, call: Any) -> Any:
        self._clock.enter(phase)
        try:
            return await call
        finally:
            self._clock.leave(phase)

    async def _document_failed(self, document_id: str, exc: DocumentError) -> None:
        if document_id in self._failed:
            return
        self._failed[document_id] = exc.message
        await self._db.documents.update_one(
            {"_id": ObjectId(document_id)},
            {"$set": {"status": "failed", "error": exc.message, "failedPhase": exc.phase}},
        )
        self._actors.aggregator.document_failed.remote(document_id, exc.phase)

    async def _document_unchanged(self, fetched: FetchedDocument) -> None:
        """A skipped document keeps its last complete index, and so its status: `indexer
        add` of the same source set it `pending`, and `pageCount` counts only indexed and
        partial documents, while progress counts a skipped document's pages as done."""
        await self._db.documents.update_one(
            {"_id": ObjectId(fetched.document_id)}, {"$set": {"status": _status_of(fetched)}}
        )

    async def _document_indexed(self, fetched: FetchedDocument) -> None:
        await self._db.documents.update_one(
            {"_id": ObjectId(fetched.document_id)},
            {
                "$set": {
                    "status": _status_of(fetched),
                    "indexedSha256": fetched.sha256,
                    "indexedAt": datetime.now(UTC),
                }
            },
        )


def _status_of(fetched: FetchedDocument) -> str:
    """An indexed document's status: `partial` when its PDF was repaired or had pages that
    could not be read (the warning says which)."""
    return "partial" if fetched.warning else "indexed"


class RunDriver:
    """Runs indexing runs in this process, on the connected Ray cluster.

    What runs share stays open between them: the MongoDB client and, for a long-lived
    driver (`prepare=True`), the next run's frame, made ready while nothing runs: an
    aggregator whose worker is up, and the embed pool and ontology actor, answered (models
    loaded). Parser actors stay parked between runs, where any driver on the cluster can
    claim them (a handful of calls at the start of a run); `warm` keeps a set parked. A run
    of a few pages then waits for no process and no model.
    """

    def __init__(self, settings: Settings, *, prepare: bool = False) -> None:
        self._settings = settings
        self._prepare = prepare
        self._client = open_client(require_uri(settings))
        self._db = self._client[settings.mongodb_db]
        self._next: asyncio.Future[RunFrame] | None = None
        self._next_aggregator: asyncio.Future[Any] | None = None  # `_next`'s, ready sooner
        # Aggregators started runs further ahead: runs back to back then do not wait for
        # a worker process, which takes longer to start than a small run on a busy node.
        self._spare_aggregators: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._query_embedders: list[Any] = []  # embed actors' handles, for search queries
        self._queries = 0

    @property
    def db(self) -> AsyncDatabase[Document]:
        return self._db

    async def open(self) -> RunDriver:
        await ensure_indexes(self._db)  # the one-active-run rule lives in an index
        self._prepare_next()
        return self

    async def aclose(self) -> None:
        for future in (self._next, self._next_aggregator, *self._spare_aggregators):
            if future is None:
                continue
            future.cancel()
            with contextlib.suppress(asyncio.CancelledError, RayActorError, RunError):
                result = await future
                ray.kill(result.aggregator if isinstance(result, RunFrame) else result)
        self._next = self._next_aggregator = None
        self._spare_aggregators.clear()
        await self._client.close()

    async def __aenter__(self) -> RunDriver:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def warm(self) -> dict[str, Any]:
        """The next run's frame, ready (asked again: one that left is replaced), and a set
        of parser actors parked for it: touched where they are (they stay, and any driver
        may claim them meanwhile), topped up when some are missing. Returns what the embed
        actors report (device, arithmetic, threads)."""
        if self._next is None:
            self._prepare_next(force=True)
        assert self._next is not None
        try:
            frame = await asyncio.shield(self._next)  # a warm given up leaves it for a run
            described = await frame.ready()
        except (RayActorError, RunError):
            # an actor left: the next `warm` or run prepares afresh
            self._next = self._next_aggregator = None
            raise
        if keeps_parsers(self._settings):
            plan = frame.plan
            wanted = {"fetch": plan.fetch_actors, "render": plan.render_actors}
            wanted["analyze"] = plan.analyze_actors
            parked = await touch_parked(actor_key(self._settings, plan))
            if any(parked.get(phase, 0) < count for phase, count in wanted.items()):
                await self._park_parsers(frame)
        return described

    async def embed_query(self, text: str) -> list[float]:
        """A search query's vector from the embed pool (started when missing, as a run
        would), so queries and chunks share one model and one arithmetic."""
        try:
            return await self._encode_query(text)
        except RayActorError:  # the pool left (idle, or replaced): looked up again, once
            self._query_embedders = []
            return await self._encode_query(text)

    async def _encode_query(self, text: str) -> list[float]:
        """Handles on the pool are kept between queries; queries take its actors in turn."""
        if not self._query_embedders:
            self._query_embedders = embed_pool(self._settings, plan_pools(*cluster_size()))
        self._queries += 1
        actor = self._query_embedders[self._queries % len(self._query_embedders)]
        return list(await actor.encode_query.remote(text))

    async def _park_parsers(self, frame: RunFrame) -> None:
        """Claim (or start) the plan's parser actors with the frame's aggregator, wait for
        them, and park them again. One that cannot start in WARM_START_TIMEOUT_S (the
        cluster has no room: another driver holds parsers of its own) is not kept."""
        pools = await parser_pools(
            self._settings, frame.plan, settings_hash(self._settings), frame.aggregator
        )
        await asyncio.gather(*(p.keep_started(WARM_START_TIMEOUT_S) for p in pools))
        await release_parsers(*pools, park=True)

    async def run(
        self,
        workspace_id: str,
        *,
        job_id: str | None = None,
        on_start: Callable[[RunActors], None] | None = None,
    ) -> RunSummary:
        """Index a workspace; the `jobs` document records the run.

        Args:
            job_id: a job queued by `indexer submit` or the head; None creates one here.
            on_start: called with the run's actors once they exist (progress bars, tests).

        Raises:
            RunError: the workspace does not exist.
            RunAlreadyActiveError: another run of this workspace is going.
        """
        settings, db = self._settings, self._db
        if await find_workspace(db, workspace_id) is None:
            raise RunError("fetch", f"no workspace {workspace_id!r}")
        if job_id is None:
            job_id = await create_job(db, workspace_id, mode="local", requested_by="cli")
        documents = await workspace_documents(db, workspace_id)
        prepared, prepared_aggregator = self._next, self._next_aggregator
        self._next = self._next_aggregator = None
        aggregator = await self._run_aggregator(prepared_aggregator)
        # first: `index:started` goes out while the run takes its frame (still being
        # prepared when the last run just ended) and claims its parser actors. Not
        # awaited: pages need not wait for it (the aggregator holds updates back until it
        # is out)
        announced = aggregator.start.remote(workspace_id, len(documents))

        async def record(summary: RunSummary) -> bool:
            # the run ends the job itself: a beat after this would find it inactive and
            # take it for a cancel from elsewhere, cutting off the last event
            heartbeat.cancel()
            return await finish_job_patiently(db, job_id, summary.status, **_job_fields(summary))

        now = datetime.now(UTC)
        heartbeat = asyncio.create_task(_heartbeat(db, job_id, asyncio.current_task()))
        try:
            frame = await self._frame(prepared, aggregator)
            actors = await create_run_actors(settings, frame)
        except BaseException:
            heartbeat.cancel()
            ray.kill(aggregator)
            raise
        plan = frame.plan
        try:
            await update_job(
                db, job_id, status="running", startedAt=now, heartbeatAt=now, plan=asdict(plan)
            )
            delivery = DeliveryWatch(actors.aggregator)  # events reaching no head: said once
            if on_start is not None:
                on_start(actors)
            try:
                run = IndexRun(settings, workspace_id, db, actors, plan)
                summary = await run.execute(job_id, record, documents, announced)
                await update_job(db, job_id, events=summary.events)
            finally:
                await delivery.close()
        finally:
            heartbeat.cancel()
            await actors.release(settings)
            self._prepare_next()
        return summary

    async def _run_aggregator(self, prepared: asyncio.Future[Any] | None) -> Any:
        """The prepared frame's aggregator, which starts before the rest of the frame is
        ready; a new one when there is none or it could not start."""
        if prepared is not None:
            with contextlib.suppress(RayActorError):
                return await prepared
        return new_aggregator(self._settings)

    async def _frame(self, prepared: asyncio.Future[RunFrame] | None, aggregator: Any) -> RunFrame:
        """The prepared frame when it fits the cluster as it is now (a node may have come
        or gone since), else a new one around the run's `aggregator` (the one that
        announced the run)."""
        plan = plan_pools(*cluster_size())
        if prepared is not None:
            try:
                frame = await prepared
            except (RayActorError, RunError):
                pass  # one of its actors cannot start: a new frame says why, below
            else:
                if frame.plan == plan and frame.aggregator == aggregator:
                    return frame
        return await run_frame(self._settings, plan, aggregator)

    def _prepare_next(self, *, force: bool = False) -> None:
        if (self._prepare or force) and self._next is None:
            aggregator = self._take_aggregator()
            self._next_aggregator = aggregator
            self._next = asyncio.ensure_future(self._prepared(aggregator))

    def _take_aggregator(self) -> asyncio.Future[Any]:
        """The oldest spare aggregator; a long-lived driver keeps SPARE_AGGREGATORS more
        starting behind it."""
        if not self._prepare:
            return asyncio.ensure_future(self._started_aggregator())
        while len(self._spare_aggregators) <= SPARE_AGGREGATORS:
            self._spare_aggregators.append(asyncio.ensure_future(self._started_aggregator()))
        return self._spare_aggregators.popleft()

    async def _prepared(self, aggregator: asyncio.Future[Any]) -> RunFrame:
        frame = await run_frame(self._settings, plan_pools(*cluster_size()), await aggregator)
        await frame.ready()
        return frame

    async def _started_aggregator(self) -> Any:
        aggregator = new_aggregator(self._settings)
        await aggregator.ready.remote()
        return aggregator


async def run_index(
    settings: Settings,
    workspace_id: str,
    *,
    job_id: str | None = None,
    on_start: Callable[[RunActors], None] | None = None,
) -> RunSummary:
    """One run on a driver of its own (see `RunDriver.run`)."""
    async with RunDriver(settings) as driver:
        return await driver.run(workspace_id, job_id=job_id, on_start=on_start)


async def _heartbeat(
    db: AsyncDatabase[Document], job_id: str, run: asyncio.Task[Any] | None
) -> None:
    """Proof of life, so a run whose driver died can be told from a slow one. A job that
    ended meanwhile (cancelled through a head other than the one whose driver runs it)
    cancels the run."""
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        try:
            beat = await db.jobs.update_one(
                {"_id": ObjectId(job_id), "active": True},
                {"$set": {"heartbeatAt": datetime.now(UTC)}},
            )
        except PyMongoError:  # MongoDB away: the next beat makes up
            continue
        if beat.matched_count == 0 and run is not None:
            run.cancel()
            return


def _job_fields(summary: RunSummary) -> dict[str, Any]:
    return {
        "seconds": summary.seconds,
        "phaseSeconds": summary.phase_seconds,
        "error": summary.error,
        "counts": {
            "documents": summary.documents,
            "pages": summary.pages,
            "chunks": summary.chunks,
            "concepts": summary.concepts,
            "skipped": summary.skipped_documents,
        },
        "failedDocuments": [
            {"documentId": k, "error": v} for k, v in summary.failed_documents.items()
        ],
        "incidents": summary.incidents,
    }
