"""Socket.IO join and broadcast latency: one in-memory head versus two heads sharing Redis.

Run:  .venv/bin/python bench/broadcast.py [--clients 500] [--events 50]

What runs (all on loopback, all stopped on exit):
- the embedded MongoDB-protocol server (SecantusDB, in memory) holding one workspace;
- configuration "in-memory": one head (`python -m cluster.cli head`) with python-socketio's
  in-memory manager; events are published through that head's HTTP endpoint
  (`/internal/events`), the only path a single head without Redis offers;
- configuration "redis": a `redis-server` and two heads with REDIS_URL set, clients split
  evenly over both; events are published straight into Redis by `make_publisher` with
  REDIS_URL set (the path runs use in production), or through head 1's HTTP endpoint
  with `--redis-publish http`;
- the N clients, in a separate process (this script with `--role clients`): python-socketio
  AsyncClients over the websocket transport, authenticated with a minted NextAuth cookie,
  all in ONE workspace room. They connect in waves (`--wave`, default 50), then join in
  waves of the same size.

What is measured:
- join latency: from emitting `workspace:join` to receiving `workspace:joined`, per client
  (perf_counter in the client process; up to `--wave` joins are in flight at once). It is
  mostly the head's workspace lookup in MongoDB; with Redis the `workspace:joined` reply
  is also published on the Redis channel, as python-socketio's Redis manager does for
  every emit, even one addressed to a local socket.
- broadcast latency: the publisher stamps `sentAt = time.time()` (an extra field of a
  valid `index:progress` payload, with `benchSeq`, not `seq`, which heads overwrite with
  their history's numbering) just before its send; each client subtracts it from
  `time.time()` on receipt. Both processes read the same machine clock. After one
  warm-up event (not counted), E events are sent on a fixed schedule `--interval-ms`
  apart (default 20), open loop: a send does not wait for the previous one to return, so
  both configurations get the same offered load. Each event reaches every client: N x E
  samples. Every client must get every event exactly once; missing and duplicate
  deliveries are counted and a nonzero count (or a client that did not join) makes the
  exit status 1.

How to read it: p50 is the typical delay, p99 the tail, max the worst; all in ms. The
ratio line divides redis by in-memory (above 1: Redis is slower). Under each table one
line per configuration gives: connect time of all clients; the latency of event 0 alone
(nothing queued ahead of it: the fan-out latency of one event); how long the publishes
took to return; and the delivery rate from the first send to the last receipt.

Beware saturation: the default load is N x 50 deliveries per second (25,000/s for 500
clients), far above what two shared cores can push through Python heads and one Python
client process (a few thousand per second). Events then queue behind each other and the
broadcast percentiles measure that backlog (they grow with E), not the latency of one
event; compare "event 0 alone", or raise `--interval-ms` (e.g. 200) for the unsaturated
regime. Everything (MongoDB, Redis, heads, clients) shares the same cores, so other load
on the machine moves the figures a lot: run it on a quiet machine and repeat it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import socket
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
import redis
import socketio

from core.db import open_client
from core.embedded_mongo import EmbeddedMongo
from core.publisher import EventPublisher, make_publisher
from core.settings import load_settings
from core.workspaces import create_workspace
from head.nextauth import encode_session_token

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
OWNER_ID = "bench-owner"
WEB_APP_URL = "http://web.example.test"
COOKIE_ENV = "BENCH_SESSION_COOKIE"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
SOCKET_TIMEOUT_S = 15.0
CLIENT_PHASE_TIMEOUT_S = 90.0
DELIVERY_GRACE_S = 30.0
POLL_S = 0.1
EVENT = "index:progress"
BENCH_SEQ = "benchSeq"  # not `seq`: a head numbers every index event `{epoch, seq}` itself


# -- shared ----------------------------------------------------------------------------


def raise_fd_limit() -> None:
    """Let this process hold as many sockets as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values, default=float("nan")),
    }


# -- client process --------------------------------------------------------------------


