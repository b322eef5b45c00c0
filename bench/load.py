"""Load on the heads: 1,000 sockets watching a real run, then 10,000 connect/join/disconnect
cycles.

    .venv/bin/python bench/load.py [--clients 1000] [--cycles 10000] [--concurrency 50]
                                   [--checkpoint 1000] [--documents 6] [--pages 6] [--idle-s 6]

Needs `redis-server`. All on loopback, all stopped on exit: an in-memory embedded MongoDB,
a `redis-server`, two heads sharing rooms through it (`indexer head`, REDIS_URL), and a
local Ray of 2 CPUs; the clients run in child processes of this script.

1. `--clients` sockets (half on each head) join one workspace of `--documents` generated
   PDFs, then `run_index` indexes it with HEAD_URL at a stamping proxy (this script,
   `--role stamp`) in front of head 1: heads do not pass the publisher's `sentAt` on, so
   the proxy copies it into the payload as `benchPublishedAt`; the latency printed runs
   from the aggregator's publish call to the client's handler, one loopback hop included.
   Every client must get every numbered event of the run exactly once. From the heads'
   processes (psutil, both summed): RSS per joined connection, CPU per connect+join, idle
   CPU (the access check runs every 2 s over every socket) with none and all joined, and
   CPU per delivery during the run.
2. `--cycles` connect/join/disconnect cycles against head 1, `--concurrency` at a time;
   every `--checkpoint` cycles head 1's RSS, open fds, its socket and room gauges
   (`/metrics`) and its TCP connections by peer. The MongoDB and Redis pools keep every
   connection they open, so they grow with the peak concurrency, not the cycles: shown
   apart. Exit status 1 when the other fds grow by more than FD_GROWTH_BOUND from the
   first checkpoint to the last, a cycle fails, the gauges do not return to 0, the run did
   not index every page, or delivery was not exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import harness
import httpx
import psutil
import ray
import uvicorn
from fastapi import FastAPI, Request, Response
from prometheus_client.parser import text_string_to_metric_families

from cluster.ray_runtime import connect_ray
from core.embedded_mongo import EmbeddedMongo
from core.events import INDEX_EVENT_NAMES
from core.settings import Secret

PUBLISHED_AT = "benchPublishedAt"
COOKIE = "BENCH_SESSION_COOKIE"
SETTLE_S = 1.0
FINISH_GRACE_S = 30.0
FD_GROWTH_BOUND = 10
MIB = 1024 * 1024
GAUGES = ("indexer_head_sockets_connected", "indexer_head_room_memberships")

# -- child processes: the stamping proxy, the watchers, the cycles --------------------------


def stamp_app(target: str) -> FastAPI:
    """Forwards `/internal/events` to `target` with the body's `sentAt` in the payload."""
    app, client = FastAPI(), httpx.AsyncClient(base_url=target, timeout=10.0)

    @app.post("/internal/events")
    async def forward(request: Request) -> Response:
        body = await request.json()
        body["payload"][PUBLISHED_AT] = body.get("sentAt")
        headers = {"Authorization": request.headers.get("authorization", "")}
        answer = await client.post("/internal/events", json=body, headers=headers)
        return Response(answer.content, answer.status_code, media_type="application/json")

    return app


async def watch(args: argparse.Namespace) -> None:
    """Join, count each client's `index:*` events by (epoch, seq), report."""
    urls = args.urls.split(",")
    members = [harness.RoomClient(urls[i % len(urls)]) for i in range(args.clients)]
    counts: list[Counter[tuple[str, int]]] = [Counter() for _ in members]
    latencies: list[float] = []
    finished = asyncio.Event()
    ended: set[int] = set()

    def handler(index: int, name: str) -> Any:
        async def on_event(data: dict[str, Any]) -> None:
            key = (str(data.get("epoch")), int(data.get("seq", -1)))
            counts[index][key] += 1
            if counts[index][key] == 1 and isinstance(data.get(PUBLISHED_AT), int | float):
                latencies.append((time.time() - data[PUBLISHED_AT]) * 1000)
            if name in ("index:ready", "index:failed"):
                ended.add(index)
                if len(ended) == len(members):
                    finished.set()

        return on_event

    for index, client in enumerate(members):
        for name in INDEX_EVENT_NAMES:
            client.sio.on(name, handler(index, name))
    await harness.in_waves([c.connect(os.environ[COOKIE]) for c in members], args.wave)
    joins = await harness.in_waves([c.join(args.workspace) for c in members], args.wave)
    joined = [ms for ms in joins if ms is not None]
    harness.tell_parent("READY", {"joined": len(joined), "join_ms": harness.percentiles(joined)})
    await (await harness.parent_lines()).readline()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finished.wait(), FINISH_GRACE_S)
    distinct = set().union(*counts)
    result = {
        "latency_ms": harness.percentiles(latencies),
        "distinct": len(distinct),
        "deliveries": sum(sum(c.values()) for c in counts),
        "missing": sum(len(distinct - c.keys()) for c in counts),
        "duplicates": sum(n - 1 for c in counts for n in c.values() if n > 1),
    }
    harness.tell_parent("RESULT", result)
    await harness.in_waves([c.disconnect() for c in members], args.wave)


