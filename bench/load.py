"""Load: 1,000 sockets on two heads during a real run, and 10,000 connect/join/disconnect cycles.

Run:  .venv/bin/python bench/load.py [--clients 1000] [--cycles 10000] [--documents 6]

What runs (all on loopback, all stopped on exit): the embedded MongoDB (in memory), a
`redis-server`, two heads (`python -m cluster.cli head`, REDIS_URL set, so they share rooms),
a local Ray (`connect_ray(None, num_cpus=2)`, as bench/pipeline.py) and, as separate
processes, the clients (this script with `--role watch` or `--role cycles`: python-socketio
AsyncClients over websocket with a minted NextAuth cookie, bench/broadcast.py's client).

1. Watching a real run. N clients (`--clients`, half on each head) connect and join one
   workspace holding `--documents` generated PDFs; then `run_index` indexes it for real,
   with HEAD_URL pointing at head 1: the run's ProgressAggregator publishes every
   `index:*` event with core's HttpEventPublisher to `/internal/events`, head 1 numbers it
   and emits it through Redis, and both heads deliver it to their clients.
   - Event latency, aggregator -> client: the publisher stamps the request body's
     `sentAt = time.time()` just before its POST, but heads do not forward it. So HEAD_URL
     points at a stamping proxy (this script with `--role stamp`, in its own process) that
     copies `sentAt` into the payload as `benchPublishedAt` (an extra field, allowed on
     index events) and forwards the request to head 1 unchanged otherwise; each client
     subtracts it from its `time.time()` at receipt (one machine, one clock). The interval
     runs from the aggregator's publish call (after its MongoDB write of the progress) to
     the client's handler, and includes one extra loopback HTTP hop through the proxy,
     whose own time is printed. No project file is changed for this.
   - Exactly once: every client must receive every numbered event (`{epoch, seq}`) of the
     run once; the count of distinct events is checked against what the aggregator says
     it sent.
   - Memory per connection: the heads' RSS (psutil, both heads summed) with no client,
     after all N joined, after the run, and after all disconnected; (joined - none) / N.
   - CPU per connection: the heads' CPU seconds for connecting and joining all N, / N; the
     heads' idle CPU (their access check runs every 2 s over every socket) over
     `--idle-s` with none and with N joined; and their CPU during the run, minus that
     idle rate, per delivery.
2. Cycles (`--cycles`, `--concurrency` at a time) against head 1: a new client connects,
   joins, and disconnects. Every `--checkpoint` cycles the clients pause, and head 1's RSS,
   open file descriptors (psutil num_fds) and its own gauges (`/metrics`: sockets
   connected, room memberships) are sampled, with its TCP connections by peer. Growth is
   taken from the first checkpoint to the last, so start-up allocations do not count. The
   head's MongoDB and Redis client pools open a connection whenever more queries are in
   flight than ever before and keep it, so they grow with the peak concurrency (bounded
   by `--concurrency`), not with the number of cycles; they are shown apart. The exit
   status is 1 when the other fds grow by more than FD_GROWTH_BOUND, when a cycle fails,
   when the gauges do not return to 0, when the run did not index every page, or when
   delivery in part 1 was not exactly once.

Everything shares the machine's cores; the "other load" figures say how much CPU processes
that are not this benchmark's took meanwhile (on a shared machine, latency and CPU figures
move with it; memory and fd counts do not). Takes about 3-4 minutes at the defaults on 2
cores; `--clients`, `--cycles` and `--documents` scale it down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import ray
import uvicorn
from broadcast import (
    COOKIE_ENV,
    OWNER_ID,
    Backend,
    BenchClient,
    Tally,
    free_port,
    head_processes,
    in_waves,
    interrupt_on_sigterm,
    raise_fd_limit,
    read_tagged,
    redis_server,
    report,
    running,
    session_cookie,
    stdin_reader,
    stop_child,
    summary,
    wait_for,
)
from fastapi import FastAPI, Request, Response
from pipeline import CpuMeter
from prometheus_client.parser import text_string_to_metric_families

from cluster.documents import add_document
from cluster.driver import RunSummary, run_index
from cluster.ray_runtime import connect_ray
from cluster.sample_corpus import write_sample_workspace
from core.db import ensure_indexes, open_client
from core.embedded_mongo import EmbeddedMongo
from core.events import INDEX_EVENT_NAMES
from core.settings import Secret, Settings
from core.workspaces import create_workspace

SCRIPT = Path(__file__).resolve()
PUBLISHED_AT = "benchPublishedAt"
LAST_EVENTS = ("index:ready", "index:failed")
RAY_CPUS = 2
SETTLE_S = 1.0
RUN_PHASE_TIMEOUT_S = 900.0
FINISH_GRACE_S = 30.0
FD_GROWTH_BOUND = 10
MIB = 1024 * 1024
MEMORY_POINTS = ("none", "joined", "after run", "disconnected")


# -- stamping proxy (--role stamp) -------------------------------------------------------


def stamp_app(target: str) -> FastAPI:
    """Forwards `/internal/events` to `target` with the body's `sentAt` copied into the payload.

    `/stats` returns, per forwarded request, the ms spent here before forwarding and the ms
    the target took to answer, and the target's status codes.
    """
    app = FastAPI()
    client = httpx.AsyncClient(base_url=target, timeout=10.0)
    before_ms: list[float] = []
    target_ms: list[float] = []
    statuses: Counter[int] = Counter()

    @app.post("/internal/events")
    async def forward(request: Request) -> Response:
        received = time.perf_counter()
        body = await request.json()
        if isinstance(body, dict) and isinstance(body.get("payload"), dict):
            body["payload"][PUBLISHED_AT] = body.get("sentAt")
        headers = {"Authorization": request.headers.get("authorization", "")}
        sent = time.perf_counter()
        answer = await client.post("/internal/events", json=body, headers=headers)
        target_ms.append((time.perf_counter() - sent) * 1000)
        before_ms.append((sent - received) * 1000)
        statuses[answer.status_code] += 1
        kind = answer.headers.get("content-type")
        return Response(answer.content, answer.status_code, media_type=kind)

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return {"before_ms": before_ms, "target_ms": target_ms, "statuses": statuses}

    return app


def proxy_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/stats", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def stamp_proxy(workdir: Path, target: str) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, str(SCRIPT), "--role", "stamp", "--port", str(port),
               "--urls", target]  # fmt: skip
    with running(command, workdir / "stamp.log", dict(os.environ)) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: proxy_ready(url), "stamping proxy", proc)
        yield url


# -- watching clients (--role watch) -----------------------------------------------------


class RunWatch:
    """What the watching clients received, counted per client by `(epoch, seq)`."""

    def __init__(self, heads: int) -> None:
        self.latencies_ms: list[list[float]] = [[] for _ in range(heads)]
        self.members = 0
        self.finished = 0
        self.all_finished = asyncio.Event()

    def attach(self, client: BenchClient, head: int) -> Counter[tuple[str, int]]:
        """Route every `index:*` event of `client` here; returns its per-event counts."""
        counts: Counter[tuple[str, int]] = Counter()
        for name in INDEX_EVENT_NAMES:
            client.sio.on(name, functools.partial(self.record, name, head, counts))
        return counts

    def record(self, name: str, head: int, counts: Counter[tuple[str, int]], data: Any) -> None:
        now = time.time()
        if not isinstance(data, dict):
            return
        key = (str(data.get("epoch")), int(data.get("seq", -1)))
        counts[key] += 1
        if counts[key] > 1:
            return
        sent = data.get(PUBLISHED_AT)
        if isinstance(sent, int | float):
            self.latencies_ms[head].append((now - sent) * 1000)
        if name in LAST_EVENTS:
            self.finished += 1
            if self.finished >= self.members:
                self.all_finished.set()


def delivery_counts(counts: list[Counter[tuple[str, int]]]) -> dict[str, int]:
    """Distinct events seen by anyone; deliveries, missing and duplicates against them."""
    distinct = set().union(*counts) if counts else set()
    return {
        "distinct": len(distinct),
        "deliveries": sum(sum(c.values()) for c in counts),
        "expected": len(distinct) * len(counts),
        "missing": sum(len(distinct - c.keys()) for c in counts),
        "duplicates": sum(n - 1 for c in counts for n in c.values() if n > 1),
    }


async def run_watchers(args: argparse.Namespace) -> None:
    cookie = os.environ[COOKIE_ENV]
    urls = args.urls.split(",")
    watch = RunWatch(len(urls))
    tally = Tally(events=0, expected=0)
    clients = [BenchClient(urls[i % len(urls)], tally) for i in range(args.clients)]
    counts = [watch.attach(client, i % len(urls)) for i, client in enumerate(clients)]
    started = time.perf_counter()
    ok = await in_waves([c.connect(cookie) for c in clients], args.wave)
    connect_s = time.perf_counter() - started
    joins = await in_waves(
        [
            c.join(args.workspace) if up else asyncio.sleep(0)
            for c, up in zip(clients, ok, strict=True)
        ],
        args.wave,
    )
    members = [i for i, ms in enumerate(joins) if isinstance(ms, float)]
    watch.members = len(members)
    join_ms = [joins[i] for i in members]
    report("READY", {"connected": sum(ok), "joined": len(members), "connect_s": connect_s,
                     "join_ms": summary(join_ms)})  # fmt: skip
    stdin = await stdin_reader()
    await asyncio.wait_for(stdin.readline(), RUN_PHASE_TIMEOUT_S)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watch.all_finished.wait(), FINISH_GRACE_S)
    every = [ms for per_head in watch.latencies_ms for ms in per_head]
    result = {
        "latency_ms": summary(every),
        "samples": len(every),
        "per_head_ms": [summary(per_head) for per_head in watch.latencies_ms],
        "finished": watch.finished,
        **delivery_counts([counts[i] for i in members]),
    }
    report("RESULT", result)
    await in_waves([c.disconnect() for c in clients], args.wave)


# -- cycling clients (--role cycles) -----------------------------------------------------


async def one_cycle(url: str, cookie: str, workspace_id: str) -> bool:
    """Connect, join, disconnect one new client; False when the connect or join failed."""
    client = BenchClient(url, Tally(events=0, expected=0))
    try:
        return await client.connect(cookie) and await client.join(workspace_id) is not None
    finally:
        await client.disconnect()


async def cycle_block(args: argparse.Namespace, cookie: str, count: int) -> int:
    """`count` cycles, `--concurrency` at a time; returns how many failed."""
    todo = iter(range(count))

    async def worker() -> int:
        return sum([not await one_cycle(args.urls, cookie, args.workspace) for _ in todo])

    return sum(await asyncio.gather(*(worker() for _ in range(min(args.concurrency, count)))))


async def run_cyclers(args: argparse.Namespace) -> None:
    """Blocks of `--checkpoint` cycles; after each, CHECKPOINT and wait for a line on stdin."""
    cookie = os.environ[COOKIE_ENV]
    stdin = await stdin_reader()
    done = 0
    while done < args.cycles:
        count = min(args.checkpoint, args.cycles - done)
        started = time.perf_counter()
        failed = await cycle_block(args, cookie, count)
        done += count
        seconds = time.perf_counter() - started
        report("CHECKPOINT", {"cycles": done, "failed": failed, "seconds": seconds})
        await asyncio.wait_for(stdin.readline(), RUN_PHASE_TIMEOUT_S)


# -- orchestrator: heads -----------------------------------------------------------------


@dataclass(frozen=True)
class HeadSample:
    """RSS, CPU seconds and open fds of some head processes, summed."""

    rss: int
    cpu: float
    fds: int


def sample_heads(pids: Sequence[int]) -> HeadSample:
    procs = [psutil.Process(pid) for pid in pids]
    times = [p.cpu_times() for p in procs]
    return HeadSample(
        rss=sum(p.memory_info().rss for p in procs),
        cpu=sum(t.user + t.system for t in times),
        fds=sum(p.num_fds() for p in procs),
    )


async def settled_sample(pids: Sequence[int]) -> HeadSample:
    """A sample taken once the heads had SETTLE_S to finish what was in flight."""
    await asyncio.sleep(SETTLE_S)
    return sample_heads(pids)


async def idle_cpu(pids: Sequence[int], seconds: float) -> float:
    """The heads' CPU use over `seconds` of nothing to do, in cores."""
    before = sample_heads(pids)
    await asyncio.sleep(seconds)
    return (sample_heads(pids).cpu - before.cpu) / seconds


