"""What every benchmark shares, so that each script holds only its own question.

A benchmark is one script per question on top of this module and the package's public
functions (`cluster`, `core`, `actors`, `head`): nothing here patches the product, and the
scripts import nothing from each other. Sections: figures and tables; the machine (free
ports, other load, CPU seconds by process); child processes and services (redis-server, a
head); a workspace, a timed run and the chunks of a corpus; a run's work in one process;
Socket.IO clients, in this process or in a client process of the script's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import queue
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import socketio

from actors.layout import blocks_from_dict, chunk_page, page_text
from actors.png import encode_png
from actors.pool import CPU_PAGE_BATCH
from actors.render import preview_dpi
from cluster.documents import add_document
from cluster.sample_corpus import write_sample_workspace
from core.db import ensure_indexes, open_client
from core.embedding import encode
from core.pdf import open_pdf
from core.settings import Secret, Settings
from core.workspaces import create_workspace
from head.nextauth import encode_session_token

if TYPE_CHECKING:
    from cluster.driver import RunSummary

REPO_ROOT = Path(__file__).resolve().parent.parent
OWNER = "bench-owner"
OTHER = "other (not this benchmark)"
BUSY_MACHINE = 0.15  # other load above this share of the CPUs: the figures are noise
QUIET_CHECK_S = 2.0
CPU_SAMPLE_S = 0.5
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 60.0
SOCKET_TIMEOUT_S = 15.0

# -- figures and tables --------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Nearest-rank p50 and p99, and the max; NaN for no values."""
    ordered = sorted(values)

    def rank(pct: float) -> float:
        if not ordered:
            return float("nan")
        return ordered[max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5))) - 1]

    return {"p50": rank(50), "p99": rank(99), "max": ordered[-1] if ordered else float("nan")}


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table, so a run's output can go into docs/BENCHMARKS.md as it is."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def arguments(
    doc: str | None, *, documents: int | None = None, pages: int = 12
) -> argparse.ArgumentParser:
    """A script's argument parser, described by its docstring's first line; with the size of
    the generated corpus (`--documents`, `--pages`) when `documents` is given."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    if documents is not None:
        parser.add_argument("--documents", type=int, default=documents, help="PDFs in the corpus")
        parser.add_argument("--pages", type=int, default=pages, help="pages per PDF (+0..2 each)")
    return parser


def sample_corpus(folder: Path, args: argparse.Namespace) -> list[Path]:
    """The generated corpus (`cluster.sample_corpus`) that `--documents` and `--pages` ask for."""
    return write_sample_workspace(folder, documents=args.documents, pages_each=args.pages)


# -- the machine ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def other_load() -> float:
    """Share of all CPUs busy over a short window while the benchmark does nothing: what
    else the machine is doing, printed beside every figure."""
    psutil.cpu_percent(interval=None)
    return psutil.cpu_percent(interval=QUIET_CHECK_S) / 100.0


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def actor_class(title: str) -> str:
    """The class of the Ray worker whose process title is `title`: Ray sets
    "ray::Class.method" while a call runs, "ray::Class" between calls, and a named actor's
    "ray::name:Class" at first; "IDLE" for a worker without an actor."""
    return title.removeprefix("ray::").split()[0].split(".")[0].rsplit(":", 1)[-1]


def process_label(proc: psutil.Process, mine: set[int]) -> str:
    """Who a process is: this benchmark, a Ray actor by class, the MongoDB server, Ray's
    own processes, or another user's work."""
    if proc.pid == os.getpid():
        return "bench (this process)"
    if proc.pid not in mine:
        return OTHER
    title = " ".join(proc.cmdline())
    if title.startswith("ray::"):
        return f"ray::{actor_class(title)}"
    if "secantusd" in title:
        return "MongoDB server (secantusd)"
    return "Ray system and other children"


