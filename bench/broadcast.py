"""Socket.IO join and broadcast latency: one head with the in-memory manager against two heads
sharing rooms through Redis.

    .venv/bin/python bench/broadcast.py [--clients 500] [--events 50] [--interval-ms 20]
                                        [--wave 50] [--redis-publish redis|http]

Needs `redis-server` on PATH. All on loopback, all stopped on exit (Ctrl-C and SIGTERM too):
an in-memory embedded MongoDB holding one workspace; "in-memory": one head
(`indexer head`), events published through its `/internal/events`; "redis": a
`redis-server` and two heads with REDIS_URL, clients split over both, events published
straight into Redis by `make_publisher` (as runs do), or through head 1 with
`--redis-publish http`. The N clients run in a child process (this script,
`--role clients`): python-socketio over websocket, all in one workspace room, connecting
and joining `--wave` at a time.

Join latency: `workspace:join` to `workspace:joined`, per client. Broadcast latency: the
publisher stamps `sentAt` (an extra field of an `index:progress` payload, numbered by
`benchSeq`: heads renumber `seq`) before each send, each client subtracts it from its clock
at receipt. After a warm-up event, `--events` events go out on a fixed schedule
`--interval-ms` apart, open loop, so both configurations get the same offered load. Every
client must get every event exactly once (exit status 1 otherwise). At the default rate
(N x 50 deliveries/s) a 2-core machine is saturated and the broadcast percentiles measure
the backlog; "event 0" (nothing queued ahead of it) is one event's fan-out, and a larger
`--interval-ms` gives the unsaturated regime.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    ClientProcess,
    RoomClient,
    arguments,
    heads,
    in_waves,
    interrupt_on_sigterm,
    new_workspace,
    parent_lines,
    percentiles,
    print_table,
    raise_fd_limit,
    redis_server,
    session_cookie,
    tell_parent,
)

from core.embedded_mongo import EmbeddedMongo
from core.publisher import make_publisher
from core.settings import load_settings

EVENT = "index:progress"
BENCH_SEQ = "benchSeq"
DELIVERY_GRACE_S = 30.0
COOKIE = "BENCH_SESSION_COOKIE"  # the clients' cookie, passed in their environment

# -- the client process --------------------------------------------------------------------


class Deliveries:
    """Every client's count of each numbered event, and the latency of first deliveries."""

    def __init__(self, events: int) -> None:
        self.events = events
        self.expected = 0
        self.received = 0
        self.latencies_ms: list[float] = []
        self.first_event_ms: list[float] = []
        self.all_in = asyncio.Event()

    def counter(self) -> tuple[list[int], Any]:
        counts = [0] * self.events

        async def on_event(data: Any) -> None:
            seq = data.get(BENCH_SEQ, -1) if isinstance(data, dict) else -1
            if not 0 <= seq < self.events:
                return  # the warm-up event
            counts[seq] += 1
            if counts[seq] == 1:
                latency = (time.time() - float(data["sentAt"])) * 1000
                self.latencies_ms.append(latency)
                if seq == 0:
                    self.first_event_ms.append(latency)
                self.received += 1
                if self.received >= self.expected:
                    self.all_in.set()

        return counts, on_event


async def clients(args: argparse.Namespace) -> None:
    urls, deliveries = args.urls.split(","), Deliveries(args.events)
    members = [RoomClient(urls[i % len(urls)]) for i in range(args.clients)]
    counts = []
    for client in members:
        count, handler = deliveries.counter()
        client.sio.on(EVENT, handler)
        counts.append(count)
    await in_waves([c.connect(os.environ[COOKIE]) for c in members], args.wave)
    joins = await in_waves([c.join(args.workspace) for c in members], args.wave)
    joined = [i for i, ms in enumerate(joins) if ms is not None]
    deliveries.expected = len(joined) * args.events
    tell_parent("READY", {"joined": len(joined)})
    await (await parent_lines()).readline()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(deliveries.all_in.wait(), DELIVERY_GRACE_S)
    every = [n for i in joined for n in counts[i]]
    tell_parent(
        "RESULT",
        {
            "joined": len(joined),
            "join_ms": percentiles([j for j in joins if j is not None]),
            "broadcast_ms": percentiles(deliveries.latencies_ms),
            "first_event_ms": percentiles(deliveries.first_event_ms),
            "deliveries": sum(every),
            "expected": deliveries.expected,
            "missing": every.count(0),
            "duplicates": sum(n - 1 for n in every if n > 1),
        },
    )
    await in_waves([c.disconnect() for c in members], args.wave)


# -- the benchmark -------------------------------------------------------------------------


