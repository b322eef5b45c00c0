"""The head's fan-out against a Node socket.io server (and stock python-socketio), side by side.

Run:  .venv/bin/python bench/node_peer.py [--clients 500] [--rate 20] [--seconds 10]
                                          [--burst 200] [--rounds 2] [--servers head,node,stock]
(needs `npm ci` in bench/node once: socket.io and socket.io-client from npm)

What runs (all on loopback, all stopped on exit):
- "head": `python -m cli.main head` (real NextAuth cookie check, MongoDB lookup on each
  join, per-socket session, event history, the publish token), over the embedded MongoDB
  (in memory) holding one workspace; INDEXER_WARM=0 (no Ray);
- "head xK": K head processes sharing rooms through a `redis-server` (REDIS_URL; "head x1"
  is one head with Redis), clients spread over them, events published through the first
  (`--head-processes K`, repeatable with different K); the redis-server's CPU and memory
  count as the server's;
- "node": `node bench/node/relay.js`, socket.io 4 with default options doing the least the
  same clients and publisher need (join a room, answer, relay POSTed events to the room);
- "stock": `bench/node/python_relay.py`, the same least work on python-socketio's and
  uvicorn's defaults;
- `--head-tree NAME=DIR`: a head run from another source tree (`git worktree add DIR
  COMMIT`, or `git archive COMMIT | tar -x -C DIR`), to compare commits in one run.

Every server is driven by the same Node process (`bench/node/clients.js`): `--clients` npm
socket.io-client connections over websocket (the browser's library), all in one room,
connecting and joining in waves of `--wave`. The publisher is this process, one HTTP POST
per event to `/internal/events` (the head's with its bearer token); each payload carries
`sentAt` (time.time() just before its POST) and the client takes latency against its own
clock at receipt (one machine, one clock). Two phases per measurement:
- steady (after one warm-up event that no phase counts): `--rate` events a second for
  `--seconds`, open loop (a send does not wait for the
  previous one); p50/p99 latency of every delivery; server CPU seconds (user + system, all
  its processes) from the first send to the last receipt, divided by the deliveries;
- burst: `--burst` events sent at once (HTTP client pool of 100 connections); deliveries
  per second from the first send to the last receipt.
KiB per connection: the server's RSS (all its processes) after every client joined minus
before any connected, divided by the clients. Every client must get every event exactly
once, every client in the same order (the order the server sent them in: concurrent
publishes may reach it in another), and on the head with a history number (`seq`) that
only grows; exit status 1 otherwise.

Servers are measured one after the other, `--rounds` times, the order rotating every round;
the table gives the median of the rounds and each ratio to Node's. "other load" is the share
of all CPUs that processes not this benchmark's took during each measurement: on a shared
machine, compare rows measured under similar load (CPU per delivery moves least with it);
`--quiet-below 0.3` waits for a quieter machine before each measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from harness import ClientProcess, free_port, median, other_load, print_table

from core.db import open_client
from core.embedded_mongo import EmbeddedMongo
from core.publisher import HttpEventPublisher
from core.settings import Secret, Settings
from core.workspaces import create_workspace
from head.nextauth import encode_session_token

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = REPO_ROOT / "bench" / "node"
OWNER_ID = "bench-owner"
WEB_APP_URL = "http://web.example.test"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
PHASE_TIMEOUT_S = 120.0
PUBLISH_TIMEOUT_S = 30.0
SETTLE_S = 1.0
QUIET_WAIT_S = 300.0
POLL_S = 0.1
EVENT = "index:progress"


# -- servers ---------------------------------------------------------------------------


@dataclass
class Server:
    """A server under test: the URLs clients spread over, where events are published (with
    which bearer token), the processes whose CPU and memory are counted."""

    name: str
    urls: list[str]
    publish_url: str
    token: str
    processes: list[psutil.Process] = field(default_factory=list)

    def cpu_s(self) -> float:
        return sum(_cpu_s(p) for p in self.processes)

    def rss(self) -> int:
        return sum(_rss(p) for p in self.processes)


def _cpu_s(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        return float(times.user + times.system)
    return 0.0


def _rss(process: psutil.Process) -> int:
    with contextlib.suppress(psutil.Error):
        return int(process.memory_info().rss)
    return 0


@dataclass(frozen=True)
class Backend:
    """What every server of a run shares: the database, the secret, the workspace."""

    mongo_uri: str
    db_name: str
    secret: str
    workspace_id: str
    workdir: Path

    def cookie(self) -> str:
        now = int(time.time())
        claims = {"sub": OWNER_ID, "iat": now, "exp": now + 7200, "jti": uuid.uuid4().hex}
        return f"next-auth.session-token={encode_session_token(claims, self.secret)}"

    def publish_token(self) -> str:
        settings = Settings(nextauth_secret=Secret(self.secret))
        return settings.effective_publish_token().reveal()


def wait_until(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def child(command: list[str], log: Path, env: dict[str, str], cwd: Path) -> Iterator[Any]:
    """A child process logging to `log`, ended (TERM, then KILL) on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd)  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def printed_port(log: Path) -> int | None:
    """The port a relay printed (`listening <port>`), once it has."""
    with contextlib.suppress(OSError):
        for line in log.read_text().splitlines():
            if line.startswith("listening "):
                return int(line.split()[1])
    return None


