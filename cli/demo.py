"""`indexer demo`: the main job on a fresh machine, with nothing set up by hand.

Starts (or reuses) the embedded MongoDB and runs a head in a child process, as an operator
would; the head starts its own local Ray and warms it (models loaded, parser actors up).
Then, as a person pressing Start in the web app: a demo user's workspace with the given
PDFs (or a generated sample set) is indexed through the head's REST API, with a terminal
progress bar read from MongoDB, and a summary; then a second, new 10-page workspace shows
what a warm head answers: Start → ready in about a second. It prints where a browser can
watch, and stops the head (and its Ray) at the end, unless `--keep-serving`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from cluster.documents import add_document
from cluster.progress_bar import ProgressView, progress_of
from cluster.run import format_summary, summary_of_job
from cluster.sample_corpus import write_sample_pdf, write_sample_workspace
from core.db import Document, ensure_indexes, open_client, require_uri
from core.errors import IndexerError
from core.jobs import find_job
from core.settings import Secret, Settings
from core.storage import resolved_storage
from core.workspaces import create_workspace, find_workspace
from head.nextauth import encode_session_token

DEMO_USER = "demo-user"
DEMO_WORKSPACE = "Demo workspace"
HEAD_READY_TIMEOUT_S = 300.0
HEAD_STOP_TIMEOUT_S = 60.0
COOKIE_LIFETIME_S = 24 * 3600
FOLLOW_INTERVAL_S = 0.1
SECOND_RUN_PAGES = 10


def run_demo(
    settings: Settings, pdfs: list[Path], *, port: int | None, keep_serving: bool = False
) -> int:
    settings = _demo_settings(settings, port)
    sources = [str(p) for p in pdfs] or [
        str(p) for p in write_sample_workspace(settings.data_dir / "sample")
    ]
    with resolved_storage(settings) as ready:
        head = _start_head(ready)
        try:
            return asyncio.run(_demo(ready, sources, keep_serving, head))
        except KeyboardInterrupt:
            return 130
        finally:
            head.terminate()  # SIGTERM: the head stops its driver and its Ray
            head.wait(HEAD_STOP_TIMEOUT_S)


async def _demo(
    settings: Settings, sources: list[str], keep_serving: bool, head: subprocess.Popen[bytes]
) -> int:
    client = open_client(require_uri(settings))
    try:
        db = client[settings.mongodb_db]
        await ensure_indexes(db)
        workspace_id = await _demo_workspace(db, settings, sources)
        print(watch_instructions(settings, workspace_id, keep_serving), flush=True)
        job = await _start_and_follow(db, settings, workspace_id)
        print(format_summary(summary_of_job(job)), flush=True)
        second = await _second_workspace(db, settings)
        started = time.monotonic()
        again = await _start_and_follow(db, settings, second, show=False)
        print(
            f"\nA new {SECOND_RUN_PAGES}-page workspace on the warm head: Start → "
            f"{again['status']} in {time.monotonic() - started:.1f}s "
            f"(models and actors stay loaded between runs)",
            flush=True,
        )
        if keep_serving:
            print(f"Serving {settings.head_url}/workspaces/{workspace_id}; Ctrl-C to stop.")
            await asyncio.to_thread(head.wait)
        return 0 if job["status"] == again["status"] == "succeeded" else 1
    finally:
        await client.close()


def _demo_settings(settings: Settings, port: int | None) -> Settings:
    """A NextAuth secret kept in the data dir (so minted cookies stay valid), a free port."""
    secret = settings.nextauth_secret
    if secret is None:
        path = settings.data_dir / "demo-nextauth-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        secret = Secret(path.read_text().strip())
    chosen = port or settings.port
    if not _port_free(chosen):
        print(f"demo: port {chosen} is busy, using a free one", file=sys.stderr)
        chosen = _free_port()
    return settings.with_overrides(
        nextauth_secret=secret, port=chosen, head_url=f"http://127.0.0.1:{chosen}"
    )


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_head(settings: Settings) -> subprocess.Popen[bytes]:
    """The head in a child process, with the same settings; waits until /readyz says its
    runs are warm (its Ray started, the embed model loaded, parser actors up)."""
    env = dict(os.environ)
    env.update(
        MONGODB_URI=require_uri(settings),
        MONGODB_DB=settings.mongodb_db,
        NEXTAUTH_SECRET=settings.require_nextauth_secret().reveal(),
        PORT=str(settings.port),
        INDEXER_DATA_DIR=str(settings.data_dir),
    )
    log_path = settings.data_dir / "demo-head.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "head", "--port", str(settings.port)],
            env=env,
            stdout=log,
            stderr=log,
        )
    print(f"Head at {settings.head_url}: starting its Ray and loading models…", flush=True)
    started = time.monotonic()
    while (runs := _runs_status(settings)) != "ready":
        if process.poll() is not None:
            raise IndexerError(f"the head exited; see {log_path}")
        if runs.startswith("unavailable") or time.monotonic() - started > HEAD_READY_TIMEOUT_S:
            process.terminate()
            process.wait(HEAD_STOP_TIMEOUT_S)
            raise IndexerError(f"the head cannot run indexing ({runs}); see {log_path}")
        time.sleep(0.2)
    print(f"Head ready in {time.monotonic() - started:.1f}s", flush=True)
    return process


def _runs_status(settings: Settings) -> str:
    try:
        return str(httpx.get(f"{settings.head_url}/readyz", timeout=2).json().get("runs", ""))
    except (httpx.HTTPError, ValueError):
        return ""


async def _demo_workspace(
    db: AsyncDatabase[Document], settings: Settings, sources: list[str]
) -> str:
    """The demo user's workspace (reused across demo runs), with the sources added."""
    existing = await db.workspaces.find_one({"ownerId": DEMO_USER, "name": DEMO_WORKSPACE})
    workspace_id = str(
        existing["_id"]
        if existing
        else await create_workspace(db, name=DEMO_WORKSPACE, owner_id=DEMO_USER, member_ids=[])
    )
    for source in sources:
        result = await add_document(db, workspace_id, source, max_bytes=settings.max_document_bytes)
        if result.error:
            print(f"demo: {source} refused: {result.error}", file=sys.stderr)
    return workspace_id


