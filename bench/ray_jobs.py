"""An indexing run as a Ray Job (`indexer submit --wait`) versus a driver run from the
terminal (`indexer index --ray-address`), on the same real Ray cluster.

Run:  .venv/bin/python bench/ray_jobs.py [--rounds 2] [--documents 3] [--pages 4]

What runs (all on loopback, all stopped on exit):
- the embedded MongoDB-protocol server (SecantusDB, in memory);
- one Ray cluster: `ray start --head --num-cpus=2` with the dashboard (Ray Jobs API) on
  127.0.0.1, started with the environment the nodes need (NEXTAUTH_SECRET, HF_HUB_OFFLINE,
  this virtualenv's bin first on PATH), as `tests/test_ray_jobs.py` does, plus an explicit
  RAY_AUTH_MODE (`token` when ~/.ray/auth_token or RAY_AUTH_TOKEN exists, which is when
  `ray start` turns token auth on) shared with the CLI: `ray.init(address=...)` in
  `indexer index --ray-address` does not turn token auth on by itself;
- one head (`python -m cluster.cli head --port P`), ready once /readyz answers 200;
- one python-socketio AsyncClient per run, authenticated with a minted NextAuth cookie for
  the workspaces' owner and joined to the run's workspace room before the command starts.

Every run indexes a workspace of its own; all workspaces hold the same generated PDFs
(`--documents` x `--pages`, written once). Runs alternate, one pair per round:
`indexer submit WS --address http://127.0.0.1:DASHBOARD --wait`, then
`indexer index WS --ray-address 127.0.0.1:GCS`. Each is a subprocess with MONGODB_URI,
MONGODB_DB, NEXTAUTH_SECRET and HEAD_URL set. A second round is skipped when the first
one suggests it would end past `--budget-s`.

What is measured, per run (time.monotonic in this process, from just before the command is
launched):
- command: until the command exits (exit status 0 required);
- started: until the client receives `index:started` (the driver's aggregator is up);
- ready: until the client receives `index:ready` (`index:failed` fails the bench).
The summary prints each run, the median of each figure per command (with two rounds the
median is the mean of two), and Ray Job / index ratios (above 1: the Ray Job is slower).

How to read it: `submit` pays for the Jobs API round trip, the job supervisor actor and a
second Python process (the job's driver, `indexer index --job-id`) before the run starts;
`index` is that driver itself, in the terminal. `submit --wait` polls Ray's job status
once a second, so its command time overshoots the run's end by up to about 1 s. The first
run of the bench also pays the cluster's cold start (worker processes, imports), so the
first `submit` is usually the slowest figure; compare the second round, or the medians.
Everything shares the machine's cores: run it on a quiet machine and repeat it.

The cluster it starts is ended on exit by its session id: every process of it, and no
other Ray on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import socketio

from cluster.documents import add_document
from cluster.process_tree import end_session
from cluster.sample_corpus import write_sample_pdf
from core.db import open_client
from core.embedded_mongo import EmbeddedMongo
from core.workspaces import create_workspace
from head.nextauth import encode_session_token

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = str(Path(sys.executable).parent)
OWNER_ID = "bench-owner"
WEB_APP_URL = "http://web.example.test"
TITLES = ["Ray cluster operations", "Document indexing", "Realtime progress", "Storage engines"]
RAY_START_TIMEOUT_S = 180.0
RAY_STOP_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 10.0
SOCKET_TIMEOUT_S = 15.0
POLL_S = 0.1
KINDS = ("submit", "index")


# -- processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    check: Callable[[], bool], what: str, timeout_s: float, proc: subprocess.Popen[Any] | None
) -> None:
    """Poll `check()` until true; fail when `proc` exits or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def ray_auth_mode() -> str:
    """`token` when a Ray token is at hand (as `ray start` then turns token auth on), else
    `disabled`: one explicit mode for the cluster and every client of it."""
    from cluster.jobs import ray_auth_headers

    return os.environ.get("RAY_AUTH_MODE") or ("token" if ray_auth_headers() else "disabled")