@contextlib.contextmanager
def relay(name: str, command: list[str], backend: Backend) -> Iterator[Server]:
    """A relay (relay.js or python_relay.py) on a port of its choosing."""
    log = backend.workdir / f"{name}.log"
    with child(command, log, dict(os.environ, PORT="0"), NODE_DIR) as proc:
        wait_until(lambda: printed_port(log) is not None, name, proc)
        url = f"http://127.0.0.1:{printed_port(log)}"
        wait_until(lambda: ready(url), f"{name} /readyz", proc)
        yield Server(name, [url], url, "relay", [psutil.Process(proc.pid)])


def head_env(backend: Backend, port: int, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RAY_ADDRESS")}
    env.update(
        MONGODB_URI=backend.mongo_uri,
        MONGODB_DB=backend.db_name,
        NEXTAUTH_SECRET=backend.secret,
        WEB_APP_URL=WEB_APP_URL,
        PORT=str(port),
        INDEXER_DATA_DIR=str(backend.workdir / "data"),
        INDEXER_WARM="0",
    )
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


def cli_module(tree: Path) -> str:
    """The module `python -m` runs as `indexer` in the source `tree`."""
    return "cli.main" if (tree / "cli" / "main.py").exists() else "cluster.cli"


@contextlib.contextmanager
def heads(
    backend: Backend, count: int, redis_url: str | None, *, tree: Path = REPO_ROOT, name: str = ""
) -> Iterator[Server]:
    """`count` head processes (`indexer head` as `python -m` runs it from the source `tree`:
    `cli.main`, or `cluster.cli` in trees that predate the `cli` package),
    sharing rooms through Redis when there are several; events are published through the
    first."""
    with contextlib.ExitStack() as stack:
        urls, procs = [], []
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", cli_module(tree), "head",
                       "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
            log = backend.workdir / f"head-{port}.log"
            env = head_env(backend, port, redis_url)
            procs.append(stack.enter_context(child(command, log, env, tree)))
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            wait_until(lambda u=url: ready(u), f"head {url}", proc)
        name = name or ("head" if redis_url is None else f"head x{count}")
        processes = [psutil.Process(p.pid) for p in procs]
        yield Server(name, urls, urls[0], backend.publish_token(), processes)


def redis_answers(url: str) -> bool:
    import redis

    try:
        with redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as r:
            return bool(r.ping())
    except (redis.RedisError, OSError):
        return False


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, psutil.Process]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    with child(command, workdir / "redis.log", dict(os.environ), workdir) as proc:
        wait_until(lambda: redis_answers(url), "redis-server", proc)
        yield url, psutil.Process(proc.pid)


