"""`indexer demo`: the main job on a fresh machine, with nothing set up by hand.

Starts (or reuses) the embedded MongoDB, runs a head in a child process, starts a local Ray,
creates a demo user's workspace, adds the given PDFs (or a generated sample set), indexes it
with a terminal progress bar, tells how a browser can watch, and prints a summary.
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

from cluster.documents import add_document
from cluster.run import index_with_progress
from cluster.sample_corpus import write_sample_workspace
from core.db import ensure_indexes, open_client, require_uri
from core.errors import IndexerError
from core.settings import Secret, Settings
from core.storage import resolved_storage
from core.workspaces import create_workspace
from head.nextauth import encode_session_token

DEMO_USER = "demo-user"
DEMO_WORKSPACE = "Demo workspace"
HEAD_START_TIMEOUT_S = 60.0
COOKIE_LIFETIME_S = 24 * 3600


def run_demo(
    settings: Settings, pdfs: list[Path], *, port: int | None, keep_serving: bool = False
) -> int:
    settings = _demo_settings(settings, port)
    sources = [str(p) for p in pdfs] or [
        str(p) for p in write_sample_workspace(settings.data_dir / "sample")
    ]
    summary = None
    with resolved_storage(settings) as ready:
        head = _start_head(ready)
        try:
            workspace_id = asyncio.run(_prepare_workspace(ready, sources))
            _print_watch_instructions(ready, workspace_id)
            summary = index_with_progress(ready, workspace_id)
            if keep_serving:
                print(f"Serving {ready.head_url}/workspaces/{workspace_id}; Ctrl-C to stop.")
                head.wait()
        except KeyboardInterrupt:
            if summary is None:  # interrupted before the run ended
                return 130
        finally:
            head.terminate()
            head.wait(30)
    return 0 if summary is not None and summary.status == "succeeded" else 1


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
    """The head in a child process, with the same settings; waits until /readyz answers."""
    env = dict(os.environ)
    env.update(
        MONGODB_URI=require_uri(settings),
        MONGODB_DB=settings.mongodb_db,
        NEXTAUTH_SECRET=settings.require_nextauth_secret().reveal(),
        PORT=str(settings.port),
    )
    log = (settings.data_dir / "demo-head.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "head", "--port", str(settings.port)],
        env=env,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise IndexerError(f"the head exited; see {settings.data_dir / 'demo-head.log'}")
        try:
            if httpx.get(f"{settings.head_url}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise IndexerError("the head did not become ready within 60 s")


async def _prepare_workspace(settings: Settings, sources: list[str]) -> str:
    """The demo user's workspace (reused across demo runs), with the sources added."""
    client = open_client(require_uri(settings))
    try:
        db = client[settings.mongodb_db]
        await ensure_indexes(db)
        existing = await db.workspaces.find_one({"ownerId": DEMO_USER, "name": DEMO_WORKSPACE})
        workspace_id = str(
            existing["_id"]
            if existing
            else await create_workspace(db, name=DEMO_WORKSPACE, owner_id=DEMO_USER, member_ids=[])
        )
        for source in sources:
            result = await add_document(
                db, workspace_id, source, max_bytes=settings.max_document_bytes
            )
            if result.error:
                print(f"demo: {source} refused: {result.error}", file=sys.stderr)
        return workspace_id
    finally:
        await client.close()


def _print_watch_instructions(settings: Settings, workspace_id: str) -> None:
    now = int(time.time())
    token = encode_session_token(
        {"sub": DEMO_USER, "name": "Demo user", "iat": now, "exp": now + COOKIE_LIFETIME_S},
        settings.require_nextauth_secret().reveal(),
    )
    print(
        f"\nWorkspace {workspace_id} is being indexed. To watch it from a browser or a shell:\n"
        f"  page:    {settings.head_url}/workspaces/{workspace_id}\n"
        f"  state:   {settings.head_url}/api/workspaces/{workspace_id}\n"
        f"  cookie:  next-auth.session-token={token}\n"
        f"  e.g.     curl -s -b 'next-auth.session-token={token}' "
        f"{settings.head_url}/api/workspaces/{workspace_id}\n"
        "  (set the cookie on the head's origin, e.g. in the browser console:\n"
        f"   document.cookie = 'next-auth.session-token={token}; path=/'\n"
        "   it is for the demo user only, valid 24 h)\n",
        flush=True,
    )