async def cycle(url: str, workspace_id: str) -> bool:
    """One new client connects, joins and disconnects; False when it could not."""
    client = harness.RoomClient(url)
    try:
        return await client.connect(os.environ[COOKIE]) and bool(await client.join(workspace_id))
    finally:
        await client.disconnect()


async def cycle_block(args: argparse.Namespace, count: int) -> int:
    """`count` cycles, `--concurrency` at a time; how many failed."""
    todo = iter(range(count))

    async def worker() -> int:
        return sum([not await cycle(args.urls, args.workspace) for _ in todo])

    return sum(await asyncio.gather(*(worker() for _ in range(int(args.concurrency)))))


async def cycles(args: argparse.Namespace) -> None:
    """Blocks of `--checkpoint` cycles; after each, CHECKPOINT and wait for the parent."""
    lines, done = await harness.parent_lines(), 0
    while done < args.cycles:
        count = min(args.checkpoint, args.cycles - done)
        failed = await cycle_block(args, count)
        done += count
        harness.tell_parent("CHECKPOINT", {"cycles": done, "failed": failed})
        await lines.readline()


# -- the heads, seen from outside ----------------------------------------------------------


def sample(pids: list[int]) -> dict[str, float]:
    """RSS, CPU seconds and open fds of the heads, summed."""
    procs = [psutil.Process(pid) for pid in pids]
    return {
        "rss": sum(p.memory_info().rss for p in procs),
        "cpu": sum(sum(p.cpu_times()[:2]) for p in procs),
        "fds": sum(p.num_fds() for p in procs),
    }


async def settled(pids: list[int]) -> dict[str, float]:
    await asyncio.sleep(SETTLE_S)
    return sample(pids)


async def idle_cores(pids: list[int], seconds: float) -> float:
    before = sample(pids)["cpu"]
    await asyncio.sleep(seconds)
    return (sample(pids)["cpu"] - before) / seconds