async def create_bench_workspace(mongo_uri: str, db_name: str) -> str:
    client = open_client(mongo_uri)
    try:
        workspace_id = await create_workspace(
            client[db_name], name="node peer bench", owner_id=OWNER_ID, member_ids=[]
        )
    finally:
        await client.close()
    return str(workspace_id)


# -- the client process ----------------------------------------------------------------


class Clients(ClientProcess):
    """`node clients.js` against one server: connected and joined on entry."""

    TIMEOUT_S = PHASE_TIMEOUT_S

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        super().__init__(process)
        self.ready: dict[str, Any] = {}

    @classmethod
    async def start_node(
        cls, args: argparse.Namespace, server: Server, backend: Backend
    ) -> Clients:
        env = dict(os.environ, BENCH_SESSION_COOKIE=backend.cookie())
        proc = await asyncio.create_subprocess_exec(
            "node", str(NODE_DIR / "clients.js"), ",".join(server.urls), backend.workspace_id,
            str(args.clients), str(args.wave),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
            cwd=NODE_DIR, limit=1 << 20,
        )  # fmt: skip
        clients = cls(proc)
        clients.ready = await clients.read("READY")
        return clients

    async def stop(self) -> None:
        """Asked to exit first, so the clients close their sockets cleanly."""
        if self.process.returncode is None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await self.tell("EXIT")
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


# -- measurement -----------------------------------------------------------------------


class ForeignLoad:
    """Share of all CPUs that processes other than this one and its descendants took."""

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        times = psutil.cpu_times()
        busy = times.user + times.nice + times.system + getattr(times, "irq", 0.0)
        busy += getattr(times, "softirq", 0.0) + getattr(times, "steal", 0.0)
        me = psutil.Process()
        mine = _cpu_s(me) + sum(_cpu_s(p) for p in me.children(recursive=True))
        return time.monotonic(), busy, mine

    def share(self) -> float:
        now, busy, mine = self._sample()
        wall, busy0, mine0 = self._start
        cores = psutil.cpu_count() or 1
        return max(0.0, (busy - busy0) - (mine - mine0)) / max((now - wall) * cores, 1e-9)


def progress(phase: str, seq: int, events: int) -> dict[str, Any]:
    return {
        "phase": "embed",
        "docsDone": seq,
        "docsTotal": events,
        "pagesDone": seq,
        "pagesTotal": events,
        "benchPhase": phase,
        "benchSeq": seq,
        "sentAt": time.time(),
    }


async def publish_one(publisher: HttpEventPublisher, workspace: str, payload: Any) -> None:
    payload["sentAt"] = time.time()
    await publisher.publish(workspace, EVENT, payload)


async def steady(publisher: HttpEventPublisher, workspace: str, events: int, rate: float) -> None:
    """`events` sends on a fixed schedule, open loop."""
    start = time.monotonic()
    sends = []
    for seq in range(events):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        payload = progress("steady", seq, events)
        sends.append(asyncio.create_task(publish_one(publisher, workspace, payload)))
    await asyncio.wait_for(asyncio.gather(*sends), PUBLISH_TIMEOUT_S)


async def burst(publisher: HttpEventPublisher, workspace: str, events: int) -> None:
    """`events` sends at once."""
    sends = [publish_one(publisher, workspace, progress("burst", s, events)) for s in range(events)]
    await asyncio.wait_for(asyncio.gather(*sends), PUBLISH_TIMEOUT_S)


async def phase(
    clients: Clients, server: Server, name: str, events: int, send: Callable[[], Any]
) -> tuple[dict[str, Any], float]:
    """One phase: its RESULT and the server's CPU seconds from the first send to the end."""
    await clients.tell(f"PHASE {name} {events}")
    await clients.read("STARTED")
    cpu = server.cpu_s()
    await send()
    await clients.tell(f"DONE {name}")
    result = await clients.read("RESULT")
    return result, server.cpu_s() - cpu