async def fetch(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
    response.raise_for_status()
    return response


async def head_metrics(url: str) -> dict[str, float]:
    """Head gauges and counters from `/metrics`, by sample name (histograms: _count, _sum)."""
    text = (await fetch(f"{url}/metrics")).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels or sample.name.endswith(("_count", "_sum")):
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


# -- orchestrator: 1. watching a real run ------------------------------------------------


@dataclass
class WatchReport:
    """Everything part 1 measured."""

    clients: int
    ready: dict[str, Any]
    result: dict[str, Any]
    run: RunSummary
    run_s: float
    pages: int
    samples: dict[str, HeadSample]
    idle_cores: dict[str, float]
    proxy: dict[str, Any]
    head1_metrics: dict[str, float]
    other_load: dict[str, float]


async def prepare_workspace(mongo_uri: str, db_name: str, paths: list[Path]) -> str:
    """Indexes, the bench owner's workspace and its documents in GridFS."""
    client = open_client(mongo_uri)
    try:
        db = client[db_name]
        await ensure_indexes(db)
        workspace_id = str(
            await create_workspace(db, name="load bench", owner_id=OWNER_ID, member_ids=[])
        )
        max_bytes = Settings().max_document_bytes
        for path in paths:
            result = await add_document(db, workspace_id, str(path), max_bytes=max_bytes)
            if result.error:
                raise RuntimeError(f"{path}: {result.error}")
        return workspace_id
    finally:
        await client.close()


async def spawn_role(role: str, options: list[str], backend: Backend) -> asyncio.subprocess.Process:
    """A client process of this script; its stdout carries the tagged lines."""
    env = dict(os.environ, **{COOKIE_ENV: session_cookie(backend.secret)})
    return await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), "--role", role, "--workspace", backend.workspace_id,
        *options, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env=env, limit=1 << 22,
    )  # fmt: skip