@dataclass
class Tally:
    """Deliveries of all clients of the client process."""

    events: int
    expected: int
    received: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    first_event_ms: list[float] = field(default_factory=list)
    first_sent: float = float("inf")
    last_received: float = 0.0
    all_in: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, counts: list[int], data: Any) -> None:
        now = time.time()
        seq = data.get(BENCH_SEQ, -1) if isinstance(data, dict) else -1
        if not 0 <= seq < self.events:
            return  # warm-up or foreign event
        counts[seq] += 1
        if counts[seq] == 1:
            sent = float(data["sentAt"])
            self.latencies_ms.append((now - sent) * 1000)
            if seq == 0:
                self.first_event_ms.append((now - sent) * 1000)
                self.first_sent = min(self.first_sent, sent)
            self.last_received = now
            self.received += 1
            if self.received >= self.expected:
                self.all_in.set()


class BenchClient:
    """One browser stand-in: connects, joins, counts `index:progress` deliveries."""

    def __init__(self, url: str, tally: Tally) -> None:
        self.url = url
        self.tally = tally
        self.counts = [0] * tally.events
        self.sio = socketio.AsyncClient(reconnection=False)
        self._joined: asyncio.Future[Any] | None = None
        self.sio.on("workspace:joined", self._on_joined)
        self.sio.on("error", self._on_error)
        self.sio.on(EVENT, self._on_progress)

    async def _on_joined(self, data: Any) -> None:
        if self._joined is not None and not self._joined.done():
            self._joined.set_result(data)

    async def _on_error(self, data: Any) -> None:
        if self._joined is not None and not self._joined.done():
            self._joined.set_exception(RuntimeError(f"join refused: {data!r}"))

    async def _on_progress(self, data: Any) -> None:
        self.tally.record(self.counts, data)

    async def connect(self, cookie: str) -> bool:
        try:
            await self.sio.connect(
                self.url,
                headers={"Cookie": cookie},
                transports=["websocket"],
                wait_timeout=SOCKET_TIMEOUT_S,
            )
        except (socketio.exceptions.ConnectionError, OSError):
            return False
        return self.sio.connected

    async def join(self, workspace_id: str) -> float | None:
        """Join latency in ms, or None when the join failed or timed out."""
        self._joined = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        try:
            await self.sio.emit("workspace:join", {"workspaceId": workspace_id})
            await asyncio.wait_for(self._joined, SOCKET_TIMEOUT_S)
        except (RuntimeError, TimeoutError, socketio.exceptions.SocketIOError):
            return None
        return (time.perf_counter() - started) * 1000

    async def disconnect(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), STOP_TIMEOUT_S)


async def in_waves(coros: Sequence[Any], wave: int) -> list[Any]:
    """Await coroutines `wave` at a time, keeping their order."""
    results: list[Any] = []
    for start in range(0, len(coros), wave):
        results += await asyncio.gather(*coros[start : start + wave])
    return results


async def stdin_reader() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def report(tag: str, body: dict[str, Any]) -> None:
    print(tag, json.dumps(body), flush=True)


async def run_clients(args: argparse.Namespace) -> None:
    cookie = os.environ[COOKIE_ENV]
    urls = args.urls.split(",")
    tally = Tally(events=args.events, expected=0)
    clients = [BenchClient(urls[i % len(urls)], tally) for i in range(args.clients)]
    started = time.perf_counter()
    ok = await in_waves([c.connect(cookie) for c in clients], args.wave)
    connect_s = time.perf_counter() - started
    connected = [c for c, up in zip(clients, ok, strict=True) if up]
    joins = await in_waves([c.join(args.workspace) for c in connected], args.wave)
    members = [c for c, ms in zip(connected, joins, strict=True) if ms is not None]
    tally.expected = len(members) * args.events
    join_ms = [ms for ms in joins if ms is not None]
    report("READY", {"connected": len(connected), "joined": len(members)})
    stdin = await stdin_reader()
    await asyncio.wait_for(stdin.readline(), CLIENT_PHASE_TIMEOUT_S)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tally.all_in.wait(), DELIVERY_GRACE_S)
    counts = [n for c in members for n in c.counts]
    result = {
        "clients": len(clients),
        "connected": len(connected),
        "joined": len(members),
        "connect_s": connect_s,
        "join_ms": summary(join_ms),
        "broadcast_ms": summary(tally.latencies_ms),
        "first_event_ms": summary(tally.first_event_ms),
        "delivery_span_s": max(tally.last_received - tally.first_sent, 0.0),
        "deliveries": sum(counts),
        "expected": tally.expected,
        "missing": sum(1 for n in counts if n == 0),
        "duplicates": sum(n - 1 for n in counts if n > 1),
    }
    await in_waves([c.disconnect() for c in clients], args.wave)
    report("RESULT", result)