class CpuMeter:
    """CPU seconds per process label over a `with` block, sampled by a thread.

    A process that ends between samples loses at most CPU_SAMPLE_S of its CPU time; a Ray
    worker keeps the label of the first actor seen in it.
    """

    def __init__(self) -> None:
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._labels: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._started = 0.0
        self.wall = 0.0

    def __enter__(self) -> CpuMeter:
        self._started = time.monotonic()
        self._sample(baseline=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(baseline=False)
        self.wall = time.monotonic() - self._started

    def _loop(self) -> None:
        while not self._stop.wait(CPU_SAMPLE_S):
            self._sample(baseline=False)

    def _sample(self, *, baseline: bool) -> None:
        mine = {p.pid for p in psutil.Process().children(recursive=True)}
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                seconds = float(sum(proc.cpu_times()[:2]))
                label = process_label(proc, mine)
                self._base.setdefault(proc.pid, seconds if baseline else 0.0)
                self._last[proc.pid] = seconds
                known = self._labels.get(proc.pid, "")
                if not (known.startswith("ray::") and known != "ray::IDLE"):
                    self._labels[proc.pid] = label  # a worker keeps its actor's name

    def by_label(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, last in self._last.items():
            label = self._labels[pid]
            totals[label] = totals.get(label, 0.0) + max(0.0, last - self._base[pid])
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    def own_cpu(self) -> float:
        """CPU seconds of this benchmark's processes: much less sensitive to other load."""
        return sum(s for label, s in self.by_label().items() if label != OTHER)

    def foreign_load(self) -> float:
        """Share of all CPUs taken by processes that are not this benchmark's."""
        capacity = (os.cpu_count() or 1) * max(self.wall, 1e-9)
        return self.by_label().get(OTHER, 0.0) / capacity


def print_cpu(meters: dict[str, CpuMeter]) -> None:
    """CPU seconds by process of each measurement, side by side (rows under 0.05 s left out)."""
    tables = {name: meter.by_label() for name, meter in meters.items()}
    first = next(iter(tables.values()), {})
    labels = sorted(
        {k for t in tables.values() for k in t}, key=lambda k: (k == OTHER, -first.get(k, 0.0))
    )
    rows = [
        [label, *(f"{t.get(label, 0.0):.1f}" for t in tables.values())]
        for label in labels
        if max(t.get(label, 0.0) for t in tables.values()) >= 0.05
    ]
    print_table(["CPU seconds by process", *tables], rows)


# -- child processes and services ----------------------------------------------------------


def wait_until(
    check: Callable[[], bool],
    what: str,
    *,
    timeout_s: float = START_TIMEOUT_S,
    process: subprocess.Popen[Any] | None = None,
) -> None:
    """Poll `check()` until true; fail when `process` exits or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_S."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in the repository root, its output in `log`, stopped on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env if env is not None else dict(os.environ),
            cwd=REPO_ROOT,
        )
    try:
        yield process
    finally:
        stop(process)


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A `redis-server` of this benchmark's own on a free port, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
    ]
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        return False

    with running(command, folder / "redis.log") as process:
        wait_until(answers, "redis-server", process=process)
        yield url


@dataclass
class HeadProcess:
    """`indexer head` as a user runs it, with a NextAuth secret of its own: the embedded
    MongoDB and the head's own Ray in `data_dir` unless `env` names others."""

    data_dir: Path
    port: int
    secret: str
    process: subprocess.Popen[bytes]
    started_at: float

    @classmethod
    def start(cls, data_dir: Path, *, secret: str | None = None, **env: str) -> HeadProcess:
        port, secret = free_port(), secret or secrets.token_urlsafe(32)
        environ = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "RAY_ADDRESS")}
        environ.update(INDEXER_DATA_DIR=str(data_dir), NEXTAUTH_SECRET=secret, PORT=str(port))
        environ.update(env)
        data_dir.mkdir(parents=True, exist_ok=True)
        with (data_dir / f"head-{port}.log").open("ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "head",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        return cls(data_dir, port, secret, process, time.monotonic())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def readiness(self) -> tuple[int, dict[str, Any]]:
        try:
            answer = httpx.get(f"{self.url}/readyz", timeout=5)
            return answer.status_code, dict(answer.json())
        except (httpx.HTTPError, ValueError):
            return 0, {}

    def wait_ready(self, *, runs: bool = True) -> float:
        """Seconds from start until /readyz answers 200, and with `runs` until it says local
        runs are ready (the Ray and the run driver warm)."""

        def ready() -> bool:
            status, body = self.readiness()
            return status == 200 and (not runs or body.get("runs") == "ready")

        try:
            wait_until(ready, f"head {self.url}", process=self.process)
        except (RuntimeError, TimeoutError) as exc:
            log = (self.data_dir / f"head-{self.port}.log").read_text(errors="replace")
            raise RuntimeError(f"{exc}: {log[-3000:]}") from None
        return time.monotonic() - self.started_at

    def cookie(self, user: str = OWNER) -> str:
        return session_cookie(self.secret, user)

    def stop(self) -> None:
        stop(self.process)


@contextlib.contextmanager
def heads(data_dir: Path, count: int, **env: str) -> Iterator[list[HeadProcess]]:
    """`count` heads sharing one NextAuth secret (and what `env` says: MONGODB_URI,
    REDIS_URL), without runs of their own (INDEXER_WARM=0); stopped on exit."""
    secret = secrets.token_urlsafe(32)
    started: list[HeadProcess] = []
    try:
        for _ in range(count):
            started.append(HeadProcess.start(data_dir, secret=secret, INDEXER_WARM="0", **env))
        for head in started:
            head.wait_ready(runs=False)
        yield started
    finally:
        for head in started:
            head.stop()


def session_cookie(secret: str, user: str = OWNER) -> str:
    now = int(time.time())
    token = encode_session_token({"sub": user, "iat": now, "exp": now + 3600}, secret)
    return f"next-auth.session-token={token}"


def interrupt_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every `finally` stops what it started."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def raise_fd_limit() -> None:
    """Let this process hold as many sockets as the hard limit allows."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- a workspace, a timed run, the chunks of a corpus --------------------------------------


async def new_workspace(mongo_uri: str, db_name: str, paths: Sequence[Path]) -> str:
    """Indexes, a workspace of OWNER and its documents in GridFS, as `indexer add` leaves
    them."""
    client = open_client(mongo_uri)
    try:
        db = client[db_name]
        await ensure_indexes(db)
        workspace_id = str(await create_workspace(db, name="bench", owner_id=OWNER, member_ids=[]))
        for path in paths:
            added = await add_document(db, workspace_id, str(path), max_bytes=10**10)
            if added.error:
                raise RuntimeError(f"{path}: {added.error}")
        return workspace_id
    finally:
        await client.close()


@functools.cache
def _no_head_url() -> str:
    """One HEAD_URL nobody listens on for the whole process (settings that differ would not
    find each other's parked actors)."""
    return f"http://127.0.0.1:{free_port()}"


def run_settings(mongo_uri: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for runs with no head: progress events are refused at once and dropped."""
    settings = Settings(
        mongodb_uri=Secret(mongo_uri),
        mongodb_db="bench",
        data_dir=data_dir,
        head_url=_no_head_url(),
        publish_token=Secret("bench-no-head"),
    )
    return settings.with_overrides(**overrides)


@dataclass
class TimedRun:
    """One `run_index`: its workspace, summary, wall seconds and CPU by process."""

    workspace_id: str
    summary: RunSummary
    seconds: float
    cpu: CpuMeter


def timed_run(settings: Settings, workspace_id: str) -> TimedRun:
    """`run_index` of a workspace with the clock and the CPU meter on; raises unless the run
    succeeded. Ray must be connected."""
    from cluster.driver import run_index  # imports Ray, which scripts without runs skip

    with CpuMeter() as meter:
        started = time.monotonic()
        summary = asyncio.run(run_index(settings, workspace_id))
        seconds = time.monotonic() - started
    if summary.status != "succeeded":
        raise RuntimeError(f"run_index {summary.status}: {summary.error}")
    return TimedRun(workspace_id, summary, seconds, meter)


def timed_index(settings: Settings, paths: Sequence[Path]) -> TimedRun:
    """A new workspace holding `paths` (untimed), then `timed_run` of it."""
    uri = settings.mongodb_uri.reveal() if settings.mongodb_uri else ""
    return timed_run(settings, asyncio.run(new_workspace(uri, settings.mongodb_db, paths)))


def chunk_batches(path: Path) -> list[list[str]]:
    """The chunk texts of a PDF, grouped by CPU_PAGE_BATCH pages as the driver sends them
    to a CPU embed actor (empty groups left out)."""
    document = open_pdf(path.read_bytes())
    batches: list[list[str]] = []
    for first in range(0, document.page_count, CPU_PAGE_BATCH):
        batch: list[str] = []
        for page_no in range(first, min(first + CPU_PAGE_BATCH, document.page_count)):
            blocks = blocks_from_dict(document[page_no].get_text("dict", flags=0))
            batch.extend(chunk.text for chunk in chunk_page(page_text(blocks), page_no))
        if batch:
            batches.append(batch)
    return batches


def corpus_batches(args: argparse.Namespace) -> list[list[str]]:
    """The chunk batches (`chunk_batches`) of the generated corpus `args` asks for."""
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        paths = sample_corpus(Path(tmp), args)
        return [batch for path in paths for batch in chunk_batches(path)]


def latex_manual(folder: Path, pages: int) -> Path:
    """The first `pages` pages of a LaTeX package's manual (tabularx's, from Debian's
    `texlive-latex-base-doc`, fetched once with `apt-get download`; never committed)."""
    import pymupdf

    excerpt = folder / f"tabularx-manual-{pages}p.pdf"
    if excerpt.exists():
        return excerpt
    folder.mkdir(parents=True, exist_ok=True)
    manual = folder / "root/usr/share/doc/texlive-doc/latex/tools/tabularx.pdf"
    if not manual.exists():
        download = ["apt-get", "download", "texlive-latex-base-doc"]
        if subprocess.run(download, cwd=folder, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=True)
            subprocess.run(download, cwd=folder, capture_output=True, check=True)
        package = next(folder.glob("texlive-latex-base-doc_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(package), str(folder / "root")], check=True)
    document = pymupdf.open(manual)
    document.select(list(range(pages)))
    document.save(excerpt)
    document.close()
    return excerpt


# -- a run's work in one process -----------------------------------------------------------


def plain_work(path: Path, model: Any, *, dpi: int, precision: str) -> int:
    """A run's per-page work in one process, nothing stored: open the PDF, render a PNG
    preview of each page, extract its text layout, chunk it, embed the chunks. Returns the
    number of chunks."""
    document = open_pdf(path.read_bytes())
    texts: list[str] = []
    for page_no, page in enumerate(document):
        encode_png(page.get_pixmap(dpi=preview_dpi(page.rect.width, page.rect.height, dpi)))
        blocks = blocks_from_dict(page.get_text("dict", flags=0))
        texts.extend(chunk.text for chunk in chunk_page(page_text(blocks), page_no))
    if texts:
        encode(model, texts, precision=precision)
    return len(texts)


class EncodeStreams:
    """The embed actor's encode streams outside Ray: a thread of one torch thread per model,
    each batch on a model no other thread is using (a fast tokenizer must not be called from
    two threads at once)."""

    def __init__(self, models: list[Any]) -> None:
        import torch

        self._free: queue.Queue[Any] = queue.Queue()
        for model in models:
            self._free.put(model)
        self._threads = ThreadPoolExecutor(
            len(models), initializer=torch.set_num_threads, initargs=(1,)
        )

    def __enter__(self) -> EncodeStreams:
        return self

    def __exit__(self, *exc: object) -> None:
        self._threads.shutdown()

    def encode_all(self, batches: list[list[str]], batch_size: int | None = None) -> None:
        """Encode every batch (`batch_size` texts a pass; None: `encode`'s choice)."""
        list(self._threads.map(functools.partial(self._encode, size=batch_size), batches))

    def _encode(self, texts: list[str], size: int | None) -> None:
        model = self._free.get()
        try:
            encode(model, texts, size)
        finally:
            self._free.put(model)


# -- Socket.IO clients ---------------------------------------------------------------------


class RoomClient:
    """A browser stand-in over the websocket transport: connects with a session cookie,
    joins a workspace room; `sio` takes the handlers of the events a benchmark counts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self._joined: asyncio.Future[Any] | None = None
        self.joined: Any = None  # the last `workspace:joined` answer
        self.sio.on("workspace:joined", self._answer)
        self.sio.on("error", self._refused)

    async def _answer(self, data: Any) -> None:
        if self._joined is not None and not self._joined.done():
            self._joined.set_result(data)

    async def _refused(self, data: Any) -> None:
        if self._joined is not None and not self._joined.done():
            self._joined.set_exception(RuntimeError(f"join refused: {data!r}"))

    async def connect(self, cookie: str) -> bool:
        with contextlib.suppress(socketio.exceptions.ConnectionError, OSError):
            await self.sio.connect(
                self.url,
                headers={"Cookie": cookie},
                transports=["websocket"],
                wait_timeout=SOCKET_TIMEOUT_S,
            )
        return self.sio.connected

    async def join(self, workspace_id: str, **fields: Any) -> float | None:
        """Milliseconds from `workspace:join` to `workspace:joined`; None when refused or
        timed out."""
        self._joined = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        try:
            await self.sio.emit("workspace:join", {"workspaceId": workspace_id, **fields})
            self.joined = await asyncio.wait_for(self._joined, SOCKET_TIMEOUT_S)
        except (RuntimeError, TimeoutError, socketio.exceptions.SocketIOError):
            return None
        return (time.perf_counter() - started) * 1000

    async def disconnect(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), SOCKET_TIMEOUT_S)


async def in_waves(coros: Sequence[Awaitable[Any]], wave: int) -> list[Any]:
    """Await `wave` at a time, keeping their order."""
    results: list[Any] = []
    for start in range(0, len(coros), wave):
        results += await asyncio.gather(*coros[start : start + wave])
    return results


class ClientProcess:
    """Clients run in a child process of the script (`script --role ROLE ...`), so they do
    not share a core's event loop with what they measure. The child reports tagged JSON
    lines on its stdout (`tell_parent`) and reads the parent's on its stdin (`parent_lines`)."""

    TIMEOUT_S = 900.0

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, script: str, *args: str, env: dict[str, str]) -> ClientProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            script,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
            limit=1 << 22,
        )
        return cls(process)

    async def read(self, tag: str) -> dict[str, Any]:
        """The JSON of the next line tagged `tag`; other lines are echoed to stderr."""
        assert self.process.stdout is not None
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), self.TIMEOUT_S)
            if not line:
                raise RuntimeError(f"the client process exited before {tag}")
            text = line.decode()
            if text.startswith(tag + " "):
                return dict(json.loads(text[len(tag) + 1 :]))
            print(text.rstrip(), file=sys.stderr)

    async def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), SOCKET_TIMEOUT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def tell_parent(tag: str, body: dict[str, Any]) -> None:
    print(tag, json.dumps(body), flush=True)


async def parent_lines() -> asyncio.StreamReader:
    """The lines the parent process sends (`ClientProcess.tell`); call once per child."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader
