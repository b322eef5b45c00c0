"""Runs across several Ray nodes on this host: `ray.cluster_utils.Cluster` starts a raylet
per node, each with ports of its own. A head node for the driver only (no CPUs), a CPU
worker node, and a worker node that declares a GPU (the embed actors land there and encode
on its CPU, as there is no CUDA here). Placement is read from Ray's own state API.

Then a worker node's raylet is killed by PID while pages are in flight, each kind of worker
in turn: the run completes, each page is stored once, progress never goes back, the room
gets exactly one final event, and the job records the node and what was redone. A node
added while the cluster is idle is used by the next run, from the same driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from cluster.documents import add_document
from cluster.driver import RunActors, RunDriver
from core.workspaces import create_workspace
from tests.conftest import unstamped
from tests.pdf_fixtures import good_pdfs

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

# Ray declares a node dead after 3 missed health checks 0.5 s apart (its default is tens of
# seconds: right for a real network, slow for a test).
HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}
RUN_TIMEOUT_S = 600.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    ray.shutdown()  # another module's local Ray, if any
    nodes = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "_system_config": HEALTH_CHECKS},
    )
    workers = {
        "cpu": nodes.add_node(num_cpus=2),
        "gpu": nodes.add_node(num_cpus=2, num_gpus=1),
    }
    ray.init(address=nodes.address, log_to_driver=False)
    try:
        yield {"cluster": nodes, "workers": workers, "head": nodes.head_node.node_id}
    finally:
        ray.shutdown()
        nodes.shutdown()


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return {
        "small": good_pdfs(tmp_path_factory.mktemp("small"), [5, 4, 3]),
        "large": good_pdfs(tmp_path_factory.mktemp("large"), [16, 16, 16, 16]),
    }


async def workspace_of(db: Any, paths: list[Path]) -> str:
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    for path in paths:
        assert (await add_document(db, workspace_id, str(path), max_bytes=10**9)).error is None
    return workspace_id


def placement() -> dict[str, set[str]]:
    """Live actors by class, each with the nodes they run on, from Ray's state API."""
    found: dict[str, set[str]] = {}
    for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=10_000):
        found.setdefault(actor.class_name, set()).add(actor.node_id)
    return found


async def test_a_run_across_nodes_equals_a_one_node_run(
    cluster, settings, db, pdfs, tmp_path
) -> None:
    workspace_id = await workspace_of(db, pdfs["small"])
    reference_db = f"{settings.mongodb_db}_one_node"
    await copy_workspace(settings, settings.mongodb_db, reference_db, workspace_id)
    placed: list[tuple[dict[str, set[str]], dict[str, Any]]] = []

    async def note_placement(actors: RunActors) -> None:
        await actors.aggregator.ready.remote()
        described = await actors.embed.actors[0].describe.remote()
        placed.append((await asyncio.to_thread(placement), described))

    watching: list[asyncio.Task[None]] = []
    async with RunDriver(settings) as driver:
        summary = await driver.run(
            workspace_id, on_start=lambda a: watching.append(asyncio.create_task(note_placement(a)))
        )
        await asyncio.gather(*watching)
    assert summary.status == "succeeded", summary
    [(where, described)] = placed
    workers, head = cluster["workers"], cluster["head"]
    assert where["EmbedActor"] == {workers["gpu"].node_id}
    assert described["gpuIds"] == [0]
    assert described["device"] == "cpu"  # no CUDA here: the GPU node's CPU encodes
    assert where["ProgressAggregator"] == {head}  # the driver's node
    parsers = where["RenderActor"] | where["AnalyzeActor"]
    assert head not in parsers

    await one_node_run(settings, reference_db, workspace_id, tmp_path)
    await same_index(db, db.client[reference_db], workspace_id)
    await db.client.drop_database(reference_db)