def node_env(secret: str) -> dict[str, str]:
    """What the Ray nodes run with: the secret lives here, not in a job's runtime env.

    RAY_AUTH_MODE is set explicitly because Ray 2.60's `ray.init(address=...)` never turns
    token auth on by itself: without it `indexer index --ray-address` is refused by a
    cluster that `ray start` started with a token (~/.ray/auth_token)."""
    env = dict(os.environ)
    path = f"{VENV_BIN}:{env.get('PATH', '')}"
    env.update(NEXTAUTH_SECRET=secret, HF_HUB_OFFLINE="1", PATH=path,
               RAY_AUTH_MODE=ray_auth_mode())  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    return env


# -- Ray cluster -----------------------------------------------------------------------


@dataclass(frozen=True)
class RayCluster:
    gcs: str  # HOST:PORT, for `indexer index --ray-address`
    jobs: str  # http://HOST:PORT, the dashboard with the Jobs API, for `indexer submit`


def ray_start_command(ray: str, temp: Path, gcs: int, dashboard: int) -> list[str]:
    return [
        ray, "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}", f"--metrics-export-port={free_port()}",
        f"--temp-dir={temp}", "--disable-usage-stats",
    ]  # fmt: skip


def jobs_api_up(address: str) -> bool:
    from cluster.jobs import jobs_client

    try:
        jobs_client(address).list_jobs()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def ray_cluster(workdir: Path, secret: str) -> Iterator[RayCluster]:
    """`ray start --head --block` in a session of its own (cwd: the repository, so job
    drivers import our packages), ended on exit by session id: only this cluster's
    processes, never another Ray on the machine."""
    ray = shutil.which("ray", path=VENV_BIN)
    if ray is None:
        raise RuntimeError(f"no `ray` in {VENV_BIN}")
    gcs, dashboard = free_port(), free_port()
    command = ray_start_command(ray, workdir / "ray", gcs, dashboard)
    head = subprocess.Popen(command, env=node_env(secret), cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        cluster = RayCluster(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}")
        wait_for(lambda: jobs_api_up(cluster.jobs), "the Ray Jobs API", READY_TIMEOUT_S, None)
        yield cluster
    finally:
        end_session(head.pid, grace_s=RAY_STOP_TIMEOUT_S)
        head.wait()


# -- head and data ---------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """What every process shares: the database, the session secret, the head."""

    mongo_uri: str
    db_name: str
    secret: str
    head_url: str
    workdir: Path


def head_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def cli_env(backend: Backend) -> dict[str, str]:
    env = node_env(backend.secret)
    env.update(
        MONGODB_URI=backend.mongo_uri,
        MONGODB_DB=backend.db_name,
        HEAD_URL=backend.head_url,
        WEB_APP_URL=WEB_APP_URL,
        INDEXER_DATA_DIR=str(backend.workdir / "data"),
    )
    return env


@contextlib.contextmanager
def head_process(backend: Backend) -> Iterator[None]:
    """`python -m cluster.cli head --port P`, logging to the workdir; stopped on exit."""
    port = int(backend.head_url.rsplit(":", 1)[1])
    command = [sys.executable, "-m", "cluster.cli", "head", "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    with open(backend.workdir / "head.log", "wb") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=cli_env(backend),
                                cwd=REPO_ROOT)  # fmt: skip
    try:
        wait_for(lambda: head_ready(backend.head_url), "the head", READY_TIMEOUT_S, proc)
        yield
    finally:
        stop_process(proc)


def write_pdfs(folder: Path, documents: int, pages: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"doc-{index + 1}.pdf" for index in range(documents)]
    for index, path in enumerate(paths):
        write_sample_pdf(path, TITLES[index % len(TITLES)], pages, seed=index)
    return paths


async def create_workspaces(backend: Backend, pdfs: list[Path], count: int) -> list[str]:
    """`count` workspaces of the owner, each holding all of `pdfs`."""
    client = open_client(backend.mongo_uri)
    try:
        db = client[backend.db_name]
        ids = []
        for number in range(count):
            name = f"ray-jobs bench {number + 1}"
            workspace_id = str(await create_workspace(db, name=name, owner_id=OWNER_ID,
                                                      member_ids=[]))  # fmt: skip
            for pdf in pdfs:
                result = await add_document(db, workspace_id, str(pdf), max_bytes=10**9)
                if result.error is not None:
                    raise RuntimeError(f"{pdf}: {result.error}")
            ids.append(workspace_id)
        return ids
    finally:
        await client.close()


def session_cookie(secret: str) -> str:
    now = int(time.time())
    claims = {"sub": OWNER_ID, "iat": now, "exp": now + 3600, "jti": uuid.uuid4().hex}
    return f"next-auth.session-token={encode_session_token(claims, secret)}"


# -- one run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    kind: str
    workspace_id: str
    command_s: float
    started_s: float
    ready_s: float


@dataclass
class Watcher:
    """A Socket.IO client in one workspace room; notes when each event first arrives."""

    client: socketio.AsyncClient = field(
        default_factory=lambda: socketio.AsyncClient(reconnection=False)
    )
    seen: dict[str, float] = field(default_factory=dict)
    failure: Any = None
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.client.on("*", self._on_event)

    async def _on_event(self, event: str, data: Any = None) -> None:
        self.seen.setdefault(event, time.monotonic())
        if event == "workspace:joined":
            self.joined.set()
        elif event in ("index:ready", "index:failed"):
            self.failure = data if event == "index:failed" else None
            self.ended.set()

    async def join(self, url: str, cookie: str, workspace_id: str) -> None:
        await self.client.connect(url, headers={"Cookie": cookie}, transports=["websocket"],
                                  wait_timeout=SOCKET_TIMEOUT_S)  # fmt: skip
        await self.client.emit("workspace:join", {"workspaceId": workspace_id})
        await asyncio.wait_for(self.joined.wait(), SOCKET_TIMEOUT_S)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.disconnect(), STOP_TIMEOUT_S)