@dataclass
class Measured:
    server: str
    ready: dict[str, Any]
    steady: dict[str, Any]
    burst: dict[str, Any]
    steady_cpu_s: float
    kib_per_connection: float
    other_load: float

    def cpu_us_per_delivery(self) -> float:
        return self.steady_cpu_s / max(self.steady["deliveries"], 1) * 1e6

    def burst_rate(self) -> float:
        span = self.burst["spanS"]
        return self.burst["deliveries"] / span if span > 0 else float("nan")

    def exact(self) -> bool:
        phases = (self.steady, self.burst)
        joined = self.ready["joined"] == self.ready["clients"]
        return joined and all(
            p["missing"] == 0
            and p["duplicates"] == 0
            and p["outOfOrder"] == 0
            and p["historyBackwards"] == 0
            for p in phases
        )


@contextlib.asynccontextmanager
async def profiled(args: argparse.Namespace, server: Server, tag: str) -> Any:
    """With `--py-spy DIR`: py-spy samples each Python process of `server` meanwhile, into
    `DIR/<tag>-<pid>.txt` (collapsed stacks: one line per stack, then its sample count)."""
    if args.py_spy is None:
        yield
        return
    spy = str(REPO_ROOT / ".venv" / "bin" / "py-spy")
    recorders = []
    for process in server.processes:
        with contextlib.suppress(psutil.Error):
            if "python" not in process.name():
                continue
        out = str(args.py_spy / f"{tag}-{process.pid}.txt")
        command = [spy, "record", "--pid", str(process.pid), "--format", "raw",
                   "--rate", "250", "--nonblocking", "--output", out]  # fmt: skip
        quiet = asyncio.subprocess.DEVNULL
        recorders.append(await asyncio.create_subprocess_exec(*command, stdout=quiet, stderr=quiet))
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            await recorder.wait()