async def tell(proc: asyncio.subprocess.Process, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(f"{line}\n".encode())
    await proc.stdin.drain()


async def timed_run(settings: Settings, workspace_id: str) -> tuple[RunSummary, float, float]:
    """`run_index`, its seconds, and the other load meanwhile."""
    with CpuMeter() as meter:
        started = time.monotonic()
        run = await run_index(settings, workspace_id)
        seconds = time.monotonic() - started
    return run, seconds, meter.foreign_load()


async def watch_run(
    args: argparse.Namespace, backend: Backend, urls: list[str], pids: list[int], proxy: str
) -> WatchReport:
    settings = run_settings(backend, proxy)
    samples = {"none": await settled_sample(pids)}
    idle = {"none": await idle_cpu(pids, args.idle_s)}
    samples["joining"] = sample_heads(pids)
    options = ["--clients", str(args.clients), "--wave", str(args.wave), "--urls", ",".join(urls)]
    proc = await spawn_role("watch", options, backend)
    try:
        assert proc.stdout is not None
        with CpuMeter() as join_meter:
            ready = await read_tagged(proc.stdout, "READY")
        samples["joined"] = await settled_sample(pids)
        idle["joined"] = await idle_cpu(pids, args.idle_s)
        samples["run start"] = sample_heads(pids)
        run, run_s, run_load = await timed_run(settings, backend.workspace_id)
        samples["run end"] = sample_heads(pids)
        await tell(proc, "DONE")
        result = await read_tagged(proc.stdout, "RESULT")
        samples["after run"] = await settled_sample(pids)
        await asyncio.wait_for(proc.wait(), RUN_PHASE_TIMEOUT_S)
        samples["disconnected"] = await settled_sample(pids)
    finally:
        await stop_child(proc)
    return WatchReport(
        clients=args.clients, ready=ready, result=result, run=run, run_s=run_s,
        pages=run.pages, samples=samples, idle_cores=idle,
        proxy=(await fetch(f"{proxy}/stats")).json(), head1_metrics=await head_metrics(urls[0]),
        other_load={"connect+join": join_meter.foreign_load(), "run": run_load},
    )  # fmt: skip


def run_settings(backend: Backend, proxy: str) -> Settings:
    """The run's settings: the heads' database and secret (so the same publish token), and
    HEAD_URL at the stamping proxy; no REDIS_URL, so it publishes over HTTP."""
    return Settings(
        mongodb_uri=Secret(backend.mongo_uri),
        mongodb_db=backend.db_name,
        data_dir=backend.workdir / "data",
        nextauth_secret=Secret(backend.secret),
        head_url=proxy,
    )


# -- orchestrator: 2. cycles -------------------------------------------------------------


@dataclass
class CyclePoint:
    cycles: int
    seconds: float
    failed: int
    head: HeadSample
    gauges: dict[str, float]
    peers: Counter[str]


GAUGES = ("indexer_head_sockets_connected", "indexer_head_room_memberships")
PEERS = ("clients", "mongodb", "redis", "other")


def peer_counts(pid: int, services: dict[int, str]) -> Counter[str]:
    """The head's open TCP connections: accepted from clients, or to a service by its port;
    says which pool an fd count that grows belongs to."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    listening = {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
    counts: Counter[str] = Counter()
    for c in connections:
        if c.raddr:
            peer = "clients" if c.laddr.port in listening else services.get(c.raddr.port)
            counts[peer or "other"] += 1
    return counts


async def cycle_point(
    block: dict[str, Any], url: str, pid: int, services: dict[int, str]
) -> CyclePoint:
    head, peers = sample_heads([pid]), peer_counts(pid, services)  # before our /metrics call
    metrics = await head_metrics(url)
    gauges = {name: metrics.get(name, float("nan")) for name in GAUGES}
    return CyclePoint(block["cycles"], block["seconds"], block["failed"], head, gauges, peers)


async def run_cycles(
    args: argparse.Namespace, backend: Backend, url: str, pid: int, services: dict[int, str]
) -> tuple[list[CyclePoint], float]:
    """The cycles client process against one head; a sample at start and every checkpoint."""
    start = {"cycles": 0, "seconds": 0.0, "failed": 0}
    points = [await cycle_point(start, url, pid, services)]
    options = ["--cycles", str(args.cycles), "--checkpoint", str(args.checkpoint),
               "--concurrency", str(args.concurrency), "--urls", url]  # fmt: skip
    proc = await spawn_role("cycles", options, backend)
    try:
        assert proc.stdout is not None
        with CpuMeter() as meter:
            while points[-1].cycles < args.cycles:
                block = await read_tagged(proc.stdout, "CHECKPOINT")
                await asyncio.sleep(SETTLE_S)
                points.append(await cycle_point(block, url, pid, services))
                await tell(proc, "GO")
        await asyncio.wait_for(proc.wait(), RUN_PHASE_TIMEOUT_S)
    finally:
        await stop_child(proc)
    return points, meter.foreign_load()


# -- output ------------------------------------------------------------------------------


def ms(values: dict[str, float]) -> str:
    return f"{values['p50']:8.1f}{values['p99']:8.1f}{values['max']:8.1f}"


def print_watch(report: WatchReport) -> None:
    r, ready, run = report.result, report.ready, report.run
    print(f"\n=== 1. {report.clients} sockets on two heads (Redis) watching one real run ===")
    sent = ", ".join(f"{k} {v}" for k, v in run.events.items())
    print(
        f"run_index: {run.status}, {run.documents} documents, {report.pages} pages in "
        f"{report.run_s:.1f} s (other load {report.other_load['run']:.0%}); the aggregator "
        f"sent {sent}"
    )
    join = ready["join_ms"]
    print(
        f"clients: {ready['connected']}/{report.clients} connected in {ready['connect_s']:.1f} s,"
        f" {ready['joined']} joined (join p50/p99 {join['p50']:.1f}/{join['p99']:.1f} ms), "
        f"alternating over the two heads"
    )
    print(
        "\nevent latency, aggregator's publish call -> client handler (ms); through the "
        "stamping proxy into head 1, Redis to both heads:"
    )
    print(f"  {'':<34}{'p50':>8}{'p99':>8}{'max':>8}")
    print(f"  {'all clients':<34}{ms(r['latency_ms'])}   {r['samples']} samples")
    for index, per_head in enumerate(r["per_head_ms"], 1):
        print(f"  {f'clients of head {index}':<34}{ms(per_head)}")
    print_proxy(report)
    print(
        f"exactly once: {r['distinct']} numbered events (aggregator sent "
        f"{sum(run.events.values())}), {r['deliveries']}/{r['expected']} deliveries, "
        f"{r['missing']} missing, {r['duplicates']} duplicates; "
        f"{r['finished']} clients got the last event"
    )
    print_per_connection(report)


def print_proxy(report: WatchReport) -> None:
    before, target = report.proxy["before_ms"], report.proxy["target_ms"]
    metrics = report.head1_metrics
    count = metrics.get("indexer_head_publish_to_emit_seconds_count", 0.0)
    total = metrics.get("indexer_head_publish_to_emit_seconds_sum", 0.0)
    mean = f"{total / count * 1000:.1f} ms" if count else "n/a"
    print(
        f"  stamping proxy: {len(before)} requests ({dict(report.proxy['statuses'])}); "
        f"its own time before forwarding p50 {summary(before)['p50']:.2f} ms; head 1 "
        f"answered in p50/p99 {summary(target)['p50']:.1f}/{summary(target)['p99']:.1f} ms"
    )
    print(
        f"  head 1's own metric indexer_head_publish_to_emit_seconds: {count:.0f} events, "
        f"mean {mean} (publish call -> its emit into Redis returned)"
    )


def print_per_connection(report: WatchReport) -> None:
    s, n, idle = report.samples, max(report.ready["joined"], 1), report.idle_cores
    print("\nheads (both summed), per connection:")
    print("  memory RSS: " + ", ".join(f"{k} {s[k].rss / MIB:.1f} MiB" for k in MEMORY_POINTS))
    grown = (s["joined"].rss - s["none"].rss) / n / 1024
    print(f"    -> {grown:.1f} KiB per joined connection ((joined - none) / {n})")
    join_cpu = (s["joined"].cpu - s["joining"].cpu) / n * 1000
    print(
        f"  CPU to connect and join: {join_cpu:.2f} ms per connection (other load "
        f"{report.other_load['connect+join']:.0%})"
    )
    per_socket = (idle["joined"] - idle["none"]) / n * 1e6
    print(
        f"  CPU idle: {idle['none']:.1%} of a core with no socket, {idle['joined']:.1%} with "
        f"{n} joined -> {per_socket:.1f} us CPU per second per connection"
    )
    run_cpu = s["run end"].cpu - s["run start"].cpu
    events_cpu = max(run_cpu - idle["joined"] * report.run_s, 0.0)
    deliveries = max(report.result["deliveries"], 1)
    print(
        f"  CPU during the run: {run_cpu:.2f} s in {report.run_s:.1f} s; minus the idle "
        f"rate, {events_cpu:.2f} s for {deliveries} deliveries = "
        f"{events_cpu / deliveries * 1e6:.0f} us per delivery"
    )


def print_cycles(args: argparse.Namespace, points: list[CyclePoint], other: float) -> None:
    print(
        f"\n=== 2. {args.cycles} connect/join/disconnect cycles against head 1, "
        f"{args.concurrency} at a time (other load {other:.0%}) ==="
    )
    print(f"  {'cycles':>7}{'cycles/s':>10}{'CPU ms':>8}{'failed':>8}{'RSS MiB':>9}{'fds':>6}"
          f"{'sockets':>9}{'rooms':>7}   TCP connections by peer")  # fmt: skip
    for prev, p in zip([None, *points], points, strict=False):
        block = p.cycles - prev.cycles if prev else 0
        rate = f"{block / p.seconds:10.0f}" if block and p.seconds else f"{'':>10}"
        cpu = f"{(p.head.cpu - prev.head.cpu) / block * 1000:8.2f}" if prev else f"{'':>8}"
        sockets, rooms = (p.gauges[name] for name in GAUGES)
        peers = " ".join(f"{name} {p.peers[name]}" for name in PEERS)
        print(f"  {p.cycles:>7}{rate}{cpu}{p.failed:>8}{p.head.rss / MIB:>9.1f}{p.head.fds:>6}"
              f"{sockets:>9.0f}{rooms:>7.0f}   {peers}")  # fmt: skip
    print("  (CPU ms: the head's CPU per cycle in the block; sockets, rooms: its own gauges)")


POOLS = ("mongodb", "redis")


def pooled(point: CyclePoint) -> int:
    """The head's connections to MongoDB and Redis: pools, sized by peak concurrency."""
    return sum(point.peers[name] for name in POOLS)


def cycles_ok(points: list[CyclePoint]) -> bool:
    """Growth from the first checkpoint to the last; fds outside the pools must not grow."""
    first, last = points[min(1, len(points) - 1)], points[-1]
    rss = (last.head.rss - first.head.rss) / MIB
    fds, pools = last.head.fds - first.head.fds, pooled(last) - pooled(first)
    print(
        f"  growth from cycle {first.cycles} to {last.cycles}: RSS {rss:+.1f} MiB; fds "
        f"{fds:+d}: MongoDB/Redis pool connections {pools:+d}, other fds {fds - pools:+d} "
        f"(bound {FD_GROWTH_BOUND})"
    )
    idle_gauges = all(last.gauges[name] == 0 for name in GAUGES)
    failed = sum(p.failed for p in points)
    if not idle_gauges:
        print("  FAIL: the head's socket/room gauges did not return to 0")
    if failed:
        print(f"  FAIL: {failed} cycles did not connect or join")
    if fds - pools > FD_GROWTH_BOUND:
        print("  FAIL: open file descriptors outside the connection pools grew")
    return idle_gauges and not failed and fds - pools <= FD_GROWTH_BOUND


def watch_ok(report: WatchReport) -> bool:
    r, run = report.result, report.run
    exact = r["missing"] == 0 and r["duplicates"] == 0
    complete = r["distinct"] == sum(run.events.values())
    joined = report.ready["joined"] == report.clients
    indexed = run.status == "succeeded" and run.pages > 0 and not run.failed_documents
    if not indexed:
        print(f"FAIL: the run did not index every page: {run.status}, {run.failed_documents}")
    if not (exact and complete and joined):
        print("FAIL: a client did not join, or delivery was not exactly once")
    return exact and complete and joined and indexed


# -- main --------------------------------------------------------------------------------


async def measure(
    args: argparse.Namespace,
    backend: Backend,
    heads: list[tuple[str, Any]],
    proxy: str,
    redis_url: str,
) -> tuple[WatchReport, list[CyclePoint], float]:
    urls, pids = [url for url, _ in heads], [proc.pid for _, proc in heads]
    connect_ray(None, num_cpus=RAY_CPUS)
    try:
        watched = await watch_run(args, backend, urls, pids, proxy)
    finally:
        ray.shutdown()
    ports = {urlsplit(backend.mongo_uri).port: "mongodb", urlsplit(redis_url).port: "redis"}
    services = {port: name for port, name in ports.items() if port is not None}
    points, other = await run_cycles(args, backend, urls[0], pids[0], services)
    return watched, points, other


def orchestrate(args: argparse.Namespace) -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        paths = write_sample_workspace(
            workdir / "corpus", documents=args.documents, pages_each=args.pages
        )
        with EmbeddedMongo(workdir / "mongo", in_memory=True) as mongo:
            db_name = f"bench_{uuid.uuid4().hex[:12]}"
            workspace_id = asyncio.run(prepare_workspace(mongo.uri, db_name, paths))
            backend = Backend(mongo.uri, db_name, secrets.token_urlsafe(32), workspace_id, workdir)
            with (
                redis_server(workdir) as redis_url,
                head_processes(backend, 2, redis_url) as heads,
                stamp_proxy(workdir, heads[0][0]) as proxy,
            ):
                watched, points, other = asyncio.run(
                    measure(args, backend, heads, proxy, redis_url)
                )
    except KeyboardInterrupt:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    except BaseException:
        print(f"bench failed; logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    print_watch(watched)
    print_cycles(args, points, other)
    ok = cycles_ok(points) & watch_ok(watched)
    print(f"total {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="sockets watching the run")
    parser.add_argument("--cycles", type=int, default=10000)
    parser.add_argument("--checkpoint", type=int, default=1000, help="cycles between samples")
    parser.add_argument("--concurrency", type=int, default=50, help="cycles at once")
    parser.add_argument("--wave", type=int, default=50, help="watchers connecting at once")
    parser.add_argument("--documents", type=int, default=6, help="PDFs in the run")
    parser.add_argument("--pages", type=int, default=6, help="pages per PDF (+0..2 each)")
    parser.add_argument("--idle-s", type=float, default=6.0, help="idle CPU window")
    parser.add_argument("--role", choices=("bench", "watch", "cycles", "stamp"),
                        default="bench", help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    counts = (args.clients, args.cycles, args.checkpoint, args.concurrency, args.wave)
    if min(*counts, args.documents, args.pages) < 1 or args.idle_s <= 0:
        parser.error("counts must be at least 1 and --idle-s positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    if args.role == "stamp":
        uvicorn.run(stamp_app(args.urls), host="127.0.0.1", port=args.port, log_level="warning")
        return 0
    if args.role in ("watch", "cycles"):
        asyncio.run(run_watchers(args) if args.role == "watch" else run_cyclers(args))
        return 0
    interrupt_on_sigterm()
    try:
        return orchestrate(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