async def _second_workspace(db: AsyncDatabase[Document], settings: Settings) -> str:
    """A new workspace of one new 10-page PDF: nothing of it is indexed yet."""
    workspace_id = str(
        await create_workspace(db, name="Demo: second run", owner_id=DEMO_USER, member_ids=[])
    )
    pdf = settings.data_dir / "sample" / f"second-{workspace_id}.pdf"
    write_sample_pdf(pdf, "Realtime progress", SECOND_RUN_PAGES, seed=int(time.time()))
    result = await add_document(db, workspace_id, str(pdf), max_bytes=settings.max_document_bytes)
    if result.error:
        raise IndexerError(f"demo: {pdf} refused: {result.error}")
    return workspace_id


async def _start_and_follow(
    db: AsyncDatabase[Document], settings: Settings, workspace_id: str, *, show: bool = True
) -> Document:
    """Press Start (the REST call the web app makes, with the owner's cookie), then follow
    the run in MongoDB until its job ends; returns the job."""
    async with httpx.AsyncClient(base_url=settings.head_url, timeout=30) as http:
        answer = await http.post(
            f"/api/workspaces/{workspace_id}/index",
            headers={"Cookie": f"next-auth.session-token={_cookie(settings)}"},
            json={},
        )
    if answer.status_code != 202:
        raise IndexerError(f"the head refused the run: {answer.status_code} {answer.text}")
    job_id = answer.json()["jobId"]
    view = ProgressView() if show else None
    try:
        while (job := await find_job(db, job_id)) is not None and job.get("active"):
            if view is not None:
                view.show(progress_of(await find_workspace(db, workspace_id)))
            await asyncio.sleep(FOLLOW_INTERVAL_S)
        if view is not None:
            view.close(progress_of(await find_workspace(db, workspace_id)))
    finally:
        if view is not None:
            view.close()
    assert job is not None
    return job


def _cookie(settings: Settings) -> str:
    now = int(time.time())
    return encode_session_token(
        {"sub": DEMO_USER, "name": "Demo user", "iat": now, "exp": now + COOKIE_LIFETIME_S},
        settings.require_nextauth_secret().reveal(),
    )


def watch_instructions(settings: Settings, workspace_id: str, keep_serving: bool) -> str:
    """How to watch the run from a browser or a shell, and how long the head stays up: the
    URL is only as good as the head behind it."""
    token = _cookie(settings)
    lasts = (
        "the head stays up after the runs (Ctrl-C to stop)"
        if keep_serving
        else "the head stops when the demo ends: `indexer demo --keep-serving` keeps it up"
    )
    return (
        f"\nWorkspace {workspace_id} is being indexed. To watch it from a browser or a shell:\n"
        f"  page:    {settings.head_url}/workspaces/{workspace_id}\n"
        f"  state:   {settings.head_url}/api/workspaces/{workspace_id}\n"
        f"  cookie:  next-auth.session-token={token}\n"
        f"  e.g.     curl -s -b 'next-auth.session-token={token}' "
        f"{settings.head_url}/api/workspaces/{workspace_id}\n"
        "  (set the cookie on the head's origin, e.g. in the browser console:\n"
        f"   document.cookie = 'next-auth.session-token={token}; path=/'\n"
        f"   it is for the demo user only, valid 24 h; {lasts})\n"
    )