def wait_for_quiet(threshold: float) -> None:
    """With `--quiet-below`: wait (at most QUIET_WAIT_S) until the other load is under
    `threshold`, so that the servers are measured under similar load."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while (load := other_load()) >= threshold:
        if time.monotonic() > deadline:
            print(f"  other load still {load:.0%}: measuring anyway", file=sys.stderr)
            return


async def measure(args: argparse.Namespace, server: Server, backend: Backend, tag: str) -> Measured:
    """Connect and join every client to `server`, then the steady phase and the burst."""
    if args.quiet_below is not None:
        wait_for_quiet(args.quiet_below)
    load = ForeignLoad()
    await asyncio.sleep(SETTLE_S)
    before = server.rss()
    clients = await Clients.start_node(args, server, backend)
    publisher = HttpEventPublisher(server.publish_url, server.token, timeout_s=PUBLISH_TIMEOUT_S)
    try:
        await asyncio.sleep(SETTLE_S)
        joined = max(clients.ready["joined"], 1)
        kib = (server.rss() - before) / joined / 1024
        ws, events = backend.workspace_id, round(args.rate * args.seconds)
        # one event no phase counts: the publisher's first connection and the server's
        # first request on each path are not the steady state
        await publish_one(publisher, ws, progress("warm-up", 0, 1))
        async with profiled(args, server, f"{tag}-steady"):
            steady_result, steady_cpu = await phase(
                clients, server, "steady", events, lambda: steady(publisher, ws, events, args.rate)
            )
        async with profiled(args, server, f"{tag}-burst"):
            burst_result, _ = await phase(
                clients, server, "burst", args.burst, lambda: burst(publisher, ws, args.burst)
            )
    finally:
        await publisher.aclose()
        await clients.stop()
    return Measured(
        server.name, clients.ready, steady_result, burst_result, steady_cpu, kib, load.share()
    )


async def run_rounds(args: argparse.Namespace, backend: Backend) -> list[list[Measured]]:
    """Every server once a round, the order rotating by one each round."""
    names = server_names(args)
    rounds = []
    for index in range(args.rounds):
        shift = index % len(names)
        measured = []
        for name in names[shift:] + names[:shift]:
            with started(name, backend, args.head_tree) as server:
                tag = f"{name.replace(' ', '')}-r{index + 1}"
                measured.append(await measure(args, server, backend, tag))
            print(f"  round {index + 1}: {line(measured[-1])}", file=sys.stderr)
        rounds.append(measured)
    return rounds


# -- output ----------------------------------------------------------------------------


def line(m: Measured) -> str:
    s = m.steady["latencyMs"]
    return (
        f"{m.server}: steady p50/p99 {s['p50']:.1f}/{s['p99']:.1f} ms, "
        f"{m.cpu_us_per_delivery():.1f} us CPU/delivery, burst {m.burst_rate() / 1000:.1f}k/s, "
        f"{m.kib_per_connection:.1f} KiB/conn, joined {m.ready['joined']}/{m.ready['clients']}, "
        f"missing {m.steady['missing'] + m.burst['missing']}, "
        f"dup {m.steady['duplicates'] + m.burst['duplicates']}, "
        f"sockets out of order {m.steady['outOfOrder'] + m.burst['outOfOrder']}, "
        f"seq backwards {m.steady['historyBackwards'] + m.burst['historyBackwards']}, "
        f"other load {m.other_load:.0%}"
    )


FIGURES: list[tuple[str, Callable[[Measured], float], str]] = [
    ("steady p50 ms", lambda m: m.steady["latencyMs"]["p50"], "{:.1f}"),
    ("steady p99 ms", lambda m: m.steady["latencyMs"]["p99"], "{:.1f}"),
    ("server CPU us per delivery", Measured.cpu_us_per_delivery, "{:.1f}"),
    ("burst deliveries/s", Measured.burst_rate, "{:,.0f}"),
    ("KiB per connection", lambda m: m.kib_per_connection, "{:.1f}"),
    ("other load", lambda m: m.other_load, "{:.0%}"),
]


def print_report(args: argparse.Namespace, rounds: list[list[Measured]]) -> None:
    names = [m.server for m in rounds[0]]
    by_server = {name: [m for r in rounds for m in r if m.server == name] for name in names}
    print(
        f"\n{args.clients} socket.io-client connections (Node, websocket) in one room; "
        f"steady: {args.rate:g} events/s for {args.seconds:g} s; burst: {args.burst} at once; "
        f"median of {args.rounds} rounds; other load before the run {args.idle_load:.0%}\n"
    )
    header = ["", *names] + [f"{n} / node" for n in names if n != "node" and "node" in names]
    rows = []
    for label, figure, fmt in FIGURES:
        medians = {n: median([figure(m) for m in by_server[n]]) for n in names}
        row = [label, *(fmt.format(medians[n]) for n in names)]
        if "node" in names and label != "other load":
            row += [f"{medians[n] / medians['node']:.2f}x" for n in names if n != "node"]
        elif "node" in names:
            row += ["" for n in names if n != "node"]
        rows.append(row)
    print_table(header, rows)
    print()
    for index, measured in enumerate(rounds, 1):
        for m in measured:
            print(f"round {index} {line(m)}")


# -- main ------------------------------------------------------------------------------


async def create_backend(mongo_uri: str, workdir: Path) -> Backend:
    db_name = f"bench_{uuid.uuid4().hex[:12]}"
    workspace_id = await create_bench_workspace(mongo_uri, db_name)
    return Backend(mongo_uri, db_name, secrets.token_urlsafe(32), workspace_id, workdir)


def server_names(args: argparse.Namespace) -> list[str]:
    return [*args.servers, *(f"head x{n}" for n in args.head_processes), *args.head_tree]


@contextlib.contextmanager
def started(name: str, backend: Backend, trees: dict[str, Path]) -> Iterator[Server]:
    """A fresh server of that name, stopped on exit: a process that served the last round
    keeps the memory it freed, so each measurement starts its own."""
    if name in trees:
        with heads(backend, 1, None, tree=trees[name], name=name) as server:
            yield server
    elif name == "head":
        with heads(backend, 1, None) as server:
            yield server
    elif name in ("node", "stock"):
        if name == "node":
            command = [shutil.which("node") or "node", str(NODE_DIR / "relay.js")]
        else:
            command = [sys.executable, str(NODE_DIR / "python_relay.py")]
        with relay(name, command, backend) as server:
            yield server
    else:
        count = int(name.removeprefix("head x"))
        with (
            redis_server(backend.workdir) as (url, redis_proc),
            heads(backend, count, url) as server,
        ):
            server.processes.append(redis_proc)
            yield server


def orchestrate(args: argparse.Namespace) -> int:
    check_node()
    started = time.monotonic()
    args.idle_load = other_load()
    workdir = Path(tempfile.mkdtemp(prefix="bench-node-peer-"))
    try:
        with EmbeddedMongo(workdir / "mongo", in_memory=True) as mongo:
            backend = asyncio.run(create_backend(mongo.uri, workdir))
            rounds = asyncio.run(run_rounds(args, backend))
    except BaseException:
        print(f"bench failed or interrupted; logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    print_report(args, rounds)
    print(f"total {time.monotonic() - started:.0f} s")
    if not all(m.exact() for r in rounds for m in r):
        print("FAIL: a client did not join, missed an event, got one twice or out of order")
        return 1
    return 0


def check_node() -> None:
    if shutil.which("node") is None:
        raise SystemExit("node is not installed")
    for package in ("socket.io", "socket.io-client"):
        if not (NODE_DIR / "node_modules" / package).is_dir():
            raise SystemExit(f"{package} is not installed: run `npm ci` in {NODE_DIR}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20.0, help="steady events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady phase length")
    parser.add_argument("--burst", type=int, default=200, help="events sent at once")
    parser.add_argument("--wave", type=int, default=50, help="clients connecting at once")
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each server")
    parser.add_argument("--servers", default="head,node,stock",
                        help="comma-separated: head, node, stock")  # fmt: skip
    parser.add_argument("--head-processes", type=int, action="append", default=[],
                        help="also K heads sharing rooms through Redis (repeatable)")  # fmt: skip
    parser.add_argument("--head-tree", action="append", default=[], metavar="NAME=DIR",
                        help="also a head run from another source tree, e.g. a checkout "
                             "of an earlier commit (repeatable)")  # fmt: skip
    parser.add_argument("--quiet-below", type=float, metavar="SHARE",
                        help="before each measurement, wait until the other load is "
                             "under SHARE (0-1), at most 5 minutes")  # fmt: skip
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="record the Python servers' stacks during the phases")  # fmt: skip
    args = parser.parse_args(argv)
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    args.servers = [s for s in args.servers.split(",") if s]
    trees = [tree.partition("=") for tree in args.head_tree]
    if any(not name or not path or not Path(path).is_dir() for name, _, path in trees):
        parser.error("--head-tree wants NAME=DIR, DIR a source tree")
    args.head_tree = {name: Path(path).resolve() for name, _, path in trees}
    unknown = set(args.servers) - {"head", "node", "stock"}
    if unknown:
        parser.error(f"unknown servers: {sorted(unknown)}")
    if min(args.clients, args.burst, args.wave, args.rounds) < 1 or args.rate <= 0:
        parser.error("--clients, --burst, --wave, --rounds and --rate must be positive")
    if any(k < 1 for k in args.head_processes):
        parser.error("--head-processes must be at least 1")
    return args


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` stops what it started."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        return orchestrate(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
