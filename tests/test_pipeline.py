"""The indexing pipeline end to end on a real local Ray, a real MongoDB-protocol server and
a real head, watched by a real Socket.IO client in the workspace room."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

import numpy as np
import pytest
import ray
from bson import ObjectId

from actors.layout import CHUNKS_PER_PAGE_LIMIT
from cluster.documents import add_document
from cluster.driver import RunActors, RunSummary, run_index
from cluster.ray_runtime import connect_ray
from core.concepts import build_concepts
from core.embedding import encode, load_model, resolve_precision
from core.events import PHASES
from core.workspaces import create_workspace
from tests.conftest import unstamped
from tests.pdf_fixtures import bad_pdfs, good_pdfs, repairable_pdf

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

GOOD_PAGES = [3, 5, 2]


@pytest.fixture(scope="module")
def local_ray() -> Any:
    connect_ray(None, num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("corpus")
    good = good_pdfs(folder, GOOD_PAGES)
    return {"good": good, "bad": bad_pdfs(folder, good[1])}


async def add_all(db: Any, workspace_id: str, corpus: dict[str, Any], settings: Any) -> None:
    for path in corpus["good"]:
        result = await add_document(
            db, workspace_id, str(path), max_bytes=settings.max_document_bytes
        )
        assert result.error is None
    for path in corpus["bad"].values():
        # file:// sources are read in the fetch phase, so bad bytes get that far
        result = await add_document(db, workspace_id, path.as_uri(), max_bytes=10**9)
        assert result.error is None


async def collect(
    client: Any, until: tuple[str, ...] = ("index:ready", "index:failed")
) -> list[tuple[str, Any]]:
    events = []
    while True:
        name, data = await client.next_event(timeout_s=300)
        events.append((name, data))
        if name in until:
            return events


async def test_index_end_to_end(
    local_ray, corpus, head, db, session_cookie, connect_client, expected_errors
) -> None:
    settings = head.settings
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    await add_all(db, workspace_id, corpus, settings)
    client = await connect_client(head.url, session_cookie("alice"))
    await client.join(workspace_id)

    started = time.monotonic()
    summary = await run_index(settings, workspace_id)
    elapsed = time.monotonic() - started
    events = await collect(client)

    pages_total = sum(GOOD_PAGES)
    assert summary.status == "succeeded", summary
    assert summary.pages == pages_total
    # event order: started first, exactly one terminal event last
    names = [name for name, _ in events]
    assert names[0] == "index:started"
    assert names[-1] == "index:ready"
    assert names.count("index:ready") + names.count("index:failed") == 1
    assert unstamped(events[-1][1]) == {"pageCount": pages_total}
    seqs = [data["seq"] for _, data in events]
    assert seqs == list(range(1, len(events) + 1)), "a missed or repeated seq"
    progress = [data for name, data in events if name == "index:progress"]
    assert progress, "no progress events"
    done = [p["pagesDone"] for p in progress]
    assert done == sorted(done), "pagesDone went down"
    for payload in progress:
        assert set(payload) >= {"phase", "docsDone", "docsTotal", "pagesDone", "pagesTotal"}
        assert payload["phase"] in PHASES
        assert payload["docsTotal"] == len(corpus["good"]) + len(corpus["bad"])
    assert progress[-1]["pagesDone"] == pages_total == progress[-1]["pagesTotal"]
    bound = math.ceil(pages_total / 10) + math.ceil(elapsed / 5) + len(PHASES) + 2
    assert len(progress) <= bound, (len(progress), bound)

    # MongoDB holds the same state the events announced
    workspace = await db.workspaces.find_one({})
    assert workspace["indexStatus"] == "ready"
    assert workspace["pageCount"] == pages_total
    assert workspace["indexProgress"]["pagesDone"] == pages_total

    await check_index(db, workspace_id, pages_total)
    await check_vectors_are_the_models(db, workspace_id, settings.embed_model)
    await check_failures(db, corpus)
    job = await db.jobs.find_one({"workspaceId": workspace_id})
    assert job["status"] == "succeeded"
    assert job["counts"]["pages"] == pages_total
    assert len(job["failedDocuments"]) == len(corpus["bad"])

    # a re-run skips every unchanged document and adds nothing
    before = await snapshot(db)
    again = await run_index(settings, workspace_id)
    assert again.status == "succeeded"
    assert again.skipped_documents == len(corpus["good"])
    assert again.pages == pages_total
    assert await snapshot(db) == before


async def statuses(db: Any, workspace_id: str) -> dict[str, str]:
    return {
        str(d["_id"]): d["status"] async for d in db.documents.find({"workspaceId": workspace_id})
    }


async def test_documents_added_again_unchanged_count_after_the_rerun(
    local_ray, corpus, settings, db, tmp_path
) -> None:
    """The demo's second run: `indexer add` of the same files sets them `pending`, the run
    skips them (same bytes, same settings), and they must still be what they were, in
    `pageCount` as in progress: the same numbers everywhere."""
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    sources = [*corpus["good"], repairable_pdf(tmp_path / "repaired.pdf")]
    pages_total = sum(GOOD_PAGES) + 1

    async def add_sources() -> None:
        for path in sources:
            assert (await add_document(db, workspace_id, str(path), max_bytes=10**9)).error is None

    await add_sources()
    assert (await run_index(settings, workspace_id)).status == "succeeded"
    indexed = await statuses(db, workspace_id)
    assert sorted(indexed.values()) == ["indexed"] * len(corpus["good"]) + ["partial"]
    await add_sources()
    assert set((await statuses(db, workspace_id)).values()) == {"pending"}

    again = await run_index(settings, workspace_id)

    assert again.status == "succeeded", again
    assert again.skipped_documents == len(sources)
    assert again.pages == pages_total
    assert await statuses(db, workspace_id) == indexed
    workspace = await db.workspaces.find_one({"_id": ObjectId(workspace_id)})
    progress = workspace["indexProgress"]
    assert (workspace["indexStatus"], workspace["pageCount"]) == ("ready", pages_total)
    assert (progress["pagesDone"], progress["pagesTotal"]) == (pages_total, pages_total)
    assert (progress["docsDone"], progress["docsTotal"]) == (len(sources), len(sources))


async def test_a_document_fetched_with_other_settings_is_not_skipped_next(
    local_ray, corpus, settings, db
) -> None:
    """A run with other settings fetched a document and stopped there (its driver died):
    the document's last complete index is of the old settings, so the next run with the new
    ones indexes it instead of skipping it as unchanged."""
    from actors.fetch import FetchActor
    from cluster.driver import settings_hash

    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    await add_document(db, workspace_id, str(corpus["good"][2]), max_bytes=10**9)
    assert (await run_index(settings, workspace_id)).status == "succeeded"
    other = settings.with_overrides(render_dpi=96)
    fetcher = FetchActor.remote(other, settings_hash(other), None)
    try:
        fetched = await fetcher.fetch.remote(await db.documents.find_one({}))
    finally:
        ray.kill(fetcher)
    assert not fetched.skipped

    again = await run_index(other, workspace_id)

    assert again.status == "succeeded", again
    assert again.skipped_documents == 0
    pages = await db.pages.find({"workspaceId": workspace_id}).to_list()
    assert len(pages) == GOOD_PAGES[2]
    assert all(page["done"] and page["image"]["dpi"] == 96 for page in pages)
    workspace = await db.workspaces.find_one({"_id": ObjectId(workspace_id)})
    assert workspace["pageCount"] == GOOD_PAGES[2]


async def test_events_that_reach_no_head_are_said_once(
    local_ray, corpus, settings, db, caplog
) -> None:
    """`indexer head --port 4100`, then a run without HEAD_URL: it publishes to another
    port, where nothing answers (here: the test's free port, no head started). The run says
    so in one warning naming HEAD_URL, not once per event, and goes on."""
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    await add_document(db, workspace_id, str(corpus["good"][0]), max_bytes=10**9)
    caplog.set_level(logging.WARNING)

    summary = await run_index(settings, workspace_id)

    assert summary.status == "succeeded", summary
    assert summary.events == {}, "an event was delivered with no head to take it"
    said = [r.getMessage() for r in caplog.records if "reach no head" in r.getMessage()]
    assert len(said) == 1, said
    assert f"HEAD_URL={settings.head_url}" in said[0]
    assert "Set HEAD_URL to the head's address" in said[0]
    for secret in (settings.nextauth_secret, settings.effective_publish_token()):
        assert secret.reveal() not in said[0]
    workspace = await db.workspaces.find_one({"_id": ObjectId(workspace_id)})
    assert (workspace["indexStatus"], workspace["pageCount"]) == ("ready", GOOD_PAGES[0])


async def test_a_run_into_a_log_ends_with_its_last_line(
    local_ray, corpus, settings, db, capfd
) -> None:
    """`indexer index` with its terminal output going to a log (not a TTY): plain lines,
    and the last one says where the run ended, 100% of its pages."""
    from cluster.run import index_with_progress

    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    for path in corpus["good"]:
        await add_document(db, workspace_id, str(path), max_bytes=10**9)
    pages = sum(GOOD_PAGES)

    # in a thread: it runs its own event loop, as the CLI does
    summary = await asyncio.to_thread(index_with_progress, settings, workspace_id, None)

    assert summary.status == "succeeded", summary
    err = capfd.readouterr().err
    assert "\r" not in err, "a carriage return in a log"
    lines = [line for line in err.splitlines() if " pages [" in line]
    assert lines, err
    assert lines[-1].startswith("ready"), lines
    assert "100%|" in lines[-1]
    assert f"| {pages}/{pages} pages" in lines[-1]


async def check_index(db: Any, workspace_id: str, pages_total: int) -> None:
    pages = await db.pages.find({"workspaceId": workspace_id}).to_list()
    assert len(pages) == pages_total
    for page in pages:
        assert page["done"] is True
        assert page["text"].strip()
        assert page["blocks"]
        assert page["headings"]
        assert page["image"]["width"] > 0
    chunks = await db.chunks.find({"workspaceId": workspace_id}).to_list()
    assert chunks
    keys = {(c["documentId"], c["chunkNo"]) for c in chunks}
    assert len(keys) == len(chunks)
    for chunk in chunks:
        vector = np.array(chunk["embedding"].as_vector().data, dtype=np.float32)
        assert vector.shape == (384,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    concepts = await db.concepts.find({"workspaceId": workspace_id}).to_list()
    assert concepts
    assert all(c["chunkCount"] >= 2 for c in concepts)
    # built while the last pages embedded: it must still have seen every chunk's text
    expected = build_concepts((c["documentId"], c["chunkNo"], c["text"]) for c in chunks)
    assert sorted((c["conceptId"], c["chunkCount"]) for c in concepts) == sorted(
        (c.concept_id, len(c.chunk_refs)) for c in expected
    )


async def check_vectors_are_the_models(db: Any, workspace_id: str, model_name: str) -> None:
    """Each stored vector is the model's vector for its own chunk's text: the embed actor's
    streams encode batches side by side, and none may swap or mix them."""
    chunks = await db.chunks.find({"workspaceId": workspace_id}).to_list()
    stored = np.array([c["embedding"].as_vector().data for c in chunks], dtype=np.float32)
    texts = [c["text"] for c in chunks]
    # in a thread: the test's Socket.IO client must keep answering pings meanwhile
    expected = await asyncio.to_thread(lambda: encode(load_model(model_name, "cpu"), texts))
    similarity = np.sum(stored * expected, axis=1)
    assert similarity.min() > 0.9999, sorted(similarity)[:3]


async def check_failures(db: Any, corpus: dict[str, Any]) -> None:
    for kind, path in corpus["bad"].items():
        document = await db.documents.find_one({"source": path.as_uri()})
        assert document["status"] == "failed", (kind, document)
        assert document["error"].startswith(kind), (kind, document["error"])
        assert await db.pages.count_documents({"documentId": str(document["_id"])}) == 0


async def snapshot(db: Any) -> dict[str, Any]:
    pages = sorted(
        (p["documentId"], p["pageNo"], p["text"]) for p in await db.pages.find().to_list()
    )
    chunks = sorted(
        (c["documentId"], c["chunkNo"], bytes(c["embedding"]))
        for c in await db.chunks.find().to_list()
    )
    concepts = sorted(
        (c["conceptId"], c["chunkCount"], str(c["edges"]))
        for c in await db.concepts.find().to_list()
    )
    page_files = await db["pages.files"].count_documents({})
    return {"pages": pages, "chunks": chunks, "concepts": concepts, "pageFiles": page_files}


async def test_identical_text_identical_vectors(local_ray, corpus, settings, db) -> None:
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    source = corpus["good"][0]
    await add_document(db, workspace_id, str(source), max_bytes=10**9)
    await add_document(db, workspace_id, source.as_uri(), max_bytes=10**9)
    summary = await run_index(settings, workspace_id)
    assert summary.status == "succeeded"
    chunks = await db.chunks.find({}).sort([("chunkNo", 1)]).to_list()
    by_doc: dict[str, list[bytes]] = {}
    for chunk in chunks:
        by_doc.setdefault(chunk["documentId"], []).append(bytes(chunk["embedding"]))
    first, second = by_doc.values()
    assert first == second


async def test_killed_actor_still_gives_complete_index(local_ray, corpus, settings, db) -> None:
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    for path in corpus["good"]:
        await add_document(db, workspace_id, str(path), max_bytes=10**9)
    killed: list[str] = []

    def kill_when_started(actors: RunActors) -> None:
        # kill one of each per-page phase while the run is going: Ray restarts and retries
        for pool in (actors.render, actors.analyze, actors.embed):
            ray.kill(pool.actors[0], no_restart=False)
            killed.append(type(pool.actors[0]).__name__)

    summary: RunSummary = await run_index(settings, workspace_id, on_start=kill_when_started)
    assert killed
    assert summary.status == "succeeded", summary
    assert summary.pages == sum(GOOD_PAGES)
    pages = await db.pages.find({"workspaceId": workspace_id}).to_list()
    assert len(pages) == sum(GOOD_PAGES)
    assert all(p["done"] for p in pages)
    chunks = await db.chunks.find({"workspaceId": workspace_id}).to_list()
    assert all("embedding" in c for c in chunks)
    assert len({(c["documentId"], c["chunkNo"]) for c in chunks}) == len(chunks)
    # each page's preview stored once: in its page document, or (a large one) in GridFS
    assert all(("png" in p["image"]) != ("fileId" in p["image"]) for p in pages)
    in_gridfs = sum("fileId" in p["image"] for p in pages)
    assert await db["pages.files"].count_documents({}) == in_gridfs


async def test_real_world_pdf_from_debian(local_ray, settings, db, tmp_path) -> None:
    """The gnuplot manual (Debian's gnuplot-doc): real fonts, headings, a table of contents."""
    from tests.pdf_fixtures import debian_manual

    excerpt = debian_manual(tmp_path, pages=8)
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    assert (await add_document(db, workspace_id, str(excerpt), max_bytes=10**9)).error is None
    summary = await run_index(settings, workspace_id)
    assert summary.status == "succeeded", summary
    assert summary.pages == 8
    pages = await db.pages.find({"workspaceId": workspace_id}).sort("pageNo").to_list()
    assert all(page["done"] for page in pages)
    text = " ".join(page["text"] for page in pages)
    assert "gnuplot" in text.lower()
    assert sum(len(page["headings"]) for page in pages) > 0
    assert await db.chunks.count_documents({"workspaceId": workspace_id}) >= 8
    labels = {c["label"] async for c in db.concepts.find({"workspaceId": workspace_id})}
    assert labels


async def test_rerun_after_a_crash_resumes(local_ray, settings, db, tmp_path) -> None:
    """The driver dies mid-run: its job expires when the lease runs out, and the next run
    redoes none of the pages that were done."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    # enough pages that the run is still going when the poll below sees its fourth page
    # done: a warm pipeline finishes the 10 pages of the shared corpus within one poll
    page_counts = [*GOOD_PAGES, 48]
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    for path in good_pdfs(tmp_path, page_counts):
        await add_document(db, workspace_id, str(path), max_bytes=10**9)
    crashed = asyncio.create_task(run_index(settings, workspace_id))
    while await db.pages.count_documents({"done": True}) < 4:
        assert not crashed.done()
        await asyncio.sleep(0.2)
    crashed.cancel()  # the driver dies; its actors die with it
    with contextlib.suppress(asyncio.CancelledError):
        await crashed
    done_before = {
        (p["documentId"], p["pageNo"]): p["renderedAt"] async for p in db.pages.find({"done": True})
    }
    job = await db.jobs.find_one({"workspaceId": workspace_id})
    assert job["status"] == "running"
    # time passes: three heartbeats are missed
    await db.jobs.update_one(
        {"_id": job["_id"]}, {"$set": {"heartbeatAt": datetime.now(UTC) - timedelta(minutes=1)}}
    )
    summary = await run_index(settings, workspace_id)
    assert summary.status == "succeeded"
    assert summary.pages == sum(page_counts)
    expired = await db.jobs.find_one({"_id": job["_id"]})
    assert expired["status"] == "failed"
    assert "lease expired" in expired["error"]
    for key, rendered_at in done_before.items():
        page = await db.pages.find_one({"documentId": key[0], "pageNo": key[1]})
        assert page["renderedAt"] == rendered_at, "a page done before the crash was redone"
    assert await db.pages.count_documents({"done": True}) == sum(page_counts)


async def test_changed_settings_redo_the_pages(local_ray, corpus, settings, db) -> None:
    """Same bytes, another DPI: nothing is skipped or kept from the old settings."""
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    await add_document(db, workspace_id, str(corpus["good"][2]), max_bytes=10**9)
    assert (await run_index(settings, workspace_id)).status == "succeeded"
    again = await run_index(settings.with_overrides(render_dpi=96), workspace_id)
    assert again.status == "succeeded"
    assert again.skipped_documents == 0
    pages = await db.pages.find({"workspaceId": workspace_id}).to_list()
    assert len(pages) == GOOD_PAGES[2]
    assert all(page["done"] and page["image"]["dpi"] == 96 for page in pages)


async def test_a_redone_page_leaves_no_chunk_past_its_last(local_ray, corpus, settings, db) -> None:
    """A page analysed again (its run stopped before it was done) deletes that page's chunks
    past its new last one, as an older chunking that cut more would have left, and nothing
    of another page or document."""
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    added = await add_document(db, workspace_id, str(corpus["good"][1]), max_bytes=10**9)
    assert (await run_index(settings, workspace_id)).status == "succeeded"
    document = await db.documents.find_one({"_id": ObjectId(added.document_id)})
    stale_chunk_no = 1 * CHUNKS_PER_PAGE_LIMIT + 999  # page 2's 1,000th chunk
    for owner, chunk_no in (
        (added.document_id, stale_chunk_no),
        (added.document_id, 2 * CHUNKS_PER_PAGE_LIMIT + 999),  # page 3: done, not redone
        ("another-document", stale_chunk_no),
    ):
        await db.chunks.insert_one(
            {"documentId": owner, "chunkNo": chunk_no, "sha256": document["sha256"], "text": "x"}
        )
    # the run stopped after page 2 was analysed (by an older chunking: 1,000 chunks),
    # before it was embedded
    await db.pages.update_one(
        {"documentId": added.document_id, "pageNo": 1},
        {"$set": {"done": False, "chunkCount": 1000}},
    )
    await db.documents.update_one({"_id": document["_id"]}, {"$unset": {"indexedSha256": ""}})

    again = await run_index(settings, workspace_id)

    assert again.status == "succeeded"
    assert again.skipped_documents == 0
    left = {(c["documentId"], c["chunkNo"]) async for c in db.chunks.find({"text": "x"})}
    assert left == {
        (added.document_id, 2 * CHUNKS_PER_PAGE_LIMIT + 999),
        ("another-document", stale_chunk_no),
    }


async def test_embed_pool_outlives_runs_and_leaves_when_idle(
    local_ray, corpus, settings, db
) -> None:
    """The model loads once per cluster, in one actor running an encode stream per core: a
    run in another database reuses the pool's actor (and writes to its own database); other
    embed settings (here the idle time and the arithmetic) replace the pool; idle, it exits."""
    from actors.embed_pool import pool_actor_names

    embed_pids: list[int] = []
    precisions: list[str] = []

    def watch(actors: RunActors) -> None:
        [actor] = actors.embed.actors
        described = ray.get(actor.describe.remote())
        # on 2 CPUs: one process, a single-threaded encode stream per core
        assert (described["streams"], described["threads"]) == (2, 1), described
        # glibc keeps the activations' memory for the next batch (actors/allocator.py)
        assert described["keepsFreedMemory"] is True, described
        embed_pids.append(described["pid"])
        precisions.append(described["precision"])

    async def index_one(run_settings: Any, database: Any) -> str:
        workspace_id = str(
            await create_workspace(database, name="W", owner_id="alice", member_ids=[])
        )
        await add_document(database, workspace_id, str(corpus["good"][2]), max_bytes=10**9)
        summary = await run_index(run_settings, workspace_id, on_start=watch)
        assert summary.status == "succeeded", summary
        return workspace_id

    await index_one(settings, db)
    other_db = db.client[f"{settings.mongodb_db}_other"]
    other_workspace = await index_one(settings.with_overrides(mongodb_db=other_db.name), other_db)
    assert embed_pids[0] == embed_pids[1]
    other_chunks = await other_db.chunks.find({"workspaceId": other_workspace}).to_list()
    assert other_chunks
    assert all("embedding" in chunk for chunk in other_chunks)
    assert await db.chunks.count_documents({"workspaceId": other_workspace}) == 0

    before = set(pool_actor_names())
    await index_one(settings.with_overrides(embed_idle_s=1, embed_precision="float32"), db)
    assert embed_pids[2] != embed_pids[0]
    # the setting reaches the actors: "auto" as this CPU resolves it, then float32
    assert precisions == [resolve_precision("auto", "cpu")] * 2 + ["float32"]
    assert not before & set(pool_actor_names()), "the old pool still holds its CPU"
    deadline = time.monotonic() + 60
    while pool_actor_names():
        assert time.monotonic() < deadline, "the idle pool never left"
        await asyncio.sleep(0.5)
    await db.client.drop_database(other_db.name)


def parser_names(prefix: str = "parser-") -> set[str]:
    return {
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["name"].startswith(prefix)
    }


async def pids(actors: list[Any]) -> list[int]:
    answers = await asyncio.gather(*(actor.ready.remote() for actor in actors))
    return sorted(where["pid"] for where in answers)


async def test_parser_actors_are_parked_for_the_next_run(local_ray, corpus, settings, db) -> None:
    """A run parks its parser actors and the next run with the same settings claims them
    (no process started); their documents count towards recycling across runs; a run with
    other settings removes them; parked and idle, they leave."""
    runs: list[RunActors] = []
    handles: list[dict[str, list[Any]]] = []  # each run's parser actors when it started

    def pools(run: RunActors) -> list[Any]:
        return [run.fetch, run.render, run.analyze]

    def started(run: RunActors) -> None:
        runs.append(run)
        handles.append({pool.phase: list(pool.actors) for pool in pools(run)})

    async def index_one(run_settings: Any) -> None:
        workspace_id = str(await create_workspace(db, name="W", owner_id="a", member_ids=[]))
        await add_document(db, workspace_id, str(corpus["good"][2]), max_bytes=10**9)
        summary = await run_index(run_settings, workspace_id, on_start=started)
        assert summary.status == "succeeded", summary

    async def first_pids() -> dict[str, list[int]]:
        """The pids of the last run's parser actors when it started (parked now)."""
        return {phase: await pids(actors) for phase, actors in handles[-1].items()}

    await index_one(settings)
    first = await first_pids()
    kept = parser_names()
    assert len(kept) == 3
    assert len(parser_names("ontology-")) == 1
    await index_one(settings)
    assert await first_pids() == first, "the next run started new parser actors"

    other = settings.with_overrides(render_dpi=96)  # the actors are built with it
    await index_one(other)  # other settings: the others' parked actors go
    assert not kept & parser_names()
    third = await first_pids()
    assert all(not set(third[phase]) & set(first[phase]) for phase in third)
    assert not any(pool.recycles for pool in pools(runs[2]))
    # a limit the driver enforces: the same actors serve, and count what they parsed
    await index_one(other.with_overrides(parser_recycle_documents=1))
    for pool in pools(runs[3]):
        # the claimed actor had parsed one document: a limit of 1 retires it at once
        assert [r.reason for r in pool.recycles] == ["documents"], pool.phase
        assert pool.started == 2, pool.phase  # the claimed one and its replacement

    await index_one(settings.with_overrides(parser_idle_s=1))
    deadline = time.monotonic() + 60
    while parser_names() or parser_names("ontology-"):
        assert time.monotonic() < deadline, "parked actors never left"
        await asyncio.sleep(0.5)


async def test_a_parser_actor_whose_run_is_gone_leaves(local_ray, settings) -> None:
    """Parser actors are detached (they may be parked), so one whose driver was killed must
    leave on its own, long before INDEXER_PARSER_IDLE_S (600 s here): idle, it asks its
    run's aggregator every few seconds, and goes when that is gone."""
    from actors.lifecycle.names import actor_key
    from actors.lifecycle.parking import spawn_options
    from actors.pool import plan_pools
    from actors.progress import ProgressAggregator
    from actors.render import RenderActor

    assert settings.parser_idle_s == 600
    aggregator = ProgressAggregator.remote(settings)
    options = spawn_options(actor_key(settings, plan_pools(2, 0)), "render")
    actor = RenderActor.options(num_cpus=0.25, **options).remote(settings, aggregator)
    await asyncio.wait_for(actor.ready.remote(), 120)  # pending forever when no CPU is left
    assert options["name"] in parser_names()
    assert await actor.claim.remote(aggregator) is None  # owned: nobody else may claim it

    ray.kill(aggregator)
    deadline = time.monotonic() + 30
    while options["name"] in parser_names():
        assert time.monotonic() < deadline, "the orphaned actor never left"
        await asyncio.sleep(0.5)


async def test_an_embed_model_that_cannot_load_fails_the_run(
    local_ray, corpus, settings, db, tmp_path
) -> None:
    """A model that does not load fails the run once, with the reason, and blames no
    document: the driver asks the embed pool once for all batches."""
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    await add_document(db, workspace_id, str(corpus["good"][0]), max_bytes=10**9)
    missing_model = str(tmp_path / "no-such-model")
    summary = await run_index(settings.with_overrides(embed_model=missing_model), workspace_id)
    assert summary.status == "failed", summary
    assert summary.error is not None
    assert "the embed actors cannot start" in summary.error
    assert summary.failed_documents == {}
    workspace = await db.workspaces.find_one({"_id": ObjectId(workspace_id)})
    assert workspace["indexStatus"] == "failed"
    assert (
        await db.chunks.count_documents(
            {"workspaceId": workspace_id, "embedding": {"$exists": True}}
        )
        == 0
    )
