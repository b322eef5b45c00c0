"""Faults during a run, for real: the head SIGKILLed mid-run, the MongoDB server SIGKILLed
mid-run and restarted on its port. Real local Ray, real SecantusDB, real heads, real
Socket.IO clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import ray
import socketio
from pymongo import MongoClient

from cluster.documents import add_document
from cluster.driver import RunActors, run_index
from cluster.ray_runtime import connect_ray
from core.db import ensure_indexes, open_client
from core.embedded_mongo import EmbeddedMongo
from core.events import PHASES
from core.settings import Secret
from core.workspaces import create_workspace
from tests.conftest import unstamped, wait_until
from tests.pdf_fixtures import good_pdfs

PAGES = [4, 4, 4]
RUN_TIMEOUT_S = 240.0
EMBEDDING_DIMENSIONS = 384


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    connect_ray(None, num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return good_pdfs(tmp_path_factory.mktemp("faults-corpus"), PAGES)


async def poll(
    condition: Any, timeout_s: float, what: str | Callable[[], str], interval_s: float = 0.1
) -> None:
    """Await an async condition until it holds; fail naming `what` (a string, or a function
    describing the state at that moment) when it never does."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what if isinstance(what, str) else what()}")
        await asyncio.sleep(interval_s)


async def workspace_with_pdfs(db: Any, pdfs: list[Path]) -> str:
    await ensure_indexes(db)
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    for path in pdfs:
        assert (await add_document(db, workspace_id, str(path), max_bytes=10**9)).error is None
    return workspace_id


# -- MongoDB checks ------------------------------------------------------------------------


async def check_consistent(db: Any, workspace_id: str) -> None:
    """Nothing half-written: no duplicate page or chunk, no chunk without its page, and every
    page marked done has all its chunks, each with its vector."""
    pages = await db.pages.find({"workspaceId": workspace_id}).to_list()
    page_keys = [(p["documentId"], p["pageNo"]) for p in pages]
    assert len(set(page_keys)) == len(page_keys), "a duplicate (document, pageNo)"
    chunks = await db.chunks.find({"workspaceId": workspace_id}).to_list()
    chunk_keys = [(c["documentId"], c["chunkNo"]) for c in chunks]
    assert len(set(chunk_keys)) == len(chunk_keys), "a duplicate (document, chunkNo)"
    by_page: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for chunk in chunks:
        by_page.setdefault((chunk["documentId"], chunk["pageNo"]), []).append(chunk)
    orphans = set(by_page) - set(page_keys)
    assert not orphans, f"chunks without their page: {sorted(orphans)}"
    for page in pages:
        if not page.get("done"):
            continue
        own = by_page.get((page["documentId"], page["pageNo"]), [])
        assert len(own) == page["chunkCount"], ("a done page misses chunks", page["pageNo"])
        for chunk in own:
            assert "embedding" in chunk, ("a done page has a chunk without vector", chunk)