# -- orchestrator: services ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Any, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `check()` until true; fail when `proc` exits or READY_TIMEOUT_S passes."""
    deadline = time.monotonic() + READY_TIMEOUT_S
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


@contextlib.contextmanager
def running(
    command: list[str], log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process logging to `log`, stopped (TERM, then KILL) on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
        )
    try:
        yield proc
    finally:
        stop_process(proc)


def redis_answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as r:
            return bool(r.ping())
    except (redis.RedisError, OSError):
        return False


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    with running(command, workdir / "redis.log", dict(os.environ)) as proc:
        wait_for(lambda: redis_answers(url), "redis-server", proc)
        yield url


def head_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class Backend:
    """What the heads share: the database, the session secret, the workspace."""

    mongo_uri: str
    db_name: str
    secret: str
    workspace_id: str
    workdir: Path


def head_env(backend: Backend, port: int, redis_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MONGODB_URI=backend.mongo_uri,
        MONGODB_DB=backend.db_name,
        NEXTAUTH_SECRET=backend.secret,
        WEB_APP_URL=WEB_APP_URL,
        PORT=str(port),
        INDEXER_DATA_DIR=str(backend.workdir / "data"),
    )
    env.pop("REDIS_URL", None)
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


@contextlib.contextmanager
def head_processes(
    backend: Backend, count: int, redis_url: str | None
) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    """Start `count` heads, wait until each answers /readyz; yield (URL, process) pairs."""
    with contextlib.ExitStack() as stack:
        started: list[tuple[str, subprocess.Popen[bytes]]] = []
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "cluster.cli", "head",
                       "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
            log = backend.workdir / f"head-{port}.log"
            env = head_env(backend, port, redis_url)
            proc = stack.enter_context(running(command, log, env))
            started.append((f"http://127.0.0.1:{port}", proc))
        for url, proc in started:
            wait_for(lambda u=url: head_ready(u), f"head {url}", proc)
        yield started


@contextlib.contextmanager
def heads(backend: Backend, count: int, redis_url: str | None) -> Iterator[list[str]]:
    """Start `count` heads, wait until each answers /readyz; yield their URLs."""
    with head_processes(backend, count, redis_url) as started:
        yield [url for url, _ in started]


async def create_bench_workspace(mongo_uri: str, db_name: str) -> str:
    client = open_client(mongo_uri)
    try:
        workspace_id = await create_workspace(
            client[db_name], name="broadcast bench", owner_id=OWNER_ID, member_ids=[]
        )
    finally:
        await client.close()
    return str(workspace_id)


def session_cookie(secret: str) -> str:
    now = int(time.time())
    claims = {"sub": OWNER_ID, "iat": now, "exp": now + 3600, "jti": uuid.uuid4().hex}
    return f"next-auth.session-token={encode_session_token(claims, secret)}"


# -- orchestrator: one configuration ---------------------------------------------------


def progress_payload(seq: int, events: int) -> dict[str, Any]:
    return {
        "phase": "embed",
        "docsDone": max(seq, 0),
        "docsTotal": events,
        "pagesDone": max(seq, 0),
        "pagesTotal": events,
        BENCH_SEQ: seq,
        "sentAt": time.time(),
    }