async def one_node_run(settings: Any, database: str, workspace_id: str, tmp_path: Path) -> None:
    """The workspace copied to `database` indexed by `indexer index` on a local one-node
    Ray of its own."""
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(
        MONGODB_URI=settings.mongodb_uri.reveal(),
        MONGODB_DB=database,
        INDEXER_DATA_DIR=str(tmp_path / "one-node"),
        HEAD_URL=settings.head_url,
        NEXTAUTH_SECRET=settings.require_nextauth_secret().reveal(),
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", "index", workspace_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]


async def copy_workspace(settings: Any, source: str, target: str, workspace_id: str) -> None:
    """Copy a workspace not indexed yet, with its documents and their GridFS bytes, to
    another database."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri.reveal())
    try:
        for name in ("workspaces", "documents", "documents.files", "documents.chunks"):
            rows = await client[source][name].find().to_list()
            if name == "documents":
                rows = [r for r in rows if r["workspaceId"] == workspace_id]
            if rows:
                await client[target][name].insert_many(rows)
    finally:
        await client.close()


async def same_index(db: Any, reference: Any, workspace_id: str) -> None:
    """Pages, chunks (texts, and vectors within a cosine of 0.9999) and concepts agree."""
    order = [("documentId", 1), ("pageNo", 1)]
    pages = await db.pages.find({"workspaceId": workspace_id}).sort(order).to_list()
    expected = await reference.pages.find({"workspaceId": workspace_id}).sort(order).to_list()
    assert [(p["documentId"], p["pageNo"], p["text"]) for p in pages] == [
        (p["documentId"], p["pageNo"], p["text"]) for p in expected
    ]
    order = [("documentId", 1), ("chunkNo", 1)]
    chunks = await db.chunks.find({"workspaceId": workspace_id}).sort(order).to_list()
    reference_chunks = (
        await reference.chunks.find({"workspaceId": workspace_id}).sort(order).to_list()
    )
    assert [(c["chunkNo"], c["text"]) for c in chunks] == [
        (c["chunkNo"], c["text"]) for c in reference_chunks
    ]
    for ours, theirs in zip(chunks, reference_chunks, strict=True):
        a = np.array(ours["embedding"].as_vector().data)
        b = np.array(theirs["embedding"].as_vector().data)
        assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) >= 0.9999
    concepts = await db.concepts.find({"workspaceId": workspace_id}).to_list()
    reference_concepts = await reference.concepts.find({"workspaceId": workspace_id}).to_list()
    assert sorted((c["conceptId"], c["chunkCount"]) for c in concepts) == sorted(
        (c["conceptId"], c["chunkCount"]) for c in reference_concepts
    )


def kill_raylet(node: Any) -> int:
    """SIGKILL the raylet of `node` (its command line names its node id); its pid."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if Path(command[0].decode()).name == "raylet" and (
                f"--node_id={node.node_id}".encode() in command
            ):
                os.kill(int(entry), signal.SIGKILL)
                return int(entry)
    raise AssertionError(f"no raylet of node {node.node_id}")


@pytest.mark.parametrize("lost", ["cpu", "gpu"])
async def test_a_worker_node_lost_mid_run(
    lost, cluster, settings, db, pdfs, start_head, connect_client, session_cookie
) -> None:
    head = start_head(settings)
    client = await connect_client(head.url, session_cookie("alice"))
    workers = cluster["workers"]
    async with RunDriver(settings, prepare=True) as driver:
        workspace_id = await workspace_of(db, pdfs["large"])
        await client.join(workspace_id)
        run = asyncio.create_task(driver.run(workspace_id))
        events = []
        while True:  # until pages are in flight
            name, data = await client.next_event(timeout_s=RUN_TIMEOUT_S)
            events.append((name, unstamped(data)))
            if name == "index:progress" and data["pagesDone"] > 0:
                break
        lost_node = workers[lost].node_id
        kill_raylet(workers[lost])
        dead = workers.pop(lost)
        while events[-1][0] not in ("index:ready", "index:failed"):
            name, data = await client.next_event(timeout_s=RUN_TIMEOUT_S)
            events.append((name, unstamped(data)))
        summary = await asyncio.wait_for(run, RUN_TIMEOUT_S)

        pages_total = 16 * 4
        assert summary.status == "succeeded", summary
        assert summary.pages == pages_total
        names = [name for name, _ in events]
        assert names.count("index:ready") == 1
        assert "index:failed" not in names
        assert events[-1] == ("index:ready", {"pageCount": pages_total})
        done = [data["pagesDone"] for name, data in events if name == "index:progress"]
        assert done == sorted(done), "pagesDone went back"
        assert max(done) <= pages_total
        stored = await db.pages.find({"workspaceId": workspace_id}).to_list()
        assert len(stored) == pages_total
        assert len({(p["documentId"], p["pageNo"]) for p in stored}) == pages_total
        assert all(p["done"] for p in stored)
        assert await db.chunks.count_documents({"embedding": {"$exists": False}}) == 0
        job = await db.jobs.find_one({"workspaceId": workspace_id})
        incidents = job["incidents"]
        assert [n["nodeId"] for n in incidents["nodesLost"]] == [lost_node]
        # calls sent again: those on the lost node, and those of actors the new plan replaced
        for redone in incidents["redone"]:
            assert redone["reason"] in ("node lost", "re-planned"), redone
            assert redone["phase"] in ("fetch", "render", "analyze", "embed"), redone

        # a node of the same kind added while idle: the next run of this driver uses it
        options = {"num_cpus": 2, "num_gpus": 1} if lost == "gpu" else {"num_cpus": 2}
        cluster["cluster"].remove_node(dead, allow_graceful=False)  # what is left of it
        workers[lost] = cluster["cluster"].add_node(**options)
        cluster["cluster"].wait_for_nodes()
        again = await workspace_of(db, pdfs["small"])
        assert (await driver.run(again)).status == "succeeded"
        where = await asyncio.to_thread(placement)
        if lost == "gpu":
            assert where["EmbedActor"] == {workers["gpu"].node_id}
        else:
            parked = where["RenderActor"] | where["AnalyzeActor"] | where["FetchActor"]
            assert workers["cpu"].node_id in parked