def command_args(kind: str, workspace_id: str, cluster: RayCluster) -> list[str]:
    if kind == "submit":
        return ["submit", workspace_id, "--address", cluster.jobs, "--wait"]
    return ["index", workspace_id, "--ray-address", cluster.gcs]


async def run_command(
    args: list[str], backend: Backend, log: Path
) -> tuple[asyncio.subprocess.Process, float]:
    """Launch `indexer ARGS`, output to `log`; returns the process and its launch time."""
    with log.open("wb") as out:
        launched = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cluster.cli", *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=out, stderr=asyncio.subprocess.STDOUT, env=cli_env(backend), cwd=REPO_ROOT,
        )  # fmt: skip
    return proc, launched


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:]


async def finish(proc: asyncio.subprocess.Process, what: str) -> float:
    """Wait (bounded) for `proc` to exit; returns when it did. Killed on timeout, Ctrl-C
    or SIGTERM."""
    try:
        await asyncio.wait_for(proc.wait(), RUN_TIMEOUT_S)
    except TimeoutError:
        raise TimeoutError(f"{what} did not finish in {RUN_TIMEOUT_S:.0f} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return time.monotonic()


async def measure(
    kind: str, workspace_id: str, backend: Backend, cluster: RayCluster, cookie: str
) -> Timing:
    watcher = Watcher()
    try:
        await watcher.join(backend.head_url, cookie, workspace_id)
        log = backend.workdir / f"{kind}-{workspace_id}.log"
        proc, launched = await run_command(command_args(kind, workspace_id, cluster), backend, log)
        exited = await finish(proc, f"indexer {kind}")
        if proc.returncode != 0:
            raise RuntimeError(f"indexer {kind} exited with {proc.returncode}:\n{tail(log)}")
        await asyncio.wait_for(watcher.ended.wait(), SOCKET_TIMEOUT_S)
    finally:
        await watcher.close()
    if watcher.failure is not None:
        raise RuntimeError(f"indexer {kind}: index:failed {watcher.failure!r}; see {log}")
    seen = watcher.seen
    return Timing(kind, workspace_id, exited - launched,
                  seen["index:started"] - launched, seen["index:ready"] - launched)  # fmt: skip


# -- output ----------------------------------------------------------------------------

FIGURES = ("command_s", "started_s", "ready_s")
HEADER = f"{'run':<22}{'command s':>11}{'→ started s':>13}{'→ ready s':>11}"


def row(name: str, values: Sequence[float]) -> str:
    command, started, ready = values
    return f"{name:<22}{command:>11.2f}{started:>13.2f}{ready:>11.2f}"


def figures(timing: Timing) -> list[float]:
    return [getattr(timing, name) for name in FIGURES]


def medians(timings: list[Timing], kind: str) -> list[float]:
    runs = [figures(t) for t in timings if t.kind == kind]
    return [statistics.median(column) for column in zip(*runs, strict=True)]


def ratio_line(name: str, job: Sequence[float], index: Sequence[float]) -> str:
    parts = [f"{j / i:.2f}x" if i > 0 else "n/a" for j, i in zip(job, index, strict=True)]
    return f"{name:<22}" + "".join(f"{p:>{w}}" for p, w in zip(parts, (11, 13, 11), strict=True))


def print_report(timings: list[Timing], documents: int, pages: int) -> None:
    print(f"\n{documents} documents x {pages} pages per workspace; seconds from launching "
          "the command")  # fmt: skip
    print(HEADER)
    for number, timing in enumerate(timings):
        print(row(f"{number // 2 + 1}. {timing.kind}", figures(timing)))
    job, index = medians(timings, "submit"), medians(timings, "index")
    print(row("median submit", job))
    print(row("median index", index))
    print(ratio_line("Ray Job / index", job, index))


# -- main ------------------------------------------------------------------------------


async def run_rounds(
    args: argparse.Namespace, backend: Backend, cluster: RayCluster, workspaces: list[str]
) -> list[Timing]:
    """submit, index, submit, index, ...; stop early when another round would overrun."""
    cookie = session_cookie(backend.secret)
    timings: list[Timing] = []
    for number in range(args.rounds):
        round_started = time.monotonic()
        for offset, kind in enumerate(KINDS):
            workspace_id = workspaces[2 * number + offset]
            timings.append(await measure(kind, workspace_id, backend, cluster, cookie))
            print(row(f"{number + 1}. {kind}", figures(timings[-1])), flush=True)
        spent = time.monotonic() - round_started
        if time.monotonic() - args.started + spent > args.budget_s:
            if number + 1 < args.rounds:
                print(f"stopping after round {number + 1}: another would pass --budget-s")
            break
    return timings


def bench(args: argparse.Namespace, workdir: Path) -> list[Timing]:
    secret = secrets.token_urlsafe(32)
    pdfs = write_pdfs(workdir / "pdfs", args.documents, args.pages)
    with EmbeddedMongo(workdir / "mongo", in_memory=True) as mongo:
        head_url = f"http://127.0.0.1:{free_port()}"
        backend = Backend(mongo.uri, f"bench_{uuid.uuid4().hex[:12]}", secret, head_url, workdir)
        workspaces = asyncio.run(create_workspaces(backend, pdfs, 2 * args.rounds))
        with ray_cluster(workdir, secret) as cluster, head_process(backend):
            print(f"Ray at {cluster.gcs} (jobs {cluster.jobs}), head at {head_url}; ready in "
                  f"{time.monotonic() - args.started:.0f} s", flush=True)  # fmt: skip
            print(HEADER)
            return asyncio.run(run_rounds(args, backend, cluster, workspaces))


def orchestrate(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-ray-jobs-"))
    try:
        timings = bench(args, workdir)
    except KeyboardInterrupt:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    except BaseException:
        print(f"bench failed; logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    print_report(timings, args.documents, args.pages)
    print(f"total {time.monotonic() - args.started:.0f} s")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="submit+index pairs")
    parser.add_argument("--documents", type=int, default=3)
    parser.add_argument("--pages", type=int, default=4, help="pages per document")
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="skip further rounds that would end after this")  # fmt: skip
    args = parser.parse_args(argv)
    if min(args.rounds, args.documents, args.pages) < 1:
        parser.error("--rounds, --documents and --pages must be at least 1")
    args.started = time.monotonic()
    return args


def interrupt_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every `finally` stops what it started."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    try:
        return orchestrate(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