async def publish_events(
    publisher: EventPublisher, workspace_id: str, events: int, interval_s: float
) -> float:
    """One warm-up event (seq -1, ignored by clients), then `events` on a fixed schedule.

    Open loop: each send starts on its slot without waiting for the previous one to
    return, so a slow head cannot slow the publisher down and hide its own queueing.
    Returns the seconds from the first send until every publish has returned.
    """
    await publisher.publish(workspace_id, EVENT, progress_payload(-1, events))
    await asyncio.sleep(0.5)
    start = time.monotonic()
    sends: list[asyncio.Task[None]] = []
    for seq in range(events):
        delay = start + seq * interval_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        payload = progress_payload(seq, events)
        sends.append(asyncio.create_task(publisher.publish(workspace_id, EVENT, payload)))
    await asyncio.wait_for(asyncio.gather(*sends), CLIENT_PHASE_TIMEOUT_S)
    return time.monotonic() - start


async def read_tagged(stream: asyncio.StreamReader, tag: str) -> dict[str, Any]:
    """The JSON after the next line starting with `tag`; other lines are echoed."""
    deadline = time.monotonic() + CLIENT_PHASE_TIMEOUT_S
    while True:
        remaining = deadline - time.monotonic()
        line = (await asyncio.wait_for(stream.readline(), max(remaining, 0.1))).decode()
        if not line:
            raise RuntimeError(f"client process exited before {tag}")
        if line.startswith(tag + " "):
            return dict(json.loads(line[len(tag) + 1 :]))
        print(line.rstrip(), file=sys.stderr)


async def spawn_clients(
    args: argparse.Namespace, urls: list[str], backend: Backend
) -> asyncio.subprocess.Process:
    """The client process; its stderr is ours, its stdout carries READY and RESULT."""
    env = dict(os.environ, **{COOKIE_ENV: session_cookie(backend.secret)})
    return await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), "--role", "clients",
        "--clients", str(args.clients), "--events", str(args.events),
        "--wave", str(args.wave), "--urls", ",".join(urls),
        "--workspace", backend.workspace_id,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env=env, limit=1 << 20,
    )  # fmt: skip