async def check_complete(db: Any, workspace_id: str, pages_total: int) -> None:
    """The full, correct index: every page done, every chunk with a unit 384-dim vector."""
    await check_consistent(db, workspace_id)
    pages = await db.pages.find({"workspaceId": workspace_id}).to_list()
    assert len(pages) == pages_total
    assert all(p["done"] is True and p["text"].strip() for p in pages)
    chunks = await db.chunks.find({"workspaceId": workspace_id}).to_list()
    assert len(chunks) >= pages_total
    assert sum(p["chunkCount"] for p in pages) == len(chunks)
    for chunk in chunks:
        vector = np.array(chunk["embedding"].as_vector().data, dtype=np.float32)
        assert vector.shape == (EMBEDDING_DIMENSIONS,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    workspace = await db.workspaces.find_one({})
    assert workspace["indexStatus"] == "ready"
    assert workspace["pageCount"] == pages_total
    assert workspace["indexProgress"]["pagesDone"] == pages_total
    documents = await db.documents.find({"workspaceId": workspace_id}).to_list()
    assert {d["status"] for d in documents} == {"indexed"}


# -- a browser's progress page, with python-socketio -----------------------------------------


class ReconnectingWatcher:
    """What the progress page does: reconnect by itself, join again with `since` on every
    connect, take the snapshot, replay `missed` (or refetch), apply live events once."""

    def __init__(self, url: str, cookie: str, workspace_id: str) -> None:
        self.url = url
        self.cookie = cookie
        self.workspace_id = workspace_id
        self.client = socketio.AsyncClient(
            reconnection=True,
            reconnection_attempts=0,
            reconnection_delay=0.2,
            reconnection_delay_max=0.5,
            randomization_factor=0,
        )
        self.state: dict[str, Any] = {}
        self.position: dict[str, Any] | None = None
        self.connects = 0
        self.joins: list[dict[str, Any]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.client.on("connect", self._on_connect)
        self.client.on("workspace:joined", self._on_joined)
        for event in ("index:started", "index:progress", "index:ready", "index:failed"):
            self.client.on(event, self._handler(event))

    async def connect(self) -> None:
        # a callable: engine.io moves the Cookie header into its jar and deletes it from the
        # dict it was given, so reconnections with that same dict would carry no cookie
        await self.client.connect(
            self.url,
            headers=lambda: {"Cookie": self.cookie},
            transports=["websocket"],
            wait_timeout=10,
        )

    async def _on_connect(self) -> None:
        self.connects += 1
        request: dict[str, Any] = {"workspaceId": self.workspace_id}
        if self.position is not None:
            request["since"] = self.position
        await self.client.emit("workspace:join", request)

    async def _on_joined(self, data: dict[str, Any]) -> None:
        self.joins.append(data)
        snapshot = data["snapshot"]
        # the snapshot is MongoDB's state; replayed events are newer
        self.state = {
            "indexStatus": snapshot["indexStatus"],
            "indexProgress": snapshot["indexProgress"],
            "pageCount": snapshot["pageCount"],
        }
        self.position = {"epoch": data["epoch"], "seq": data["seq"]} if data["epoch"] else None
        for missed in data["missed"]:
            self._apply(missed["event"], missed["data"])

    def _handler(self, event: str) -> Any:
        async def handle(data: dict[str, Any]) -> None:
            position = self.position
            seen = (
                position is not None
                and data.get("epoch") == position["epoch"]
                and data["seq"] <= position["seq"]
            )
            if seen:
                return  # already applied (replayed on join)
            self._apply(event, data)
            if data.get("epoch"):
                self.position = {"epoch": data["epoch"], "seq": data["seq"]}

        return handle

    def _apply(self, event: str, data: dict[str, Any]) -> None:
        self.events.append((event, data))
        payload = unstamped(data)
        if event == "index:started":
            self.state["indexStatus"] = "indexing"
        elif event == "index:progress":
            self.state["indexStatus"] = "indexing"
            self.state["indexProgress"] = payload
        elif event == "index:ready":
            self.state["indexStatus"] = "ready"
            self.state["pageCount"] = payload["pageCount"]
        elif event == "index:failed":
            self.state["indexStatus"] = "failed"
            self.state["error"] = payload["error"]

    def describe(self) -> str:
        return (
            f"state {self.state}, {self.connects} connects, joins "
            f"{[(j['epoch'], j['seq'], j['refetch']) for j in self.joins]}, "
            f"events {[(e, d.get('seq')) for e, d in self.events]}"
        )

    async def close(self) -> None:
        await self.client.disconnect()


def port_refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


# -- 1. the head is SIGKILLed mid-run ---------------------------------------------------------


@pytest.mark.slow
async def test_head_killed_mid_run(
    local_ray, pdfs, settings, db, head_processes, session_cookie, connect_client
) -> None:
    """The head is SIGKILLed mid-run. The run goes on (actors never wait on the aggregator,
    the aggregator never waits on a dead head) and MongoDB gets the whole index; the head
    started again on its port (HEAD_URL is the only address a run knows, so that is what an
    operator or a supervisor does) gets the rest of the run's events and serves the right
    state; a browser that reconnects by itself ends in the final state."""
    pages_total = sum(PAGES)
    workspace_id = await workspace_with_pdfs(db, pdfs)
    head = head_processes(settings)
    cookie = session_cookie("alice")
    watcher = ReconnectingWatcher(head.url, cookie, workspace_id)
    await watcher.connect()
    await poll(lambda: _true(watcher.joins), 10, "workspace:joined")

    def pages_known() -> bool:
        return any(e == "index:progress" and d["pagesTotal"] > 0 for e, d in watcher.events)

    actors: list[RunActors] = []
    run = asyncio.create_task(run_index(settings, workspace_id, on_start=actors.append))
    try:
        # mid-run: the head has delivered progress, pages are known, few are done
        await poll(lambda: _running_and(run, pages_known()), RUN_TIMEOUT_S, "pages to be known")
        head.kill()
        killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
        done_at_kill = await db.pages.count_documents({"done": True})
        assert done_at_kill < pages_total
        await poll(lambda: _false(watcher.client.connected), 10, "the socket to drop")

        # no head: the aggregator still answers at once, workers finish pages, and the
        # aggregator keeps writing progress to MongoDB (its events go nowhere meanwhile)
        asked = time.monotonic()
        await asyncio.wait_for(actors[0].aggregator.snapshot.remote(), 5)
        assert time.monotonic() - asked < 2, "the aggregator is blocked"

        async def going_on_without_head() -> bool:
            workspace = await db.workspaces.find_one({})
            done = await db.pages.count_documents({"done": True})
            return done > done_at_kill and workspace["indexProgress"]["updatedAt"] > killed_wall

        await poll(going_on_without_head, RUN_TIMEOUT_S, "the run to go on without a head")
        head_down_s = time.monotonic() - killed_at
        # the operator (or a supervisor) starts the head again, on its port
        await asyncio.to_thread(head_processes, settings)
        back_while_running = not run.done()
        summary = await asyncio.wait_for(run, RUN_TIMEOUT_S)
    finally:
        await cancelled(run)
    assert summary.status == "succeeded", summary
    assert summary.pages == pages_total

    # the browser reconnected by itself and ends in the final state
    await poll(
        lambda: _true(watcher.state.get("indexStatus") == "ready"),
        30,
        lambda: f"the watcher to be ready: {watcher.describe()}",
    )
    rejoin = watcher.joins[-1]
    print(
        f"\nhead down {head_down_s:.1f}s, back while the run went on: {back_while_running}; "
        f"run {summary.seconds:.1f}s; rejoined with {rejoin['snapshot']['indexStatus']}"
    )
    assert watcher.connects == 2
    assert rejoin["refetch"] is True, "a new head cannot replay the old head's events"
    if rejoin["snapshot"]["indexStatus"] != "ready":
        # it came back mid-run: the rest of the run reached it live, through the new head
        name, data = watcher.events[-1]
        assert name == "index:ready"
        assert data["epoch"] == rejoin["epoch"]
        assert data["seq"] > rejoin["seq"]
    assert watcher.state["pageCount"] == pages_total
    assert watcher.state["indexProgress"]["pagesDone"] == pages_total
    assert watcher.state["indexProgress"]["pagesTotal"] == pages_total
    await watcher.close()

    # the new head serves MongoDB's state: to a browser joining now, and over REST
    newcomer = await connect_client(head.url, cookie)
    snapshot = (await newcomer.join(workspace_id))["snapshot"]
    assert snapshot["indexStatus"] == "ready"
    assert snapshot["pageCount"] == pages_total
    async with httpx.AsyncClient(base_url=head.url, headers={"Cookie": cookie}) as http:
        response = await http.get(f"/api/workspaces/{workspace_id}")
    assert response.status_code == 200
    state = response.json()
    assert state["indexStatus"] == "ready"
    assert state["pageCount"] == pages_total
    assert state["indexProgress"]["pagesDone"] == pages_total
    assert state["indexProgress"]["pagesTotal"] == pages_total
    assert state["failedDocuments"] == []

    await check_complete(db, workspace_id, pages_total)
    job = await db.jobs.find_one({"workspaceId": workspace_id})
    assert job["status"] == "succeeded"
    assert job["counts"]["pages"] == pages_total


async def cancelled(run: asyncio.Task[Any]) -> None:
    """Cancel a run a failed test left going, and let its cleanup finish inside the test."""
    if not run.done():
        run.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await run


async def _running_and(run: asyncio.Task[Any], condition: bool) -> bool:
    if run.done():
        raise AssertionError(f"the run ended before the fault: {run.result()}")
    return condition


async def _true(value: Any) -> bool:
    return bool(value)


async def _false(value: Any) -> bool:
    return not value


async def _done_pages_at_least(db: Any, workspace_id: str, count: int, run: Any) -> bool:
    done = await db.pages.count_documents({"workspaceId": workspace_id, "done": True})
    return await _running_and(run, done >= count)


# -- 2. the MongoDB server is SIGKILLed mid-run and restarted on its port -------------------


@pytest.fixture
def disk_mongo(tmp_path: Path) -> Iterator[EmbeddedMongo]:
    """SecantusDB storing on disk with durable writes, as the embedded default runs it."""
    with EmbeddedMongo(tmp_path / "mongo") as server:
        yield server


async def collect_until_terminal(watcher: Any, timeout_s: float) -> list[tuple[str, Any]]:
    events = []
    while True:
        name, data = await watcher.next_event(timeout_s=timeout_s)
        events.append((name, unstamped(data)))
        if name in ("index:ready", "index:failed"):
            return events


async def kill_and_restart(server: EmbeddedMongo, outage_s: float, run: Any) -> EmbeddedMongo:
    """SIGKILL the server; after `outage_s` (sooner if the run ends meanwhile) start it again
    on the same data directory, as a supervisor would; it takes its old port back."""
    port = server.port
    os.kill(server.pid, signal.SIGKILL)
    await poll(lambda: _true(port_refuses(port)), 10, "the server to die")
    if outage_s:  # the fault's length, not a synchronisation
        with contextlib.suppress(TimeoutError):
            await poll(lambda: _true(run.done()), outage_s, "the outage's end")
    restarted = EmbeddedMongo(server.data_dir)
    await asyncio.to_thread(restarted.start)
    assert restarted.started_here
    assert restarted.uri == server.uri, "not restarted on its port"
    return restarted


@pytest.mark.slow
async def test_mongodb_restarted_at_once_the_run_resumes(
    local_ray, pdfs, settings, disk_mongo, start_head, session_cookie, connect_client
) -> None:
    """A crash and an immediate restart (a supervisor's) of the MongoDB server mid-run: the
    run rides it out (its operations wait for the server and are retried once) and ends
    `ready`, with the whole index and nothing half-written."""
    pages_total = sum(PAGES)
    settings = settings.with_overrides(mongodb_uri=Secret(disk_mongo.uri))
    client = open_client(disk_mongo.uri)
    db = client[settings.mongodb_db]
    restarted: EmbeddedMongo | None = None
    try:
        workspace_id = await workspace_with_pdfs(db, pdfs)
        head = start_head(settings)
        watcher = await connect_client(head.url, session_cookie("alice"))
        await watcher.join(workspace_id)
        run = asyncio.create_task(run_index(settings, workspace_id))
        try:
            await poll(
                lambda: _done_pages_at_least(db, workspace_id, 2, run),
                RUN_TIMEOUT_S,
                "2 pages done",
            )
            killed_at = time.monotonic()
            restarted = await kill_and_restart(disk_mongo, 0, run)
            down_s = time.monotonic() - killed_at
            summary = await asyncio.wait_for(run, RUN_TIMEOUT_S)
        finally:
            await cancelled(run)
        print(f"\nMongoDB down {down_s:.1f}s; run {summary.status} in {summary.seconds:.1f}s")
        assert summary.status == "succeeded", summary
        assert summary.pages == pages_total
        events = await collect_until_terminal(watcher, 30)
        assert events[-1] == ("index:ready", {"pageCount": pages_total})
        await check_complete(db, workspace_id, pages_total)
        job = await db.jobs.find_one({"workspaceId": workspace_id})
        assert (job["status"], job["error"]) == ("succeeded", None)
    finally:
        await client.close()
        if restarted is not None:
            restarted.stop()


@pytest.mark.slow
async def test_mongodb_down_longer_than_a_run_waits(
    local_ray, pdfs, settings, disk_mongo, start_head, session_cookie, connect_client
) -> None:
    """The server is SIGKILLed while the run is busy and stays down longer than the run
    waits for it (`serverSelectionTimeoutMS` in MONGODB_URI, 2 s here, 30 s by default): the
    run ends with `index:failed` and an error that says MongoDB was unavailable and what to
    do; the job and the workspace say so too; nothing is half-written; a re-run completes."""
    pages_total = sum(PAGES)
    wait_ms = 2_000
    uri = f"{disk_mongo.uri}?serverSelectionTimeoutMS={wait_ms}"
    settings = settings.with_overrides(mongodb_uri=Secret(uri))
    client = open_client(uri)
    db = client[settings.mongodb_db]
    restarted: EmbeddedMongo | None = None
    try:
        workspace_id = await workspace_with_pdfs(db, pdfs)
        head = start_head(settings)
        watcher = await connect_client(head.url, session_cookie("alice"))
        await watcher.join(workspace_id)
        run = asyncio.create_task(run_index(settings, workspace_id))
        try:
            # killed while every phase is busy writing: fetch, render, analyze
            assert await watcher.expect("index:started", timeout_s=RUN_TIMEOUT_S) is not None
            killed_at = time.monotonic()
            restarted = await kill_and_restart(disk_mongo, 3 * wait_ms / 1000, run)
            down_s = time.monotonic() - killed_at
            summary = await asyncio.wait_for(run, RUN_TIMEOUT_S)
            ended_s = time.monotonic() - killed_at
        finally:
            await cancelled(run)
        print(
            f"\nMongoDB down {down_s:.1f}s; run ended {ended_s:.1f}s after the kill: "
            f"{summary.status} {summary.error!r}"
        )
        assert summary.status == "failed", summary
        error = summary.error
        assert error is not None
        assert error.startswith("MongoDB unavailable"), error
        assert "run the index again" in error
        assert "\n" not in error
        assert "\x1b" not in error
        assert len(error) <= 500
        events = await collect_until_terminal(watcher, 30)
        assert events[-1][0] == "index:failed"
        assert events[-1][1]["error"] == error
        assert events[-1][1]["phase"] in PHASES
        job = await db.jobs.find_one({"workspaceId": workspace_id})
        assert (job["status"], job["error"]) == ("failed", error)
        assert "active" not in job, "the failed run still blocks the workspace"
        workspace = await db.workspaces.find_one({})
        assert (workspace["indexStatus"], workspace["indexError"]) == ("failed", error)
        await check_consistent(db, workspace_id)

        rerun = await asyncio.wait_for(run_index(settings, workspace_id), RUN_TIMEOUT_S)
        assert rerun.status == "succeeded", rerun
        assert rerun.pages == pages_total
        await check_complete(db, workspace_id, pages_total)
    finally:
        await client.close()
        if restarted is not None:
            restarted.stop()


def test_crashed_embedded_server_takes_its_port_back_unless_taken(tmp_path: Path) -> None:
    """Processes holding a crashed server's URI reconnect when it is started again: it takes
    its old port back; when something else took the port meanwhile, it starts on another."""
    data_dir = tmp_path / "mongo"
    with EmbeddedMongo(data_dir) as first:
        port = first.port
        os.kill(first.pid, signal.SIGKILL)
        wait_until(lambda: port_refuses(port), 10, "the server to die")
        with EmbeddedMongo(data_dir) as second:
            assert second.started_here
            assert second.uri == first.uri
            os.kill(second.pid, signal.SIGKILL)
            wait_until(lambda: port_refuses(port), 10, "the server to die")
            with socket.socket() as squatter:
                # another program listens there now (the dead server's connections linger
                # in TIME_WAIT: SO_REUSEADDR, as any server binds)
                squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                squatter.bind(("127.0.0.1", port))
                squatter.listen()
                with EmbeddedMongo(data_dir) as third:
                    assert third.started_here
                    assert third.uri != first.uri
                    with MongoClient(third.uri, serverSelectionTimeoutMS=5_000) as probe:
                        assert probe.admin.command("ping")["ok"] == 1