def payload(seq: int, events: int) -> dict[str, Any]:
    done = max(seq, 0)
    return {
        "phase": "embed",
        "docsDone": done,
        "docsTotal": events,
        "pagesDone": done,
        "pagesTotal": events,
        BENCH_SEQ: seq,
        "sentAt": time.time(),
    }


async def publish(publisher: Any, workspace_id: str, events: int, interval_s: float) -> None:
    """A warm-up event, then `events` on a fixed schedule, each sent without waiting for the
    one before to return, so a slow head cannot slow the publisher and hide its queue."""
    await publisher.publish(workspace_id, EVENT, payload(-1, events))
    start, sends = time.monotonic(), []
    for seq in range(events):
        await asyncio.sleep(max(0.0, start + seq * interval_s - time.monotonic()))
        sends.append(
            asyncio.create_task(publisher.publish(workspace_id, EVENT, payload(seq, events)))
        )
    await asyncio.gather(*sends)


async def measure(
    args: argparse.Namespace,
    urls: list[str],
    secret: str,
    publish_env: dict[str, str],
    workspace_id: str,
) -> dict[str, Any]:
    """The client process against `urls`, events published by `publish_env`'s publisher."""
    process = await ClientProcess.start(
        __file__,
        "--role",
        "clients",
        "--clients",
        str(args.clients),
        "--events",
        str(args.events),
        "--wave",
        str(args.wave),
        "--urls",
        ",".join(urls),
        "--workspace",
        workspace_id,
        env={COOKIE: session_cookie(secret)},
    )
    publisher = make_publisher(load_settings({"NEXTAUTH_SECRET": secret, **publish_env}))
    try:
        ready = await process.read("READY")
        if not ready["joined"]:
            raise RuntimeError("no client joined")
        await publish(publisher, workspace_id, args.events, args.interval_ms / 1000)
        await process.tell("PUBLISHED")
        return await process.read("RESULT")
    finally:
        await publisher.aclose()
        await process.stop()


async def configurations(args: argparse.Namespace, folder: Path, mongo_uri: str) -> dict[str, Any]:
    workspace_id = await new_workspace(mongo_uri, "bench", [])
    env = {"MONGODB_URI": mongo_uri, "MONGODB_DB": "bench"}
    results = {}
    with heads(folder, 1, **env) as one:
        publish_env = {"HEAD_URL": one[0].url}
        results["1 head, in-memory"] = await measure(
            args, [one[0].url], one[0].secret, publish_env, workspace_id
        )
    with redis_server(folder) as redis_url, heads(folder, 2, REDIS_URL=redis_url, **env) as two:
        urls = [head.url for head in two]
        publish_env = (
            {"REDIS_URL": redis_url} if args.redis_publish == "redis" else {"HEAD_URL": urls[0]}
        )
        name = f"2 heads, Redis, {args.redis_publish} publish"
        results[name] = await measure(args, urls, two[0].secret, publish_env, workspace_id)
    return results


def report(args: argparse.Namespace, results: dict[str, Any]) -> bool:
    print(
        f"\n{args.clients} clients in one room, {args.events} events {args.interval_ms:g} ms "
        "apart; latencies in ms (p50 / p99 / max)\n"
    )

    def ms(figures: dict[str, float]) -> str:
        return f"{figures['p50']:.1f} / {figures['p99']:.1f} / {figures['max']:.1f}"

    print_table(
        ["setup", "joined", "join", "broadcast", "event 0", "delivered", "missing", "dup"],
        [
            [
                name,
                f"{r['joined']}/{args.clients}",
                ms(r["join_ms"]),
                ms(r["broadcast_ms"]),
                ms(r["first_event_ms"]),
                f"{r['deliveries']}/{r['expected']}",
                r["missing"],
                r["duplicates"],
            ]
            for name, r in results.items()
        ],
    )
    memory, shared = results.values()
    for pct in ("p50", "p99"):
        ratio = shared["broadcast_ms"][pct] / memory["broadcast_ms"][pct]
        print(f"Redis / in-memory, broadcast {pct}: {ratio:.2f}")
    return all(
        r["missing"] == r["duplicates"] == 0 and r["joined"] == args.clients
        for r in results.values()
    )


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--wave", type=int, default=50, help="clients connecting at once")
    parser.add_argument("--redis-publish", choices=("redis", "http"), default="redis")
    for hidden in ("--role", "--urls", "--workspace"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.role == "clients":
        asyncio.run(clients(args))
        return 0
    interrupt_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="bench-broadcast-") as tmp:
        folder = Path(tmp)
        with EmbeddedMongo(folder / "mongo", in_memory=True) as mongo:
            results = asyncio.run(configurations(args, folder, mongo.uri))
    if report(args, results):
        return 0
    print("FAIL: a client did not join, or did not get every event exactly once")
    return 1


if __name__ == "__main__":
    sys.exit(main())
