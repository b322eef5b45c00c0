"""The head's own Ray and run driver, for real: `indexer head` processes with INDEXER_WARM
on, a local Ray started (and ended) by the head, runs started through REST, a driver killed
mid-run, a cancel, SIGTERM, two heads on one data directory, and `indexer index` from a
terminal attaching to the head's Ray."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from bson import ObjectId

from cluster.documents import add_document
from cluster.process_tree import children, is_running, session_processes
from core.embedding import encode, load_model
from core.settings import Settings
from core.workspaces import create_workspace
from tests.conftest import HeadProcess, free_port, unstamped, wait_until
from tests.pdf_fixtures import good_pdfs

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

WARM_TIMEOUT_S = 240.0
RUN_TIMEOUT_S = 300.0
ADMIN_TOKEN = "runtime-admin-token-for-tests"
# SIGTERM to exit: the driver's runs are cancelled, the Ray ended, MongoDB stopped.
SHUTDOWN_TIMEOUT_S = 45.0


def runtime_state(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / "ray" / "runtime.json"
    return json.loads(path.read_text()) if path.exists() else None


def readyz(head: HeadProcess) -> dict[str, Any]:
    return httpx.get(f"{head.url}/readyz", timeout=5).json()


def wait_warm(head: HeadProcess) -> None:
    wait_until(lambda: readyz(head)["runs"] == "ready", WARM_TIMEOUT_S, "the head to warm up")


@pytest.fixture
def warm_heads(tmp_path: Path) -> Iterator[Callable[..., HeadProcess]]:
    """`indexer head` processes with INDEXER_WARM on; each test's own data directory."""
    started: list[HeadProcess] = []

    def start(settings: Settings) -> HeadProcess:
        port = free_port()
        settings = settings.with_overrides(
            warm=True, port=port, head_url=f"http://127.0.0.1:{port}"
        )
        log = tmp_path / f"head-{len(started)}.log"
        head = HeadProcess(settings, log, ADMIN_TOKEN=ADMIN_TOKEN).start()
        started.append(head)
        return head

    yield start
    for head in started:
        head.stop()


async def workspace_with(db: Any, folder: Path, pages: list[int]) -> str:
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    await asyncio.to_thread(folder.mkdir, parents=True)
    for path in await asyncio.to_thread(good_pdfs, folder, pages):
        assert (await add_document(db, workspace_id, str(path), max_bytes=10**9)).error is None
    return workspace_id


async def start_run(head: HeadProcess, workspace_id: str, cookie: str) -> str:
    async with httpx.AsyncClient(base_url=head.url, timeout=30) as http:
        response = await http.post(
            f"/api/workspaces/{workspace_id}/index",
            headers={"Cookie": cookie, "Content-Type": "application/json"},
            content="{}",
        )
    assert response.status_code == 202, response.text
    return str(response.json()["jobId"])


async def final_event(client: Any) -> tuple[str, Any]:
    while True:
        name, data = await client.next_event(timeout_s=RUN_TIMEOUT_S)
        if name in ("index:ready", "index:failed"):
            return name, unstamped(data)


async def pages_moving(client: Any) -> None:
    while True:
        name, data = await client.next_event(timeout_s=RUN_TIMEOUT_S)
        assert name not in ("index:ready", "index:failed"), (name, data)
        if name == "index:progress" and data["pagesDone"] > 0:
            return


async def search_uses_the_embed_pool(
    head: HeadProcess, db: Any, workspace_id: str, cookie: str, model_name: str
) -> None:
    """The head's answer is the ranking and cosines of the chunks' stored vectors against
    the query embedded by the same model here (the head's embed pool may run another
    arithmetic: scores within 0.01). The head's process loads no model to do it."""
    chunks = await db.chunks.find({"workspaceId": workspace_id}).to_list()
    query = chunks[0]["text"][:400].rsplit(" ", 1)[0]
    model = await asyncio.to_thread(load_model, model_name, "cpu")
    [vector] = await asyncio.to_thread(encode, model, [query])
    stored = np.stack([np.frombuffer(bytes(c["embedding"])[2:], dtype="<f4") for c in chunks])
    scores = stored @ vector
    keys = [(c["documentId"], c["chunkNo"]) for c in chunks]
    expected = {key: float(score) for key, score in zip(keys, scores, strict=True)}
    best = sorted(expected.values(), reverse=True)[:3]
    async with httpx.AsyncClient(base_url=head.url, timeout=180) as http:
        answer = await http.get(
            f"/api/workspaces/{workspace_id}/search",
            params={"q": query, "k": 3},
            headers={"Cookie": cookie},
        )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert (results[0]["documentId"], results[0]["chunkNo"]) == max(expected, key=expected.get)
    for result, score in zip(results, best, strict=True):  # near-ties may swap places
        assert abs(result["score"] - expected[(result["documentId"], result["chunkNo"])]) < 0.01
        assert abs(result["score"] - score) < 0.01
    assert head.process is not None
    maps = await asyncio.to_thread(Path(f"/proc/{head.process.pid}/maps").read_text)
    assert "libtorch" not in maps


