"""Broadcast latency: our head against a minimal Node socket.io relay, same clients, same publisher.

Run:  .venv/bin/python bench/node_peer.py [--clients 500] [--events 30] [--interval-ms 500]
(needs `npm ci` in bench/node once: it installs socket.io from npm)

What runs (all on loopback, all stopped on exit):
- "ours": one head (`python -m cluster.cli head`, python-socketio, in-memory manager) over
  the embedded MongoDB (in memory) holding one workspace;
- "node": `node bench/node/relay.js`, socket.io 4 with default options, doing the least the
  same clients and publisher need: `workspace:join` joins the room `workspace:<id>` and
  answers `workspace:joined`; `POST /internal/events` emits the payload to the room.

Both are driven by bench/broadcast.py's code, unchanged: the same client process (N
python-socketio clients over websocket, all in one room, connecting and joining in waves)
and the same publisher (`make_publisher` with HEAD_URL set: core's HttpEventPublisher,
one POST per event, open loop on a fixed schedule). See broadcast.py's docstring for how
join and broadcast latency are taken; broadcast latency is from the publisher's
`time.time()` before the POST to the client's receipt.

What differs, and so is part of what is compared: the head authenticates every connection
(a NextAuth cookie, decrypted), looks the workspace and the user's role up in MongoDB on
each join, keeps a session per socket, validates each published event, numbers it
(`epoch`, `seq`) into its history and checks the publish token. The relay does none of
these: no auth, no database, no validation. Join latency is therefore mostly our MongoDB
lookup; broadcast latency is the fan-out itself plus the publish request.

The default rate (one event per 500 ms, 1,000 deliveries/s for 500 clients; a run's
aggregator sends one per 10 pages or 5 s) is meant to measure latency rather than backlog
on 2 cores; "event 0 alone" (nothing queued ahead) under each table says whether it did.
`--interval-ms 20 --events 50` gives broadcast.py's saturating load. Servers are measured
one after the other, `--rounds` times, swapping the order every round; the other load
column is the share of all CPUs taken by processes that are not this benchmark's during
each measurement: compare rows measured under similar load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from broadcast import (
    HEADER,
    Backend,
    create_bench_workspace,
    detail_line,
    head_processes,
    interrupt_on_sigterm,
    raise_fd_limit,
    ratio_line,
    result_line,
    run_config,
    wait_for,
)
from pipeline import CpuMeter

from core.embedded_mongo import EmbeddedMongo

NODE_DIR = Path(__file__).resolve().parent / "node"
RELAY = NODE_DIR / "relay.js"
OURS = "ours: head, in-memory, HTTP publish"
NODE = "node: socket.io relay, HTTP publish"
READY_TIMEOUT_S = 30.0


# -- the Node relay --------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A server under test: where clients and the publisher go, and its process."""

    url: str
    pid: int


def relay_port(log: Path) -> int | None:
    """The port the relay printed (`listening <port>`), once it has."""
    with contextlib.suppress(OSError):
        for line in log.read_text().splitlines():
            if line.startswith("listening "):
                return int(line.split()[1])
    return None


def relay_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def node_relay(workdir: Path) -> Iterator[Server]:
    """`node relay.js` on a port of its choosing, stopped on exit."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed")
    if not (NODE_DIR / "node_modules" / "socket.io").is_dir():
        raise RuntimeError(f"socket.io is not installed: run `npm ci` in {NODE_DIR}")
    log = workdir / "relay.log"
    env = dict(os.environ, PORT="0")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [node, str(RELAY)], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, cwd=NODE_DIR,
        )  # fmt: skip
    try:
        wait_for(lambda: relay_port(log) is not None, "node relay", proc)
        url = f"http://127.0.0.1:{relay_port(log)}"
        wait_for(lambda: relay_ready(url), "node relay /readyz", proc)
        yield Server(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(READY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- measurement -----------------------------------------------------------------------


@dataclass
class Measured:
    """One client process against one server: its RESULT, the server's CPU seconds, and the
    share of all CPUs other processes took meanwhile."""

    result: dict[str, Any]
    join_cpu_s: float
    rest_cpu_s: float
    other_load: float

    def join_cpu_ms(self) -> float:
        """Server CPU to connect and join one client."""
        return self.join_cpu_s / max(self.result["joined"], 1) * 1000

    def delivery_cpu_us(self) -> float:
        """Server CPU per delivery, publishes and the clients' disconnects included."""
        return self.rest_cpu_s / max(self.result["deliveries"], 1) * 1e6


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def measure_one(args: argparse.Namespace, server: Server, backend: Backend) -> Measured:
    """One client process against `server`, events published to it."""
    marks = [cpu_seconds(server.pid)]
    with CpuMeter() as meter:
        result = await run_config(
            args, [server.url], backend, {"HEAD_URL": server.url},
            on_ready=lambda: marks.append(cpu_seconds(server.pid)),
        )  # fmt: skip
    marks.append(cpu_seconds(server.pid))
    return Measured(result, marks[1] - marks[0], marks[2] - marks[1], meter.foreign_load())