async def stop_child(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def measure(
    args: argparse.Namespace,
    urls: list[str],
    backend: Backend,
    publisher: EventPublisher,
    on_ready: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Run the client process against `urls`, publish, return its RESULT.

    `on_ready` is called once every client has joined, before the first publish.
    """
    proc = await spawn_clients(args, urls, backend)
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        ready = await read_tagged(proc.stdout, "READY")
        if ready["joined"] == 0:
            raise RuntimeError(f"no client joined: {ready}")
        if on_ready is not None:
            on_ready()
        interval = args.interval_ms / 1000
        span = await publish_events(publisher, backend.workspace_id, args.events, interval)
        proc.stdin.write(b"PUBLISHED\n")
        await proc.stdin.drain()
        return {**await read_tagged(proc.stdout, "RESULT"), "publish_span_s": span}
    finally:
        await stop_child(proc)


async def run_config(
    args: argparse.Namespace,
    urls: list[str],
    backend: Backend,
    publish_env: dict[str, str],
    on_ready: Callable[[], object] | None = None,
) -> dict[str, Any]:
    settings = load_settings({"NEXTAUTH_SECRET": backend.secret, **publish_env})
    publisher = make_publisher(settings, timeout_s=SOCKET_TIMEOUT_S)
    try:
        return await measure(args, urls, backend, publisher, on_ready)
    finally:
        await publisher.aclose()


# -- orchestrator: output --------------------------------------------------------------

HEADER = (
    f"{'configuration':<34}{'clients':>9}{'join p50':>10}{'join p99':>10}"
    f"{'bcast p50':>11}{'bcast p99':>11}{'bcast max':>11}{'delivered':>15}{'missing':>9}"
    f"{'dup':>6}"
)


def result_line(name: str, r: dict[str, Any]) -> str:
    join, bcast = r["join_ms"], r["broadcast_ms"]
    delivered = f"{r['deliveries']}/{r['expected']}"
    return (
        f"{name:<34}{r['joined']:>4}/{r['clients']:<4}{join['p50']:>10.1f}{join['p99']:>10.1f}"
        f"{bcast['p50']:>11.1f}{bcast['p99']:>11.1f}{bcast['max']:>11.1f}{delivered:>15}"
        f"{r['missing']:>9}{r['duplicates']:>6}"
    )


def ratio_line(
    memory: dict[str, Any], shared: dict[str, Any], label: str = "redis / in-memory"
) -> str:
    """`shared` divided by `memory`, per figure; above 1 means `shared` is slower."""

    def ratio(kind: str, pct: str) -> str:
        base = memory[kind][pct]
        return f"{shared[kind][pct] / base:.2f}x" if base > 0 else "n/a"

    return (
        f"{label}: "
        f"broadcast p50 {ratio('broadcast_ms', 'p50')}, p99 {ratio('broadcast_ms', 'p99')}; "
        f"join p50 {ratio('join_ms', 'p50')}, p99 {ratio('join_ms', 'p99')}"
    )


def print_report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{args.clients} clients in one workspace room, {args.events} index:progress "
        f"events {args.interval_ms:g} ms apart; times in ms"
    )
    print(HEADER)
    for name, result in results.items():
        print(result_line(name, result))
    memory, shared = results.values()
    print(ratio_line(memory, shared))
    for name, r in results.items():
        print(detail_line(name, r))


def detail_line(name: str, r: dict[str, Any]) -> str:
    """Connect time, event 0 alone (no queue ahead of it), publish time, delivery rate."""
    first, span = r["first_event_ms"], r["delivery_span_s"]
    rate = r["deliveries"] / span if span > 0 else float("nan")
    return (
        f"  {name}: connected {r['connected']}/{r['clients']} in {r['connect_s']:.1f} s; "
        f"event 0 alone p50/p99 {first['p50']:.1f}/{first['p99']:.1f} ms; "
        f"published in {r['publish_span_s']:.2f} s; "
        f"{r['deliveries']} deliveries in {span:.2f} s ({rate:.0f}/s)"
    )


# -- orchestrator: main ----------------------------------------------------------------


async def run_all(args: argparse.Namespace, backend: Backend) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with heads(backend, 1, None) as urls:
        name = "in-memory, 1 head, HTTP publish"
        results[name] = await run_config(args, urls, backend, {"HEAD_URL": urls[0]})
    with redis_server(backend.workdir) as redis_url, heads(backend, 2, redis_url) as urls:
        if args.redis_publish == "redis":
            name, publish_env = "redis, 2 heads, Redis publish", {"REDIS_URL": redis_url}
        else:
            name, publish_env = "redis, 2 heads, HTTP publish", {"HEAD_URL": urls[0]}
        results[name] = await run_config(args, urls, backend, publish_env)
    return results


def orchestrate(args: argparse.Namespace) -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-broadcast-"))
    try:
        with EmbeddedMongo(workdir / "mongo", in_memory=True) as mongo:
            db_name = f"bench_{uuid.uuid4().hex[:12]}"
            workspace_id = asyncio.run(create_bench_workspace(mongo.uri, db_name))
            backend = Backend(mongo.uri, db_name, secrets.token_urlsafe(32), workspace_id, workdir)
            results = asyncio.run(run_all(args, backend))
    except KeyboardInterrupt:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    except BaseException:
        print(f"bench failed; logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    print_report(args, results)
    print(f"total {time.monotonic() - started:.0f} s")
    exact = all(r["missing"] == 0 and r["duplicates"] == 0 for r in results.values())
    joined = all(r["joined"] == r["clients"] for r in results.values())
    if not (exact and joined):
        print("FAIL: some client did not join or did not get every event exactly once")
    return 0 if exact and joined else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--wave", type=int, default=50, help="clients connecting at once")
    parser.add_argument("--redis-publish", choices=("redis", "http"), default="redis",
                        help="redis: straight into Redis; http: through head 1")  # fmt: skip
    parser.add_argument("--role", choices=("bench", "clients"), default="bench",
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.events < 1 or args.wave < 1:
        parser.error("--clients, --events and --wave must be at least 1")
    return args


def interrupt_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every `finally` stops what it started."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    if args.role == "clients":
        asyncio.run(run_clients(args))
        return 0
    interrupt_on_sigterm()
    try:
        return orchestrate(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
