"""Cluster operations against a real Ray cluster started with `ray start --head`:
Ray Jobs submission, runs started from the head, cancel, retry-failed, metrics."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.documents import add_document
from cluster.process_tree import end_session
from core.jobs import create_job, find_job
from core.settings import Secret
from core.workspaces import create_workspace
from tests.conftest import free_port, unstamped, wait_until
from tests.pdf_fixtures import good_pdfs

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

CLUSTER_SECRET = "cluster-nextauth-secret-for-tests"
ADMIN_TOKEN = "cluster-admin-token-for-tests"
VENV_BIN = str(Path(sys.executable).parent)


def node_env() -> dict[str, str]:
    """The environment the cluster's nodes and our processes run with: secrets live here,
    not in job envs. No RAY_AUTH_* variable: a fresh shell's (this test process has one
    since a local `ray.init()` put it there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(
        NEXTAUTH_SECRET=CLUSTER_SECRET, HF_HUB_OFFLINE="1", PATH=f"{VENV_BIN}:{env.get('PATH', '')}"
    )
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`ray start --head` with Ray's defaults: token authentication on (a token is made
    first when this machine has none, as `ray.init()` would). It runs with `--block` in a
    session of its own and is ended by session id, never by the CLI's machine-wide stop."""
    ray = shutil.which("ray", path=VENV_BIN)
    assert ray is not None
    env = node_env()
    assert "RAY_AUTH_MODE" not in env
    subprocess.run([ray, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    gcs, dashboard, metrics, agent, client = (free_port() for _ in range(5))
    temp = tmp_path_factory.mktemp("ray")
    log = temp / "ray-start.log"
    with log.open("wb") as out:
        head = subprocess.Popen(
            [
                ray,
                "start",
                "--head",
                "--block",
                f"--port={gcs}",
                "--num-cpus=2",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard}",
                f"--dashboard-agent-listen-port={agent}",
                f"--ray-client-server-port={client}",
                f"--metrics-export-port={metrics}",
                f"--temp-dir={temp}",
                "--disable-usage-stats",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{dashboard}"
    from cluster.jobs import jobs_client

    def jobs_api_up() -> bool:
        assert head.poll() is None, log.read_text()[-3000:]
        try:
            jobs_client(address).list_jobs()
            return True
        except Exception:
            return False

    try:
        wait_until(jobs_api_up, 120, "the Ray Jobs API")
        yield {"jobs": address, "gcs": f"127.0.0.1:{gcs}", "metrics": metrics}
    finally:
        assert end_session(head.pid, grace_s=5) == []
        head.wait(30)


@pytest.fixture
def settings(settings):
    """The nodes' secret, so cookies minted by `session_cookie` work on the head too."""
    return settings.with_overrides(nextauth_secret=Secret(CLUSTER_SECRET))


@pytest.fixture
def cluster_settings(settings, ray_cluster):
    return settings.with_overrides(
        admin_token=Secret(ADMIN_TOKEN),
        ray_address=ray_cluster["gcs"],
        ray_jobs_address=ray_cluster["jobs"],
    )


async def workspace_with(db: Any, folder: Path, pages: list[int], owner: str = "alice") -> str:
    workspace_id = str(await create_workspace(db, name="W", owner_id=owner, member_ids=["bob"]))
    for path in good_pdfs(folder, pages):
        assert (await add_document(db, workspace_id, str(path), max_bytes=10**9)).error is None
    return workspace_id


def cli_env(settings: Any, **extra: str) -> dict[str, str]:
    env = node_env()
    env.update(
        MONGODB_URI=settings.mongodb_uri.reveal(),
        MONGODB_DB=settings.mongodb_db,
        HEAD_URL=settings.head_url,
        **extra,
    )
    return env


async def run_cli(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def until_terminal(client: Any) -> list[tuple[str, Any]]:
    events = []
    while True:
        name, data = await client.next_event(timeout_s=300)
        events.append((name, data))
        if name in ("index:ready", "index:failed"):
            return events


@pytest.mark.parametrize("how", ["--ray-address", "RAY_ADDRESS"])
async def test_index_attaches_to_a_token_cluster_with_no_auth_variable_set(
    how, cluster_settings, ray_cluster, db, tmp_path
) -> None:
    """Ray's defaults: token authentication on. `indexer index` from a fresh process whose
    environment names no RAY_AUTH_* variable attaches and runs, by flag and by RAY_ADDRESS.
    (`indexer submit` is `test_submit_wait_succeeds`, the head's runs
    `test_the_heads_runs_attach_to_a_token_cluster_with_no_auth_variable_set`, in the same
    environment.)"""
    async with httpx.AsyncClient(timeout=10) as http:
        mode = await http.get(f"{ray_cluster['jobs']}/api/authentication_mode")
    assert mode.json() == {"authentication_mode": "token"}
    workspace_id = await workspace_with(db, tmp_path, [2])
    env = cli_env(cluster_settings)
    assert not [name for name in env if name.startswith("RAY_AUTH")]
    args = ["index", workspace_id]
    if how == "--ray-address":
        args += ["--ray-address", ray_cluster["gcs"]]
    else:
        env["RAY_ADDRESS"] = ray_cluster["gcs"]
    process = await run_cli(args, env)
    _, stderr = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, stderr.decode()[-3000:]
    workspace = await db.workspaces.find_one({})
    assert (workspace["indexStatus"], workspace["pageCount"]) == ("ready", 2)


async def test_the_heads_runs_attach_to_a_token_cluster_with_no_auth_variable_set(
    settings, ray_cluster, db, head_processes, session_cookie, connect_client, tmp_path
) -> None:
    """`indexer head` with RAY_ADDRESS naming the cluster, started from an environment with
    no RAY_AUTH_* variable: its run driver attaches and the run completes."""
    head = await asyncio.to_thread(
        head_processes, settings, RAY_ADDRESS=ray_cluster["gcs"], PATH=node_env()["PATH"]
    )
    workspace_id = await workspace_with(db, tmp_path, [2])
    client = await connect_client(head.url, session_cookie("alice"))
    await client.join(workspace_id)
    async with httpx.AsyncClient(base_url=head.url, timeout=60) as http:
        started = await http.post(
            f"/api/workspaces/{workspace_id}/index",
            headers={"Cookie": session_cookie("alice"), "Content-Type": "application/json"},
            content="{}",
        )
    assert started.status_code == 202, started.text
    name, data = (await until_terminal(client))[-1]
    assert (name, unstamped(data)) == ("index:ready", {"pageCount": 2})


async def test_submit_wait_succeeds(
    cluster_settings, ray_cluster, start_head, db, session_cookie, connect_client, tmp_path
) -> None:
    head = start_head(cluster_settings)
    workspace_id = await workspace_with(db, tmp_path, [2, 3])
    client = await connect_client(head.url, session_cookie("alice"))
    assert client.client.connected, client.connect_errors.get_nowait()
    await client.join(workspace_id)

    started_at = time.monotonic()
    process = await run_cli(
        ["submit", workspace_id, "--address", ray_cluster["jobs"], "--wait"],
        cli_env(head.settings),
    )
    started = asyncio.create_task(client.expect("index:started", timeout_s=300))
    exited = asyncio.create_task(process.wait())
    await asyncio.wait({started, exited}, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        started.cancel()
        _, stderr = await process.communicate()
        pytest.fail(f"submit exited {process.returncode} first: {stderr.decode()[-3000:]}")
    assert unstamped(started.result()) == {}
    to_started = time.monotonic() - started_at
    events = await until_terminal(client)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert (events[-1][0], unstamped(events[-1][1])) == ("index:ready", {"pageCount": 5})
    ray_job_id = stdout.decode().splitlines()[0]
    job = await db.jobs.find_one({"workspaceId": workspace_id})
    assert job["rayJobId"] == ray_job_id == f"indexer-{job['_id']}"
    assert job["status"] == "succeeded"
    assert job["counts"]["pages"] == 5
    # followed into a pipe (not a TTY): plain lines, the last one where the run ended
    progress = [line for line in stderr.decode().splitlines() if " pages [" in line]
    assert progress, stderr.decode()[-2000:]
    assert progress[-1].startswith("ready"), progress
    assert "| 5/5 pages" in progress[-1]
    total = time.monotonic() - started_at
    print(f"\nsubmit → index:started: {to_started:.1f}s; run total {total:.1f}s")


async def test_submit_asks_again_while_no_agent_can_take_the_job(
    cluster_settings, ray_cluster, db, tmp_path
) -> None:
    """Right after `ray start`, Ray's Jobs API answers "No available agent to submit job"
    until the head node's agent has registered. That race cannot be made to happen on
    demand, so a proxy in front of the real dashboard gives Ray's exact answer to the first
    two submissions and passes everything else through: `indexer submit` asks again, and
    the run goes on the real cluster."""
    from aiohttp import web

    refusals = 2
    posts = []

    async def proxy(request: web.Request) -> web.Response:
        body = await request.read()
        if request.method == "POST" and request.path == "/api/jobs/":
            posts.append(request.path)
            if len(posts) <= refusals:
                return web.Response(
                    status=500, text="No available agent to submit job, please try again later."
                )
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with httpx.AsyncClient(base_url=ray_cluster["jobs"], timeout=60) as http:
            answer = await http.request(
                request.method, request.path_qs, headers=headers, content=body
            )
        return web.Response(
            status=answer.status_code,
            body=answer.content,
            content_type=answer.headers.get("content-type", "text/plain").split(";")[0],
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        workspace_id = await workspace_with(db, tmp_path, [1])
        process = await run_cli(
            ["submit", workspace_id, "--address", f"http://127.0.0.1:{port}", "--wait"],
            cli_env(cluster_settings),
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 300)
    finally:
        await runner.cleanup()
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert len(posts) == refusals + 1
    job = await db.jobs.find_one({"workspaceId": workspace_id})
    assert stdout.decode().splitlines()[0] == job["rayJobId"]
    assert job["status"] == "succeeded"


async def test_submit_wait_fails_for_a_failing_run(
    cluster_settings, ray_cluster, start_head, db, tmp_path
) -> None:
    head = start_head(cluster_settings)
    workspace_id = await workspace_with(db, tmp_path, [1])
    process = await run_cli(
        ["submit", workspace_id, "--address", ray_cluster["jobs"], "--wait"],
        cli_env(head.settings, EMBED_MODEL="/nonexistent/model"),
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode == 1, stderr.decode()[-2000:]
    job = await db.jobs.find_one({"workspaceId": workspace_id})
    assert job["status"] == "failed"
    workspace = await db.workspaces.find_one({})
    assert workspace["indexStatus"] == "failed"


async def test_submit_refuses_a_second_run(cluster_settings, ray_cluster, db, tmp_path) -> None:
    from core.db import ensure_indexes

    await ensure_indexes(db)
    workspace_id = await workspace_with(db, tmp_path, [1])
    await create_job(db, workspace_id, mode="local", requested_by="test")
    process = await run_cli(
        ["submit", workspace_id, "--address", ray_cluster["jobs"]], cli_env(cluster_settings)
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 2
    assert "already has a run going" in stderr.decode()


async def test_start_from_head_and_cancel_mid_run(
    cluster_settings, start_head, db, session_cookie, connect_client, tmp_path
) -> None:
    head = start_head(cluster_settings.with_overrides(max_local_pages=0))  # → Ray Jobs
    workspace_id = await workspace_with(db, tmp_path, [6, 6, 6, 6])
    client = await connect_client(head.url, session_cookie("alice"))
    await client.join(workspace_id)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=head.url, timeout=120) as http:
        path = f"/api/workspaces/{workspace_id}/index"
        viewer = await http.post(path, headers={"Cookie": session_cookie("bob")})
        started = await http.post(path, headers={"Cookie": session_cookie("alice")})
        again = await http.post(path, headers={"Cookie": session_cookie("alice")})
        assert viewer.status_code == 403
        assert started.status_code == 202
        assert started.json()["mode"] == "ray-job"
        assert again.status_code == 409
        job_id = started.json()["jobId"]
        state = (
            await http.get(
                f"/api/workspaces/{workspace_id}", headers={"Cookie": session_cookie("alice")}
            )
        ).json()
        assert state["indexStatus"] in ("queued", "indexing")
        while True:  # wait until pages are being done
            name, data = await client.next_event(timeout_s=300)
            if name == "index:progress" and data["pagesDone"] > 0:
                break
        cancelled = await http.post(f"/admin/jobs/{job_id}/cancel", headers=admin)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        second = await http.post(f"/admin/jobs/{job_id}/cancel", headers=admin)
        assert second.status_code == 409
    events = await until_terminal(client)
    assert events[-1][0] == "index:failed"
    assert events[-1][1]["error"] == "cancelled"
    # nothing writes after the cancel: counts stay put while we watch for 3 s
    counts = await index_counts(db)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert await index_counts(db) == counts
        await asyncio.sleep(0.25)
    assert counts[0] < 24
    job = await find_job(db, job_id)
    assert job["status"] == "cancelled"


async def index_counts(db: Any) -> tuple[int, int, int]:
    return (
        await db.pages.count_documents({"done": True}),
        await db.pages.count_documents({}),
        await db.chunks.count_documents({}),
    )


async def test_retry_failed_reindexes_only_failed_documents(
    cluster_settings, ray_cluster, start_head, db, session_cookie, connect_client, tmp_path
) -> None:
    head = start_head(cluster_settings)  # small: the head's run driver, on the cluster's Ray
    workspace_id = await workspace_with(db, tmp_path, [2])
    late = tmp_path / "late.pdf"
    assert (await add_document(db, workspace_id, late.as_uri(), max_bytes=10**9)).error is None
    client = await connect_client(head.url, session_cookie("alice"))
    await client.join(workspace_id)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=head.url, timeout=120) as http:
        first = await http.post(
            f"/api/workspaces/{workspace_id}/index", headers={"Cookie": session_cookie("alice")}
        )
        assert first.json()["mode"] == "local"
        name, data = (await until_terminal(client))[-1]
        assert (name, unstamped(data)) == ("index:ready", {"pageCount": 2})
        failed = await db.documents.find_one({"source": late.as_uri()})
        assert failed["status"] == "failed"
        assert failed["error"].startswith("cannot read")
        (tmp_path / "late").mkdir()
        good_pdfs(tmp_path / "late", [3])[0].rename(late)
        retried = await http.post(f"/admin/workspaces/{workspace_id}/retry-failed", headers=admin)
        assert retried.status_code == 202
        assert retried.json()["retried"] == 1
        name, data = (await until_terminal(client))[-1]
        assert (name, unstamped(data)) == ("index:ready", {"pageCount": 5})
        job = (await http.get(f"/admin/jobs/{retried.json()['jobId']}", headers=admin)).json()
        metrics = (await http.get("/metrics")).text
    assert job["counts"]["skipped"] == 1  # the good document was not redone
    assert job["failedDocuments"] == []
    assert job["phaseSeconds"]["embed"] > 0
    assert 'indexer_head_events_sent_total{event="index:ready"} 2.0' in metrics
    assert "indexer_head_publish_to_emit_seconds_count" in metrics


async def test_ray_metrics_endpoint_shows_pipeline_counters(ray_cluster) -> None:
    """After the runs above, the node's metrics agent exports our ray.util.metrics."""
    url = f"http://127.0.0.1:{ray_cluster['metrics']}/metrics"

    def exported() -> bool:
        text = httpx.get(url, timeout=5).text
        return "indexer_pages_done" in text and "indexer_phase_latency_seconds" in text

    await asyncio.to_thread(wait_until, exported, 90, "pipeline metrics at the Ray endpoint")
    async with httpx.AsyncClient() as http:
        text = (await http.get(url, timeout=5)).text
    assert 'phase="embed"' in text