async def run_rounds(
    args: argparse.Namespace, backend: Backend, servers: dict[str, Server]
) -> list[dict[str, Measured]]:
    """Each round measures both servers; odd rounds start with the relay."""
    rounds: list[dict[str, Measured]] = []
    for index in range(args.rounds):
        order = [OURS, NODE] if index % 2 == 0 else [NODE, OURS]
        rounds.append({name: await measure_one(args, servers[name], backend) for name in order})
    return rounds


# -- output ----------------------------------------------------------------------------


def print_report(args: argparse.Namespace, rounds: list[dict[str, Measured]]) -> None:
    print(
        f"\n{args.clients} clients in one workspace room, {args.events} index:progress "
        f"events {args.interval_ms:g} ms apart; times in ms. Our head authenticates each "
        f"connection (NextAuth cookie) and checks each join in MongoDB; the Node relay "
        f"does neither (no auth)."
    )
    print(f"{'round':<7}{HEADER}{'other load':>12}")
    for index, measured in enumerate(rounds, 1):
        for name, m in measured.items():
            print(f"{index:<7}{result_line(name, m.result)}{m.other_load:>12.0%}")
    for index, measured in enumerate(rounds, 1):
        ours, node = measured[OURS].result, measured[NODE].result
        print(f"round {index}: {ratio_line(node, ours, label='ours / node')}")
    print_cpu(rounds)
    for index, measured in enumerate(rounds, 1):
        for name, m in measured.items():
            print(f"round {index} {detail_line(name, m.result).lstrip()}")


def print_cpu(rounds: list[dict[str, Measured]]) -> None:
    """Server CPU: much less sensitive to other load than latency is."""
    print(
        "server process CPU (less sensitive to other load than latency): per client to "
        "connect and join; per delivery for publishing and fan-out (disconnects included)"
    )
    for index, measured in enumerate(rounds, 1):
        ours, node = measured[OURS], measured[NODE]
        cells = "; ".join(
            f"{name.split(':')[0]} {m.join_cpu_ms():.2f} ms/join, "
            f"{m.delivery_cpu_us():.0f} us/delivery"
            for name, m in measured.items()
        )
        join = ours.join_cpu_ms() / max(node.join_cpu_ms(), 1e-9)
        delivery = ours.delivery_cpu_us() / max(node.delivery_cpu_us(), 1e-9)
        print(f"round {index}: {cells}; ours / node: join {join:.1f}x, delivery {delivery:.1f}x")


def exact_and_joined(rounds: list[dict[str, Measured]]) -> bool:
    results = [m.result for measured in rounds for m in measured.values()]
    exact = all(r["missing"] == 0 and r["duplicates"] == 0 for r in results)
    return exact and all(r["joined"] == r["clients"] for r in results)


# -- main ------------------------------------------------------------------------------


def orchestrate(args: argparse.Namespace) -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-node-peer-"))
    try:
        with EmbeddedMongo(workdir / "mongo", in_memory=True) as mongo:
            db_name = f"bench_{uuid.uuid4().hex[:12]}"
            workspace_id = asyncio.run(create_bench_workspace(mongo.uri, db_name))
            backend = Backend(mongo.uri, db_name, secrets.token_urlsafe(32), workspace_id, workdir)
            with head_processes(backend, 1, None) as head, node_relay(workdir) as relay:
                servers = {OURS: Server(head[0][0], head[0][1].pid), NODE: relay}
                rounds = asyncio.run(run_rounds(args, backend, servers))
    except KeyboardInterrupt:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    except BaseException:
        print(f"bench failed; logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    print_report(args, rounds)
    print(f"total {time.monotonic() - started:.0f} s")
    if not exact_and_joined(rounds):
        print("FAIL: some client did not join or did not get every event exactly once")
        return 1
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--interval-ms", type=float, default=500.0)
    parser.add_argument("--wave", type=int, default=50, help="clients connecting at once")
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each server")
    args = parser.parse_args(argv)
    if min(args.clients, args.events, args.wave, args.rounds) < 1:
        parser.error("--clients, --events, --wave and --rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    interrupt_on_sigterm()
    try:
        return orchestrate(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
