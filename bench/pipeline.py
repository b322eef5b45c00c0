"""Pipeline throughput: `run_index` against the same work in one process and against encode.

    .venv/bin/python bench/pipeline.py [--documents 30] [--pages 12] [--runs 3]

One generated corpus (`cluster.sample_corpus`: 30 PDFs, 390 pages), measured three ways:

(a) `run_index` on a local Ray of 2 CPUs against an in-memory embedded MongoDB, with no
    head (events are dropped). Run 1 is cold: it starts every actor, and the embed pool
    loads the model in its time. Later runs index the corpus into a new workspace of the
    same database and find the embed pool up and the parser actors parked, as every run
    after the first does on a long-lived cluster.
(b) The same per-page work in this process, document after document, nothing stored
    (`harness.plain_work`), torch on every core, loading the model included.
(c) `encode` alone over the same chunks, model loaded, torch on every core, in the
    arithmetic the embed actor picks, at the batch size `encode` picks and at
    sentence-transformers' 32; the faster is the ceiling. It is timed right after every run
    of (a) and each run is set against its own (c), "paired": the machine's speed moves
    within minutes.

a/c is the share of the embedding ceiling the pipeline reaches end to end; a/b says whether
Ray's overlap of phases beats the plain sequence. Compare rows taken under similar other
load (the share of the CPUs other users' processes took meanwhile).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from harness import (
    CpuMeter,
    TimedRun,
    arguments,
    chunk_batches,
    median,
    other_load,
    plain_work,
    print_cpu,
    print_table,
    run_settings,
    sample_corpus,
    timed_index,
)

from actors.pool import plan_pools
from cluster.ray_runtime import connect_ray
from core.embedded_mongo import EmbeddedMongo
from core.embedding import DEFAULT_BATCH_SIZE, batch_size_for, encode, load_model, resolve_precision
from core.settings import Settings

RAY_CPUS = 2
Timed = tuple[float, CpuMeter]  # seconds, and CPU by process meanwhile


def ceiling(model: Any, texts: list[str], precision: str) -> Timed:
    """(c): the fastest of one `encode` over all texts at each batch size, after a warm-up."""
    encode(model, texts[:DEFAULT_BATCH_SIZE], precision=precision)
    seconds = []
    with CpuMeter() as meter:
        for size in sorted({batch_size_for(model), DEFAULT_BATCH_SIZE}):
            started = time.perf_counter()
            encode(model, texts, size, precision)
            seconds.append(time.perf_counter() - started)
    return min(seconds), meter


def plain(paths: list[Path], precision: str) -> tuple[Any, float, Timed]:
    """(b) on every core: the model, the seconds to load it, and the whole of (b)."""
    torch.set_num_threads(os.cpu_count() or 1)
    with CpuMeter() as meter:
        started = time.perf_counter()
        model = load_model(Settings().embed_model, "cpu")
        load_s = time.perf_counter() - started
        for path in paths:
            plain_work(path, model, dpi=Settings().render_dpi, precision=precision)
        seconds = time.perf_counter() - started
    return model, load_s, (seconds, meter)


def row(what: str, pages: int, timed: Timed) -> list[str]:
    seconds, meter = timed
    return [
        what,
        f"{seconds:.2f}",
        f"{pages / seconds:.2f}",
        f"{meter.own_cpu():.1f}",
        f"{meter.foreign_load():.0%}",
    ]


def report(runs: list[TimedRun], ceilings: list[Timed], load_s: float, work: Timed) -> None:
    pages = runs[0].summary.pages
    rows = [
        row(f"(a) run {i}, {'cold' if i == 1 else 'warm'}", pages, (r.seconds, r.cpu))
        for i, r in enumerate(runs, 1)
    ]
    rows.append(row(f"(b) plain process ({load_s:.2f} s of it loading the model)", pages, work))
    rows += [row(f"(c) encode alone, after run {i}", pages, c) for i, c in enumerate(ceilings, 1)]
    print_table(["measurement", "seconds", "pages/s", "own CPU s", "other load"], rows)
    ratios = [
        [i, f"{work[0] / r.seconds:.2f}", f"{c[0] / r.seconds:.2f}"]
        for i, (r, c) in enumerate(zip(runs, ceilings, strict=True), 1)
    ]
    print("\na/c paired: against (c) timed right after the run\n")
    print_table(["run", "a/b", "a/c paired"], ratios)
    warm = [c[0] / r.seconds for r, c in zip(runs[1:], ceilings[1:], strict=True)]
    if warm:
        print(f"\nwarm runs, a/c paired: median {median(warm):.2f}, lowest {min(warm):.2f}\n")
    print_cpu({f"run {i}": run.cpu for i, run in enumerate(runs, 1)})


def main() -> None:
    parser = arguments(__doc__, documents=30)
    parser.add_argument("--runs", type=int, default=3, help="run_index runs, the first cold")
    args = parser.parse_args()
    print(f"other load before: {other_load():.0%} of {os.cpu_count()} CPUs")
    precision = resolve_precision(Settings().embed_precision, "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        folder = Path(tmp)
        paths = sample_corpus(folder / "corpus", args)
        texts = [text for path in paths for batch in chunk_batches(path) for text in batch]
        with EmbeddedMongo(folder / "mongo", in_memory=True) as mongo:
            connect_ray(None, num_cpus=RAY_CPUS)
            try:
                print(f"{len(texts)} chunks; plan on {RAY_CPUS} CPUs: {plan_pools(RAY_CPUS, 0)}")
                settings = run_settings(mongo.uri, folder)
                runs = [timed_index(settings, paths)]
                model, load_s, work = plain(paths, precision)
                ceilings = [ceiling(model, texts, precision)]
                for _ in range(args.runs - 1):
                    runs.append(timed_index(settings, paths))
                    ceilings.append(ceiling(model, texts, precision))
            finally:
                ray.shutdown()
    report(runs, ceilings, load_s, work)


if __name__ == "__main__":
    main()