def gauges(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return {name: values.get(name, float("nan")) for name in GAUGES}


def peers(pid: int, services: dict[int, str]) -> Counter[str]:
    """The head's TCP connections: clients (accepted), or a service by its port."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    listening = {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
    return Counter(
        "clients" if c.laddr.port in listening else services.get(c.raddr.port, "other")
        for c in connections
        if c.raddr
    )


# -- the two parts -------------------------------------------------------------------------


@contextlib.contextmanager
def stamp_proxy(folder: Path, target: str) -> Iterator[str]:
    port = harness.free_port()
    command = [sys.executable, __file__, "--role", "stamp", "--port", str(port), "--urls", target]
    with harness.running(command, folder / "stamp.log") as process:
        url = f"http://127.0.0.1:{port}"
        harness.wait_until(lambda: _answers(f"{url}/docs"), "the stamping proxy", process=process)
        yield url


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=2).status_code == 200
    return False


@dataclass
class Watched:
    """What part 1 saw: the clients' reports, the run, the heads at each mark."""

    ready: dict[str, Any]
    result: dict[str, Any]
    run: harness.TimedRun
    marks: dict[str, dict[str, float]]
    idle: dict[str, float]


async def watched_run(args: argparse.Namespace, ctx: dict[str, Any]) -> Watched:
    pids = ctx["pids"]
    marks = {"none": await settled(pids)}
    idle = {"none": await idle_cores(pids, args.idle_s)}
    marks["joining"] = sample(pids)
    process = await harness.ClientProcess.start(
        __file__,
        "--role",
        "watch",
        "--clients",
        str(args.clients),
        "--wave",
        str(args.wave),
        "--urls",
        ",".join(ctx["urls"]),
        "--workspace",
        ctx["workspace"],
        env=ctx["env"],
    )
    try:
        ready = await process.read("READY")
        marks["joined"] = await settled(pids)
        idle["joined"] = await idle_cores(pids, args.idle_s)
        marks["run start"] = sample(pids)
        connect_ray(None, num_cpus=2)
        try:
            run = await asyncio.to_thread(harness.timed_run, ctx["settings"], ctx["workspace"])
        finally:
            ray.shutdown()
        marks["run end"] = sample(pids)
        await process.tell("DONE")
        result = await process.read("RESULT")
    finally:
        await process.stop()
    marks["disconnected"] = await settled(pids)
    return Watched(ready, result, run, marks, idle)


def report_watched(w: Watched, clients: int) -> bool:
    """Part 1's table; whether every client joined and got every event exactly once."""
    marks, result, summary = w.marks, w.result, w.run.summary
    joined = w.ready["joined"]
    events = sum(summary.events.values())
    run_cpu = marks["run end"]["cpu"] - marks["run start"]["cpu"] - w.idle["joined"] * w.run.seconds
    per_join = (marks["joined"]["cpu"] - marks["joining"]["cpu"]) / max(joined, 1) * 1000
    per_socket = (marks["joined"]["rss"] - marks["none"]["rss"]) / max(joined, 1) / 1024
    per_delivery = max(run_cpu, 0.0) / max(result["deliveries"], 1) * 1e6
    rss = ", ".join(f"{marks[k]['rss'] / MIB:.1f}" for k in ("none", "joined", "disconnected"))
    print(
        f"\n1. {joined}/{clients} sockets on two heads; the run: {summary.pages} pages in "
        f"{w.run.seconds:.1f} s, other load {w.run.cpu.foreign_load():.0%}\n"
    )
    rows = [
        ["join latency, p50 / p99 / max ms", ms(w.ready["join_ms"])],
        ["event latency, publish call to client, p50 / p99 / max ms", ms(result["latency_ms"])],
        ["events the aggregator sent / the clients saw", f"{events} / {result['distinct']}"],
        [
            "deliveries / missing / duplicates",
            f"{result['deliveries']} / {result['missing']} / {result['duplicates']}",
        ],
        ["heads' RSS per joined connection", f"{per_socket:.1f} KiB"],
        ["heads' CPU per connect+join", f"{per_join:.2f} ms"],
        [
            "heads' idle CPU, no socket / all joined",
            f"{w.idle['none']:.1%} / {w.idle['joined']:.1%} of a core",
        ],
        ["heads' CPU per delivery during the run", f"{per_delivery:.0f} us"],
        ["heads' RSS: none, joined, disconnected", f"{rss} MiB"],
    ]
    harness.print_table(["figure", "value"], rows)
    exact = result["missing"] == result["duplicates"] == 0 and result["distinct"] == events
    indexed = summary.pages > 0 and not summary.failed_documents
    return exact and indexed and joined == clients


def ms(figures: dict[str, float]) -> str:
    return f"{figures['p50']:.1f} / {figures['p99']:.1f} / {figures['max']:.1f}"


@dataclass
class Checkpoint:
    """Head 1 after a block of cycles."""

    cycles: int
    head: dict[str, float]
    peers: Counter[str]
    gauges: dict[str, float]

    def row(self) -> list[Any]:
        connections = " ".join(f"{k} {v}" for k, v in sorted(self.peers.items()))
        return [
            self.cycles,
            f"{self.head['rss'] / MIB:.1f}",
            self.head["fds"],
            *(f"{v:.0f}" for v in self.gauges.values()),
            connections,
        ]


async def cycled(args: argparse.Namespace, ctx: dict[str, Any]) -> bool:
    """Part 2, printed as it goes; whether the head held up."""
    head: harness.HeadProcess = ctx["heads"][0]
    pid = head.process.pid
    process = await harness.ClientProcess.start(
        __file__,
        "--role",
        "cycles",
        "--cycles",
        str(args.cycles),
        "--checkpoint",
        str(args.checkpoint),
        "--concurrency",
        str(args.concurrency),
        "--urls",
        head.url,
        "--workspace",
        ctx["workspace"],
        env=ctx["env"],
    )
    points: list[Checkpoint] = []
    failed = 0
    try:
        with harness.CpuMeter() as meter:
            while not points or points[-1].cycles < args.cycles:
                block = await process.read("CHECKPOINT")
                await asyncio.sleep(SETTLE_S)
                failed += block["failed"]
                peer_counts = peers(pid, ctx["services"])
                points.append(
                    Checkpoint(block["cycles"], sample([pid]), peer_counts, gauges(head.url))
                )
                await process.tell("GO")
    finally:
        await process.stop()
    print(
        f"\n2. {args.cycles} cycles against head 1, {args.concurrency} at a time "
        f"(other load {meter.foreign_load():.0%})\n"
    )
    harness.print_table(
        ["cycles", "RSS MiB", "fds", "sockets", "rooms", "TCP connections"],
        [point.row() for point in points],
    )
    first, last = points[0], points[-1]
    pools = sum(last.peers[s] - first.peers[s] for s in ("mongodb", "redis"))
    other_fds = int(last.head["fds"] - first.head["fds"]) - pools
    grown = (last.head["rss"] - first.head["rss"]) / MIB
    print(
        f"cycle {first.cycles} to {last.cycles}: RSS {grown:+.1f} MiB, pool connections "
        f"{pools:+d}, other fds {other_fds:+d} (bound {FD_GROWTH_BOUND}); {failed} failed"
    )
    idle_gauges = all(v == 0 for v in last.gauges.values())
    return not failed and idle_gauges and other_fds <= FD_GROWTH_BOUND


async def both(args: argparse.Namespace, ctx: dict[str, Any]) -> bool:
    watched = report_watched(await watched_run(args, ctx), args.clients)
    return await cycled(args, ctx) and watched


def bench(args: argparse.Namespace, folder: Path) -> bool:
    paths = harness.sample_corpus(folder / "corpus", args)
    with EmbeddedMongo(folder / "mongo", in_memory=True) as mongo:
        workspace = asyncio.run(harness.new_workspace(mongo.uri, "bench", paths))
        with (
            harness.redis_server(folder) as redis_url,
            harness.heads(
                folder, 2, MONGODB_URI=mongo.uri, MONGODB_DB="bench", REDIS_URL=redis_url
            ) as two,
            stamp_proxy(folder, two[0].url) as proxy,
        ):
            ports = (urlsplit(mongo.uri).port, urlsplit(redis_url).port)
            settings = harness.run_settings(
                mongo.uri,
                folder,
                head_url=proxy,
                publish_token=None,
                nextauth_secret=Secret(two[0].secret),
            )
            ctx = {
                "heads": two,
                "pids": [h.process.pid for h in two],
                "urls": [h.url for h in two],
                "workspace": workspace,
                "settings": settings,
                "env": {COOKIE: harness.session_cookie(two[0].secret)},
                "services": dict(zip(ports, ("mongodb", "redis"), strict=True)),
            }
            return asyncio.run(both(args, ctx))


def main() -> int:
    parser = harness.arguments(__doc__, documents=6, pages=6)
    parser.add_argument("--clients", type=int, default=1000, help="sockets watching the run")
    parser.add_argument("--cycles", type=int, default=10000)
    parser.add_argument("--checkpoint", type=int, default=1000, help="cycles between samples")
    parser.add_argument("--concurrency", type=int, default=50, help="cycles at once")
    parser.add_argument("--wave", type=int, default=50, help="watchers connecting at once")
    parser.add_argument("--idle-s", type=float, default=6.0, help="idle CPU window")
    for hidden in ("--role", "--urls", "--workspace", "--port"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    harness.raise_fd_limit()
    if args.role == "stamp":
        uvicorn.run(
            stamp_app(args.urls), host="127.0.0.1", port=int(args.port), log_level="warning"
        )
        return 0
    if args.role in ("watch", "cycles"):
        asyncio.run(watch(args) if args.role == "watch" else cycles(args))
        return 0
    harness.interrupt_on_sigterm()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        ok = bench(args, Path(tmp))
    print(f"total {time.monotonic() - started:.0f} s")
    if not ok:
        print("FAIL: see the checks in the module docstring")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
