"""The embedded MongoDB server's CPU per write command as writes pile up, with PyMongo's
retryable writes on (its default, which the indexer keeps) and off.

    .venv/bin/python bench/embedded_writes.py [--commands 12000] [--sample 300]

SecantusDB records every retryable write for 30 minutes (up to 10,000) and scans the records
on each write. Two in-memory servers side by side get the same write commands (a bulk upsert
of 6 chunk documents, the shape of an analyze batch), one client with `retryWrites=true`,
the other with `retryWrites=false`; the server's CPU per command is measured every 2,000
commands. The indexer keeps retryable writes on: the one automatic retry carries a run over
a quick restart of the server (tests/test_faults.py::
test_mongodb_restarted_at_once_the_run_resumes); a real mongod keeps one record per
session, so the growth is the embedded stand-in's alone.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import arguments, cpu_seconds, print_table
from pymongo import ASCENDING, MongoClient, UpdateOne

from core.embedded_mongo import EmbeddedMongo

CHUNKS_PER_COMMAND = 6
CHUNK_TEXT = "word " * 166


class Writer:
    """One server, one client, and a counter so every command writes new documents."""

    def __init__(self, server: EmbeddedMongo, *, retry_writes: bool) -> None:
        self._client: MongoClient[dict[str, object]] = MongoClient(
            server.uri, retryWrites=retry_writes
        )
        self._chunks = self._client.bench.chunks
        self._chunks.create_index([("documentId", ASCENDING), ("chunkNo", ASCENDING)], unique=True)
        self._server = server.pid
        self._next = 0

    def write(self, commands: int) -> None:
        for _ in range(commands):
            first, self._next = self._next, self._next + CHUNKS_PER_COMMAND
            self._chunks.bulk_write(
                [
                    UpdateOne(
                        {"documentId": f"d{n // 100}", "chunkNo": n},
                        {"$set": {"workspaceId": "w", "text": CHUNK_TEXT}},
                        upsert=True,
                    )
                    for n in range(first, first + CHUNKS_PER_COMMAND)
                ],
                ordered=False,
            )

    def ms_per_command(self, commands: int) -> float:
        started = cpu_seconds(self._server)
        self.write(commands)
        return (cpu_seconds(self._server) - started) / commands * 1_000

    def close(self) -> None:
        self._client.close()


def measure(args: argparse.Namespace) -> None:
    checkpoints = sorted({0, *range(2_000, args.commands + 1, 2_000)})
    with tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp:
        folder = Path(tmp)
        with (
            EmbeddedMongo(folder / "on", in_memory=True) as server_on,
            EmbeddedMongo(folder / "off", in_memory=True) as server_off,
        ):
            on = Writer(server_on, retry_writes=True)
            off = Writer(server_off, retry_writes=False)
            print(f"server CPU ms per write command, mean of {args.sample} commands\n")
            print_table(["commands before", "retryWrites on", "off", "on / off"], [])
            done = 0
            for checkpoint in checkpoints:
                on.write(checkpoint - done)
                off.write(checkpoint - done)
                ms_on = on.ms_per_command(args.sample)
                ms_off = off.ms_per_command(args.sample)
                done = checkpoint + args.sample
                row = [f"{checkpoint:,}", f"{ms_on:.2f}", f"{ms_off:.2f}", f"{ms_on / ms_off:.2f}"]
                print("| " + " | ".join(row) + " |", flush=True)
            on.close()
            off.close()


def parse_args() -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument("--commands", type=int, default=12_000, help="write commands in all")
    parser.add_argument("--sample", type=int, default=300, help="commands timed at each point")
    return parser.parse_args()


if __name__ == "__main__":
    measure(parse_args())
