"""A 1,000-page PDF among small ones: does it serialize the run?

Run from the repository root:

    .venv/bin/python bench/large_document.py [--large-pages 1000] [--small 20] [--small-pages 10]

One corpus: one large generated PDF (`cluster.sample_corpus`) and `--small` small ones.
Two `run_index` runs on one local Ray (2 CPUs), each into a new workspace of one in-memory
database, after an untimed run of one small document (so the embed pool is warm and the
parser actors are parked, as on a cluster that is up):

- mixed: the large document and the small ones together;
- small only: the small documents alone, for the rate the pipeline reaches without a large
  document in the way.

For the mixed run it prints the run time, pages/s, when each document finished (from the
documents' `indexedAt`), and the ideal time = the CPU seconds the benchmark's processes
spent during the run ÷ the cores: what a perfect schedule on this machine would take for
the same work. run time / ideal near 1 means the large document did not serialize the
run; the small documents finishing early (the driver fetches the longest first, then
splits every document into page batches that the pools take in turn) is the other sign.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import ray
from pipeline import CpuMeter, bench_settings, prepare_workspace, timed_run

from cluster.ray_runtime import connect_ray
from cluster.sample_corpus import TOPICS, write_sample_pdf, write_sample_workspace
from core.db import open_client
from core.embedded_mongo import EmbeddedMongo
from core.settings import Settings

RAY_CPUS = 2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--large-pages", type=int, default=1000)
    parser.add_argument("--small", type=int, default=20, help="small PDFs")
    parser.add_argument("--small-pages", type=int, default=10, help="pages per small PDF")
    return parser.parse_args()


@dataclass
class TimedRun:
    workspace_id: str
    seconds: float
    pages: int
    meter: CpuMeter
    started_at: float  # wall clock, to compare with the documents' `indexedAt`


def timed(settings: Settings, paths: list[Path]) -> TimedRun:
    """A new workspace holding `paths`, indexed with the clock and the CPU meter on."""
    workspace_id = asyncio.run(prepare_workspace(settings, paths))
    started_at = time.time()
    with CpuMeter() as meter:
        run = asyncio.run(timed_run(settings, workspace_id))
    if run.summary.status != "succeeded":
        raise RuntimeError(f"run_index {run.summary.status}: {run.summary.error}")
    return TimedRun(workspace_id, run.seconds, run.summary.pages, meter, started_at)


async def finish_times(settings: Settings, run: TimedRun) -> list[tuple[str, int, float]]:
    """(filename, pages, seconds from the run's start to `indexedAt`) of the run's
    documents, earliest first."""
    client = open_client(settings.mongodb_uri.reveal())  # type: ignore[union-attr]
    try:
        cursor = client[settings.mongodb_db].documents.find(
            {"workspaceId": run.workspace_id}, {"filename": 1, "pageCount": 1, "indexedAt": 1}
        )
        rows = [
            (d["filename"], int(d["pageCount"]), _epoch(d["indexedAt"]) - run.started_at)
            async for d in cursor
        ]
    finally:
        await client.close()
    return sorted(rows, key=lambda row: row[2])


def _epoch(moment: datetime) -> float:
    return moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=None).timestamp()


def report(mixed: TimedRun, small: TimedRun, finished: list[tuple[str, int, float]]) -> None:
    seconds, pages, meter = mixed.seconds, mixed.pages, mixed.meter
    ideal = meter.own_cpu() / RAY_CPUS
    small_rate = small.pages / small.seconds
    print("=== a large document among small ones ===")
    print(f"mixed run:   {pages} pages in {seconds:.1f}s = {pages / seconds:.2f} pages/s")
    print(f"small only:  {small.pages} pages in {small.seconds:.1f}s = {small_rate:.2f} pages/s")
    print(f"ideal (own CPU {meter.own_cpu():.1f}s / {RAY_CPUS} cores): {ideal:.1f}s")
    print(f"run time / ideal: {seconds / ideal:.2f}")
    print(f"mixed pages/s / small-only pages/s: {pages / seconds / small_rate:.2f}")
    print(f"other load during the mixed run: {meter.foreign_load():.0%}")
    print("documents finished (seconds from the start of the mixed run):")
    for name, page_count, at in finished:
        print(f"  {name:<24}{page_count:6d} pages  {at:8.1f}s")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        folder = Path(tmp)
        small = write_sample_workspace(
            folder / "small", documents=args.small, pages_each=args.small_pages
        )
        large = folder / "large.pdf"
        write_sample_pdf(large, next(iter(TOPICS)), args.large_pages, seed=1000)
        with EmbeddedMongo(folder / "mongo", in_memory=True) as mongo:
            connect_ray(None, num_cpus=RAY_CPUS)
            try:
                timed(bench_settings(mongo.uri, folder), small[:1])  # the embed pool, warm
                mixed_settings = bench_settings(mongo.uri, folder)
                mixed = timed(mixed_settings, [*small, large])
                finished = asyncio.run(finish_times(mixed_settings, mixed))
                small_only = timed(bench_settings(mongo.uri, folder), small)
            finally:
                ray.shutdown()
    report(mixed, small_only, finished)


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    main()