async def test_the_head_runs_on_its_own_warm_ray_which_outlives_failed_runs(
    settings, db, warm_heads, session_cookie, connect_client, tmp_path
) -> None:
    head = warm_heads(settings)
    assert readyz(head)["status"] in ("warming", "ready")  # it serves while it warms
    await asyncio.to_thread(wait_warm, head)
    state = runtime_state(settings.data_dir)
    assert state is not None
    assert head.process is not None
    assert state["users"] == [head.process.pid]
    session = state["session"]
    cookie = session_cookie("alice")
    client = await connect_client(head.url, cookie)

    small = await workspace_with(db, tmp_path / "small", [3])
    await client.join(small)
    await start_run(head, small, cookie)
    assert await final_event(client) == ("index:ready", {"pageCount": 3})
    await search_uses_the_embed_pool(head, db, small, cookie, settings.embed_model)

    # the run's driver is killed mid-run: the run fails, clearly; the Ray lives on
    large = await workspace_with(db, tmp_path / "large", [12, 12, 12])
    await client.join(large)
    job_id = await start_run(head, large, cookie)
    await pages_moving(client)
    job = await db.jobs.find_one({"_id": ObjectId(job_id)})
    os.kill(job["driverPid"], signal.SIGKILL)
    name, data = await final_event(client)
    assert name == "index:failed"
    assert "driver exited" in data["error"]
    assert "run the index again" in data["error"]
    assert (await db.jobs.find_one({"_id": job["_id"]}))["status"] == "failed"
    workspace = await db.workspaces.find_one({"_id": ObjectId(large)})
    assert workspace["indexStatus"] == "failed"

    # a new driver takes the next run, on the same Ray; then a run is cancelled mid-run
    await asyncio.to_thread(wait_warm, head)
    cancelled_job = await start_run(head, large, cookie)
    await pages_moving(client)
    async with httpx.AsyncClient(base_url=head.url, timeout=60) as http:
        answer = await http.post(
            f"/admin/jobs/{cancelled_job}/cancel",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert answer.status_code == 200, answer.text
    name, data = await final_event(client)
    assert (name, data["error"]) == ("index:failed", "cancelled")

    await start_run(head, large, cookie)  # resumes: pages done before stay done
    assert await final_event(client) == ("index:ready", {"pageCount": 36})
    assert runtime_state(settings.data_dir)["session"] == session
    assert session_processes(session)


async def test_sigterm_leaves_nothing_running(
    settings, warm_heads, session_cookie, connect_client, tmp_path
) -> None:
    """The head with its own MongoDB (MONGODB_URI unset) and its own Ray, an open socket;
    SIGTERM ends all of it, checked by process id."""
    head = warm_heads(settings.with_overrides(mongodb_uri=None))
    await asyncio.to_thread(wait_warm, head)
    ray_session = runtime_state(settings.data_dir)["session"]
    mongo = json.loads((settings.data_dir / "mongo" / "secantusd.json").read_text())["pid"]
    driver = children(head.process.pid)
    client = await connect_client(head.url, session_cookie("alice"))
    assert client.client.connected
    assert session_processes(ray_session)
    assert driver

    started = time.monotonic()
    head.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(head.process.wait, SHUTDOWN_TIMEOUT_S)
    print(f"\nSIGTERM → exit: {time.monotonic() - started:.1f}s")
    assert session_processes(ray_session) == []
    assert not is_running(mongo)
    assert [pid for pid in driver if is_running(pid)] == []
    assert runtime_state(settings.data_dir) is None


async def test_two_heads_share_one_ray_and_a_terminal_run_uses_it(
    settings, db, warm_heads, session_cookie, connect_client, tmp_path
) -> None:
    first = warm_heads(settings)
    second = warm_heads(settings)
    await asyncio.to_thread(wait_warm, first)
    await asyncio.to_thread(wait_warm, second)
    state = runtime_state(settings.data_dir)
    assert sorted(state["users"]) == sorted([first.process.pid, second.process.pid])
    session = state["session"]

    # `indexer index` from a terminal, same data directory: it attaches to that Ray
    workspace_id = await workspace_with(db, tmp_path / "terminal", [2])
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(
        MONGODB_URI=settings.mongodb_uri.reveal(),
        MONGODB_DB=settings.mongodb_db,
        INDEXER_DATA_DIR=str(settings.data_dir),
        HEAD_URL=first.url,
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
    assert f"using the head's Ray at {state['address']}" in done.stderr
    assert runtime_state(settings.data_dir)["session"] == session

    # the first head stops: the second keeps the Ray, and its runs work
    first.stop()
    assert sorted(runtime_state(settings.data_dir)["users"]) == [second.process.pid]
    assert session_processes(session)
    cookie = session_cookie("alice")
    client = await connect_client(second.url, cookie)
    other = await workspace_with(db, tmp_path / "second", [2])
    await client.join(other)
    await start_run(second, other, cookie)
    assert await final_event(client) == ("index:ready", {"pageCount": 2})

    second.stop()
    assert session_processes(session) == []
    assert runtime_state(settings.data_dir) is None
