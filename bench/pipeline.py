"""Pipeline throughput: the Ray pipeline against the same work done plainly, and the ceiling.

Run from the repository root:

    .venv/bin/python bench/pipeline.py [--documents 30] [--pages 12] [--runs 2]

One generated corpus (`cluster.sample_corpus`, default 30 PDFs, 390 pages) is measured three
ways, all on this machine:

(a) `run_index` on a local Ray (`connect_ray(None, num_cpus=2)`, started before the clock)
    against an in-memory EmbeddedMongo (indexes created as the CLI does). The clock covers
    `run_index` only: the run's actors are created inside it, as are MongoDB/GridFS writes
    and the ontology phase. No head runs: HEAD_URL points at an unused port, so every
    progress event is refused at once and dropped with a warning in the aggregator's
    (unshown) log. Run 1 is cold: it creates the embed pool (`actors.embed_pool`), so the
    model load is in its time. Runs 2+ index the same corpus into a new workspace of the
    same database and find the embed pool warm and the parser actors of the run before
    parked (`actors.spares`), as every run after the first does on a long-lived cluster. "steady" is
    the pages finished after the first page-batch divided by the time between first and
    last, read from the aggregator's progress: the rate once the actors are up.
(b) The same per-page work, phase after phase, in this one process, with no Ray and no
    MongoDB writes: read + sha256 + open each PDF; render every page to PNG at the same DPI
    (`preview_dpi`, `get_pixmap`, `encode_png`); `get_text("dict")` -> `blocks_from_dict`
    -> `page_text` -> `chunk_page`; `load_model`; `encode` of all chunks at once, with torch
    on every core. No ontology phase.
(c) `encode` alone on the same chunks, model loaded, after a warm-up batch, in the
    arithmetic the embed actor picks (`core.embedding.resolve_precision`; (b) too), at two
    batch sizes taken in turn: the one `encode` picks for this process's torch threads
    (`core.embedding.batch_size_for`; the embed actor's streams get theirs) and
    sentence-transformers' default of 32 (the ceiling before 2026-12-03). The faster is the
    ceiling for the whole pipeline on a CPU machine. (c) is timed `--repeats` times at each
    size right after every run of (a), so that each run has a ceiling taken on the machine
    as it was then: this machine's speed moves by 10-30% within an hour, as much as the
    target's margin. After run 1, (c) is also timed once in a new process, from its start
    to its exit (imports and model load included): the ceiling for a cold run.

How to read it: a/c is the share of the embedding ceiling the pipeline reaches end to end,
against the ceiling timed right after that run ("paired") and against the fastest (c) of
the whole invocation (the strictest reading, which sets one run against the machine's best
moment); run 1 is also set against the cold (c). a/b says whether Ray's overlap of phases
beats the plain sequence. Phase shares of (b) add up to 100%; the RunSummary busy seconds
of (a) are wall seconds during which at least one call of that phase was in flight (queued
or running, so embed includes waiting for the model load), and they overlap, so their
shares of the run do not add up. The CPU table charges every CPU second spent during each
run to a process; "other" is load that is not this benchmark's; the "other load" column
gives that share of all CPUs during each measurement. This machine is often shared: a row
with other load above a few percent is slower than the code is, and ratios between rows
measured under different loads are noise.

`--experiment` adds variants (monkeypatches in this process only, never the project's
files); their lines are marked EXPERIMENT and are not part of the measurement above.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
import ray

import cluster.driver as driver
from actors.layout import blocks_from_dict, chunk_page, page_text
from actors.pdf import open_pdf
from actors.png import encode_png
from actors.pool import PAGE_BATCH, PoolPlan, plan_pools
from actors.render import preview_dpi
from cluster.documents import add_document
from cluster.driver import RunActors, RunSummary, run_index
from cluster.progress_bar import REFRESH_S
from cluster.ray_runtime import cluster_size, connect_ray
from cluster.sample_corpus import write_sample_workspace
from core.db import ensure_indexes, open_client
from core.embedded_mongo import EmbeddedMongo
from core.embedding import DEFAULT_BATCH_SIZE, batch_size_for, encode, load_model, resolve_precision
from core.settings import Secret, Settings
from core.workspaces import create_workspace

RAY_CPUS = 2
# The run's progress is read as often as `indexer index`'s progress bar reads it.
SAMPLE_S = REFRESH_S
CPU_SAMPLE_S = 0.5
QUIET_CHECK_S = 2.0
BUSY_MACHINE = 0.15
OTHER = "other (not this benchmark)"


# -- CPU accounting ------------------------------------------------------------------------


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _label(proc: psutil.Process, mine: set[int], me: int) -> str:
    if proc.pid == me:
        return "bench driver (this process)"
    if proc.pid not in mine:
        return OTHER
    cmdline = proc.cmdline()
    if cmdline and cmdline[0].startswith("ray::"):
        # The title Ray sets, "ray::Class.method" while a call runs; `name()` is cut at 15.
        return cmdline[0].split()[0].split(".")[0]
    if "secantusd" in " ".join(cmdline):
        return "MongoDB server (secantusd)"
    return "Ray system (gcs, raylet, agents)"


def _busy(times: Any) -> float:
    """CPU seconds not idle, all CPUs together (guest time is already in user time)."""
    skip = {"idle", "iowait", "guest", "guest_nice"}
    return sum(v for k, v in times._asdict().items() if k not in skip)


def _is_actor(label: str) -> bool:
    return label.startswith("ray::") and label != "ray::IDLE"


class CpuMeter:
    """CPU seconds per process label over a window, sampled by a thread.

    A process that ends between samples loses at most `CPU_SAMPLE_S` of its CPU time.
    """

    def __init__(self) -> None:
        self._me = os.getpid()
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._labels: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._system_start = psutil.cpu_times()
        self._started = time.monotonic()
        self.wall = 0.0
        self.busy = 0.0

    def __enter__(self) -> CpuMeter:
        self._started = time.monotonic()
        self._system_start = psutil.cpu_times()
        self._sample(baseline=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample(baseline=False)
        self._stop.set()
        self._thread.join()
        self.wall = time.monotonic() - self._started
        self.busy = _busy(psutil.cpu_times()) - _busy(self._system_start)

    def _loop(self) -> None:
        while not self._stop.wait(CPU_SAMPLE_S):
            self._sample(baseline=False)

    def _sample(self, *, baseline: bool) -> None:
        mine = {p.pid for p in psutil.Process(self._me).children(recursive=True)}
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                seconds = _cpu_seconds(proc)
                label = _label(proc, mine, self._me)
                if baseline or proc.pid not in self._base:
                    self._base[proc.pid] = seconds if baseline else 0.0
                self._last[proc.pid] = seconds
                if not _is_actor(self._labels.get(proc.pid, "")):
                    self._labels[proc.pid] = label  # a worker keeps its actor's name

    def foreign_load(self) -> float:
        """Share of all CPUs taken by processes that are not this benchmark's."""
        capacity = (os.cpu_count() or 1) * max(self.wall, 1e-9)
        return self.by_label().get(OTHER, 0.0) / capacity

    def own_cpu(self) -> float:
        """CPU seconds of this benchmark's processes: much less sensitive to other load."""
        return sum(s for label, s in self.by_label().items() if label != OTHER)

    def by_label(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, last in self._last.items():
            label = self._labels[pid]
            totals[label] = totals.get(label, 0.0) + max(0.0, last - self._base[pid])
        return dict(sorted(totals.items(), key=lambda item: -item[1]))


def background_load() -> float:
    """Share of all CPUs busy over a short quiet window before anything starts."""
    psutil.cpu_percent(interval=None)
    return psutil.cpu_percent(interval=QUIET_CHECK_S) / 100.0


# -- (a) the Ray pipeline ------------------------------------------------------------------


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def dead_head_url() -> str:
    """A HEAD_URL nobody listens on (progress events are dropped), the same for every run of
    this process: settings that differ would not find each other's parked parser actors."""
    return f"http://127.0.0.1:{unused_port()}"


def bench_settings(mongo_uri: str, data_dir: Path) -> Settings:
    """One database for the whole benchmark (each run indexes a workspace of its own, as
    runs on a long-lived cluster do), and no head."""
    return Settings(
        mongodb_uri=Secret(mongo_uri),
        mongodb_db="bench",
        data_dir=data_dir,
        head_url=dead_head_url(),
        publish_token=Secret("bench-no-head"),
    )


async def prepare_workspace(settings: Settings, paths: list[Path]) -> str:
    """Indexes, a workspace and its documents in GridFS, as `indexer add` leaves them."""
    client = open_client(settings.mongodb_uri.reveal())  # type: ignore[union-attr]
    try:
        db = client[settings.mongodb_db]
        await ensure_indexes(db)
        workspace_id = str(await create_workspace(db, name="bench", owner_id="b", member_ids=[]))
        for path in paths:
            result = await add_document(
                db, workspace_id, str(path), max_bytes=settings.max_document_bytes
            )
            if result.error:
                raise RuntimeError(f"{path}: {result.error}")
        return workspace_id
    finally:
        await client.close()


@dataclass
class RayRun:
    """One timed `run_index`, its settings and workspace, and what was watched while it ran."""

    settings: Settings
    workspace_id: str
    summary: RunSummary
    seconds: float
    embed_ready_s: float | None = None
    embed_actor: dict[str, Any] = field(default_factory=dict)
    progress: list[tuple[float, int]] = field(default_factory=list)
    cpu: CpuMeter | None = None

    def steady_rate(self) -> float | None:
        """Pages/s between the first and the last page-batch finishing."""
        if not self.progress:
            return None
        first = next(((t, n) for t, n in self.progress if n > 0), None)
        last = self.progress[-1]
        if first is None or last[0] <= first[0]:
            return None
        return (last[1] - first[1]) / (last[0] - first[0])

    def first_done_s(self) -> float | None:
        return next((t for t, n in self.progress if n > 0), None)

    def last_done_s(self) -> float | None:
        """When the last page was done: what follows is the ontology's rest and finalize."""
        return self.progress[-1][0] if self.progress else None


class RunWatcher:
    """Hooked in through `on_start`: when the embed actor is ready, and pagesDone over time."""

    def __init__(self, run: RayRun, started: float) -> None:
        self._run = run
        self._started = started
        self._tasks: list[asyncio.Task[None]] = []

    def __call__(self, actors: RunActors) -> None:
        self._tasks.append(asyncio.create_task(self._embed_ready(actors.embed.actors[0])))
        self._tasks.append(asyncio.create_task(self._poll(actors.aggregator)))

    async def _embed_ready(self, actor: Any) -> None:
        with contextlib.suppress(Exception):
            self._run.embed_actor = await actor.describe.remote()
            self._run.embed_ready_s = time.monotonic() - self._started

    async def _poll(self, aggregator: Any) -> None:
        last = -1
        with contextlib.suppress(Exception):
            while True:
                snapshot = await aggregator.snapshot.remote()
                done = int(snapshot.get("pagesDone", 0))
                if done != last:
                    self._run.progress.append((time.monotonic() - self._started, done))
                    last = done
                await asyncio.sleep(SAMPLE_S)

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()


async def timed_run(settings: Settings, workspace_id: str) -> RayRun:
    run = RayRun(settings, workspace_id, RunSummary(job_id="", status="not run"), 0.0)
    started = time.monotonic()
    watcher = RunWatcher(run, started)
    try:
        run.summary = await run_index(settings, workspace_id, on_start=watcher)
        run.seconds = time.monotonic() - started
    finally:
        watcher.cancel()
    return run


def ray_run(mongo_uri: str, data_dir: Path, paths: list[Path]) -> RayRun:
    """Prepare a new workspace (untimed), then time `run_index` with the CPU meter on."""
    settings = bench_settings(mongo_uri, data_dir)
    workspace_id = asyncio.run(prepare_workspace(settings, paths))
    with CpuMeter() as meter:
        run = asyncio.run(timed_run(settings, workspace_id))
    run.cpu = meter
    if run.summary.status != "succeeded":
        raise RuntimeError(f"run_index {run.summary.status}: {run.summary.error}")
    return run


# -- (b) the same work in one plain process, and (c) the embedding alone --------------------


@dataclass
class PlainRun:
    pages: int = 0
    texts: list[str] = field(default_factory=list)
    # Chunk texts of each driver batch (PAGE_BATCH pages of a document), for experiments.
    batches: list[list[str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    model: Any = None

    def total(self, *, without: tuple[str, ...] = ()) -> float:
        return sum(s for phase, s in self.seconds.items() if phase not in without)


@contextlib.contextmanager
def phase(run: PlainRun, name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    run.seconds[name] = run.seconds.get(name, 0.0) + time.perf_counter() - started


def use_all_cores() -> int:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    return int(torch.get_num_threads())


def actor_precision() -> str:
    """The arithmetic the embed actor picks on this machine's CPU: (b) and (c) use it too."""
    return resolve_precision(Settings().embed_precision, "cpu")


def plain_pipeline(paths: list[Path], dpi: int, model_name: str) -> PlainRun:
    run = PlainRun()
    with phase(run, "fetch (read, sha256, open)"):
        documents = [read_and_open(path) for path in paths]
    with phase(run, "render (PNG)"):
        for document in documents:
            for page in document:
                page_dpi = preview_dpi(page.rect.width, page.rect.height, dpi)
                encode_png(page.get_pixmap(dpi=page_dpi))
    with phase(run, "analyze (layout, chunks)"):
        for document in documents:
            run.batches.extend(analyze_document(document))
    run.texts = [text for batch in run.batches for text in batch]
    run.pages = sum(document.page_count for document in documents)
    with phase(run, "model load"):
        run.model = load_model(model_name, "cpu")
    with phase(run, "embed"):
        encode(run.model, run.texts, precision=actor_precision())
    return run


def read_and_open(path: Path) -> Any:
    data = path.read_bytes()
    hashlib.sha256(data).hexdigest()
    return open_pdf(data)


def analyze_document(document: Any) -> list[list[str]]:
    """Chunk texts of one document, grouped the way the driver batches its pages."""
    batches: list[list[str]] = []
    for first in range(0, document.page_count, PAGE_BATCH):
        batch: list[str] = []
        for page_no in range(first, min(first + PAGE_BATCH, document.page_count)):
            blocks = blocks_from_dict(document[page_no].get_text("dict", flags=0))
            batch.extend(chunk.text for chunk in chunk_page(page_text(blocks), page_no))
        batches.append(batch)
    return batches


def embed_ceiling(model: Any, texts: list[str], repeats: int) -> dict[int, list[float]]:
    """Seconds of `encode` over all texts by batch size, after a warm-up batch, `repeats`
    times each, alternating: the batch size `encode` picks for this process's threads, and
    sentence-transformers' default. The faster is the ceiling."""
    sizes = sorted({batch_size_for(model), DEFAULT_BATCH_SIZE})
    precision = actor_precision()
    encode(model, texts[:DEFAULT_BATCH_SIZE], precision=precision)
    seconds: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(repeats):
        for size in sizes:
            started = time.perf_counter()
            encode(model, texts, size, precision)
            seconds[size].append(time.perf_counter() - started)
    return seconds


# What a cold embedding step does: start, import torch and sentence-transformers, load the
# model, encode. Run as `python -c COLD_CEILING texts.json threads model precision`.
COLD_CEILING = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[2]))
from core.embedding import encode, load_model
encode(load_model(sys.argv[3], "cpu"), json.loads(open(sys.argv[1]).read()), None, sys.argv[4])
"""


def cold_ceiling(texts: list[str], threads: int, model_name: str, folder: Path) -> float:
    """Seconds of (c) in a new process, from its start to its exit: the ceiling for a cold
    run, which also starts processes, imports torch and loads the model."""
    texts_file = folder / "ceiling-texts.json"
    texts_file.write_text(json.dumps(texts))
    command = [
        sys.executable,
        "-c",
        COLD_CEILING,
        str(texts_file),
        str(threads),
        model_name,
        actor_precision(),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1])
    return time.perf_counter() - started


# -- report --------------------------------------------------------------------------------


def rate(count: int, seconds: float | None) -> str:
    return f"{count / seconds:9.2f}" if seconds else f"{'-':>9}"


def row(label: str, seconds: float, pages: int, chunks: int, meter: CpuMeter | None) -> str:
    cpu = f"{meter.own_cpu():10.1f}{meter.foreign_load():12.0%}" if meter is not None else ""
    return f"  {label:<46}{seconds:9.2f}{rate(pages, seconds)}{rate(chunks, seconds)}{cpu}"


def print_header(bench: Bench, threads: int) -> None:
    plain = bench.plain
    words = statistics.mean(len(t.split()) for t in plain.texts) if plain.texts else 0.0
    plan = plan_pools(*cluster_size())
    print("\n=== pipeline throughput ===")
    print(
        f"corpus: {len(bench.paths)} PDFs, {plain.pages} pages, {len(plain.texts)} chunks "
        f"({words:.0f} words/chunk avg), DPI {Settings().render_dpi}, model "
        f"{Settings().embed_model}"
    )
    print(
        f"machine: {os.cpu_count()} CPUs; Ray {RAY_CPUS} CPUs; in-process torch threads "
        f"{threads}; background load before start {bench.load:.0%}"
        + ("  ** machine not quiet **" if bench.load > BUSY_MACHINE else "")
    )
    print(
        f"pool plan: embed {plan.embed_actors} actor x {plan.embed_cpus:g} CPU, "
        f"{plan.embed_streams} streams of {plan.embed_threads} torch threads; "
        f"render/analyze {plan.render_actors} x "
        f"{plan.render_cpus:g} CPU; {PAGE_BATCH} pages per batch, "
        f"{plan.max_batches_in_flight} batches in flight"
    )


def print_rates(bench: Bench) -> None:
    plain, runs = bench.plain, bench.runs
    pages, chunks = plain.pages, len(plain.texts)
    columns = f"{'seconds':>9}{'pages/s':>9}{'chunks/s':>9}{'own CPU s':>10}{'other load':>12}"
    print(f"\n  {'':<46}{columns}")
    for index, run in enumerate(runs, 1):
        kind = "cold, new embed pool" if index == 1 else "warm embed pool"
        label = f"(a) run_index, run {index} ({kind})"
        print(row(label, run.seconds, pages, chunks, run.cpu))
    for index, run in enumerate(runs, 1):
        steady = run.steady_rate()
        if steady:
            label = f"(a) run {index} steady (first->last batch done)"
            print(f"  {label:<46}{'':>9}{steady:9.2f}")
    print(row("(b) plain process, all phases", plain.total(), pages, chunks, bench.plain_cpu))
    without = plain.total(without=("model load",))
    print(row("(b) plain process, without model load", without, pages, chunks, None))
    for size in sorted(bench.ceilings[0]):
        timings = [s for ceiling in bench.ceilings for s in ceiling[size]]
        label = f"(c) encode only, {size} texts a pass (fastest of {len(timings)})"
        print(row(label, min(timings), pages, chunks, None))
        print(f"      after each run: {', '.join(f'{s:.2f}s' for s in timings)}")
    loads = [meter.foreign_load() for meter in bench.ceiling_meters]
    print(f"      other load while (c) was timed: {min(loads):.0%} to {max(loads):.0%}")
    if bench.cold_ceiling is not None:
        label = "(c) cold: a new process starts, imports, loads"
        print(row(label, bench.cold_ceiling, pages, chunks, None))
    print_ratios(bench, without)


def fastest(ceiling: dict[int, list[float]]) -> float:
    return min(min(seconds) for seconds in ceiling.values())


def print_ratios(bench: Bench, plain_without_load: float) -> None:
    """a/b, and a/c paired (against the ceiling timed right after the run) and against the
    fastest ceiling of the invocation; then the median of the warm runs' paired a/c."""
    plain, pages = bench.plain, bench.plain.pages
    best = min(fastest(ceiling) for ceiling in bench.ceilings)
    print("\nratios of pages/s:")
    for index, (run, ceiling) in enumerate(zip(bench.runs, bench.ceilings, strict=True), 1):
        paired = fastest(ceiling)
        default = min(ceiling[DEFAULT_BATCH_SIZE])
        print(
            f"  run {index}: a/b = {plain.total() / run.seconds:.2f} "
            f"(without model load {plain_without_load / run.seconds:.2f})   "
            f"a/c paired = {paired / run.seconds:.2f} (ceiling {paired:.2f}s; against "
            f"{DEFAULT_BATCH_SIZE} texts a pass {default / run.seconds:.2f})"
            f"   a/c against the fastest (c) {best / run.seconds:.2f}"
        )
        steady = run.steady_rate()
        if steady:
            print(f"  run {index} steady: a/c paired = {steady / (pages / paired):.2f}")
    if bench.cold_ceiling is not None:
        cold = bench.cold_ceiling / bench.runs[0].seconds
        print(f"  run 1 (cold) against (c) cold: a/c = {cold:.2f}")
    warm = [fastest(c) / r.seconds for r, c in zip(bench.runs[1:], bench.ceilings[1:], strict=True)]
    if warm:
        print(
            f"  warm runs, a/c paired: median {statistics.median(warm):.2f}, "
            f"lowest {min(warm):.2f} ({len(warm)} runs)"
        )


def print_phases(bench: Bench) -> None:
    plain = bench.plain
    total = plain.total()
    print("\n(b) plain process, phase by phase (share of its total):")
    for name, seconds in plain.seconds.items():
        print(f"  {name:<32}{seconds:8.2f}s {seconds / total:6.1%}")
    for index, run in enumerate(bench.runs, 1):
        print(f"\n(a) run {index}: RunSummary.phase_seconds (busy wall s, overlapping, % of run):")
        for name, seconds in run.summary.phase_seconds.items():
            print(f"  {name:<32}{seconds:8.2f}s {seconds / run.seconds:6.1%}")
        print_timeline(run)


def print_timeline(run: RayRun) -> None:
    ready = f"{run.embed_ready_s:.2f}s" if run.embed_ready_s is not None else "?"
    first = run.first_done_s()
    first_text = f"{first:.2f}s" if first is not None else "?"
    last = run.last_done_s()
    last_text = f"{last:.2f}s" if last is not None else "?"
    print(
        f"  EmbedActor answered describe() ({run.embed_actor.get('threads', '?')} torch "
        f"threads; model loaded by then) at {ready}; first batch done at {first_text}; "
        f"last at {last_text}; end at {run.seconds:.2f}s"
    )
    print(f"  stored: {run.summary.chunks} chunks, {run.summary.concepts} concepts")


def print_cpu(runs: list[RayRun]) -> None:
    meters = [run.cpu for run in runs if run.cpu is not None]
    if not meters:
        return
    columns = "".join(f"{f'run {i}':>9}" for i in range(1, len(meters) + 1))
    print(f"\n(a) CPU seconds spent during each run, by process:\n  {'':<44}{columns}")
    tables = [meter.by_label() for meter in meters]
    labels = sorted(
        {label for table in tables for label in table}, key=lambda k: -tables[0].get(k, 0)
    )
    for label in labels:
        if max(table.get(label, 0.0) for table in tables) >= 0.05:
            print(f"  {label:<44}" + "".join(f"{t.get(label, 0.0):9.2f}" for t in tables))
    capacity = [(os.cpu_count() or 1) * m.wall for m in meters]
    print(
        f"  {'all CPUs busy / available':<44}"
        + "".join(f"{m.busy / c:9.0%}" for m, c in zip(meters, capacity, strict=True))
    )


# -- experiments (not part of the measurement) ---------------------------------------------


@contextlib.contextmanager
def patched(module: Any, **values: Any) -> Iterator[None]:
    saved = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def experiment_fetch1(bench: Bench) -> None:
    """EXPERIMENT: one fetch actor instead of two (fewer worker processes starting at once)."""

    def plan_one_fetch(cpus: float, gpus: float) -> PoolPlan:
        return replace(plan_pools(cpus, gpus), fetch_actors=1)

    with patched(driver, plan_pools=plan_one_fetch):
        run = ray_run(bench.mongo_uri, bench.folder, bench.paths)
    report_experiment("1 fetch actor", run, bench)


class _PassiveEmbedActor:
    """Stands in for EmbedActor in `actors.embed_pool`: the same actor, with OpenMP's
    waiting threads set to sleep instead of spin (OMP_WAIT_POLICY=PASSIVE)."""

    def __init__(self, actor_class: Any) -> None:
        self._class = actor_class

    def options(self, **options: Any) -> Any:
        env = {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}
        return self._class.options(runtime_env=env, **options)


def experiment_omp_passive(bench: Bench) -> None:
    """EXPERIMENT: a fresh embed pool whose torch threads sleep while they wait (the embed
    actor shares the cores with the parsers and MongoDB here, and spinning threads burn
    CPU the others need), then a warm run with it."""
    import actors.embed_pool as embed_pool

    passive = _PassiveEmbedActor(embed_pool.EmbedActor)
    cold_and_warm(bench, "OMP_WAIT_POLICY=PASSIVE", embed_pool, EmbedActor=passive)


def experiment_embed_threads(bench: Bench) -> None:
    """EXPERIMENT: one embed stream with a torch thread per core (the plan before
    2026-11-29) instead of one single-threaded stream per core, a cold and a warm run."""

    def plan_one_stream(cpus: float, gpus: float) -> PoolPlan:
        plan = plan_pools(cpus, gpus)
        return replace(plan, embed_actors=1, embed_streams=1, embed_threads=int(cpus))

    cold_and_warm(bench, f"1 embed stream x {RAY_CPUS} threads", driver, plan_pools=plan_one_stream)


def experiment_embed_processes(bench: Bench) -> None:
    """EXPERIMENT: one single-threaded embed actor per stream (the plan until 2026-11-29 20:00:
    each process imports torch and loads the model) instead of the streams sharing one
    actor, a cold and a warm run."""

    def plan_actor_per_stream(cpus: float, gpus: float) -> PoolPlan:
        plan = plan_pools(cpus, gpus)
        actors = plan.encode_streams
        return replace(
            plan, embed_actors=actors, embed_streams=1, embed_cpus=plan.embed_cpus / actors
        )

    cold_and_warm(bench, "an embed actor per stream", driver, plan_pools=plan_actor_per_stream)


PARSE_AHEAD = 40


def experiment_parse_ahead(bench: Bench) -> None:
    """EXPERIMENT: PARSE_AHEAD batches parsed ahead of the embed pool, against the plan's
    bound, a cold and a warm run each."""
    for ahead in (0, PARSE_AHEAD):

        def plan_ahead(cpus: float, gpus: float, ahead: int = ahead) -> PoolPlan:
            plan = plan_pools(cpus, gpus)
            return replace(plan, max_batches_in_flight=plan.max_batches_in_flight + ahead)

        cold_and_warm(bench, f"{ahead} more batches in flight", driver, plan_pools=plan_ahead)


class _Renicer:
    """Sets a niceness on the processes of the given actor classes while it runs (checked
    every 0.2 s, so new actor processes are caught as they start)."""

    def __init__(self, classes: tuple[str, ...], niceness: int) -> None:
        self._classes = classes
        self._niceness = niceness
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Renicer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            for proc in psutil.process_iter(["cmdline"]):
                title = " ".join(proc.info["cmdline"] or [])
                if title.startswith("ray::") and any(c in title for c in self._classes):
                    with contextlib.suppress(psutil.Error):
                        if proc.nice() != self._niceness:
                            proc.nice(self._niceness)


def experiment_nice_parsers(bench: Bench) -> None:
    """EXPERIMENT: warm runs, alternating: the parser and ontology actors at niceness 10 (the
    embed actor, the bottleneck, gets the cores whenever it can run) and at 0. Root only:
    parked actors keep their niceness, and only root may lower it again."""
    if os.geteuid() != 0:
        raise SystemExit("--experiment nice-parsers needs root (see its docstring)")
    parsers = ("FetchActor", "RenderActor", "AnalyzeActor", "OntologyActor")
    warm_up(bench)
    for _ in range(2):
        for niceness in (0, 10):
            with _Renicer(parsers, niceness):
                run = ray_run(bench.mongo_uri, bench.folder, bench.paths)
            report_experiment(f"parsers at niceness {niceness}", run, bench)


async def _parse_batch_held(self: Any, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    """`IndexRun._parse_batch` that keeps its batch in the analysis barrier."""
    rendered = await self._timed("render", self._pools.render.call("render", *args))
    return await self._timed("analyze", self._pools.analyze.call("analyze", *args, rendered))


async def _run_batch_then_release(self: Any, fetched: Any, pages: list[int]) -> None:
    """`IndexRun._run_batch` that releases its batch from the barrier after the embed."""
    try:
        await _RUN_BATCH(self, fetched, pages)
    finally:
        self._analysis.batch_analyzed()


_RUN_BATCH = driver.IndexRun._run_batch


def experiment_ontology_last(bench: Bench) -> None:
    """EXPERIMENT: warm runs, alternating: the ontology built while the last batches embed
    (the code) and after the last batch is embedded (the order before
    cluster/analysis_barrier.py: each batch leaves the barrier after its embed)."""
    warm_up(bench)
    for _ in range(2):
        run = ray_run(bench.mongo_uri, bench.folder, bench.paths)
        report_experiment("ontology while the last pages embed", run, bench)
        with patched(
            driver.IndexRun,
            _parse_batch=_parse_batch_held,
            _run_batch=_run_batch_then_release,
        ):
            run = ray_run(bench.mongo_uri, bench.folder, bench.paths)
        report_experiment("ontology after the last page", run, bench)


def warm_up(bench: Bench) -> None:
    """An untimed run when no embed pool is up (an experiment before this one removed it),
    so that the warm runs that follow are warm."""
    from actors.embed_pool import pool_actor_names

    if not pool_actor_names():
        ray_run(bench.mongo_uri, bench.folder, bench.paths)


def cold_and_warm(bench: Bench, what: str, module: Any, **values: Any) -> None:
    """A cold and a warm run with `module` patched, in actors of their own: the embed pool
    and the parked parser and ontology actors are removed before (so the cold run starts
    every actor, as run 1 does) and after."""
    remove_run_actors()
    with patched(module, **values):
        for label in ("cold", "warm"):
            run = ray_run(bench.mongo_uri, bench.folder, bench.paths)
            report_experiment(f"{what}, {label}", run, bench)
    remove_run_actors()


def remove_run_actors() -> None:
    """Remove the embed pool and the parked parser and ontology actors."""
    import actors.embed_pool as embed_pool
    from actors.spares import remove_spares

    embed_pool.remove_other_pools(keep=None)
    remove_spares()


def report_experiment(what: str, run: RayRun, bench: Bench) -> None:
    pages = bench.plain.pages
    steady = run.steady_rate()
    cpu = run.cpu
    load = ""
    if cpu:
        embed = sum(s for label, s in cpu.by_label().items() if "EmbedActor" in label)
        load = f"own CPU {cpu.own_cpu():.1f}s (embed {embed:.1f}s), other load "
        load += f"{cpu.foreign_load():.0%}; "
    print(
        f"  EXPERIMENT run_index, {what}: {run.seconds:.2f}s = {pages / run.seconds:.2f} "
        f"pages/s; {load}steady {steady or 0:.2f} pages/s; embed ready at "
        f"{run.embed_ready_s or 0:.2f}s; last page done at {run.last_done_s() or 0:.2f}s; phases "
        + ", ".join(f"{k} {v:.1f}s" for k, v in run.summary.phase_seconds.items())
    )


def timed_encode(model: Any, groups: list[list[str]]) -> tuple[float, float]:
    """Seconds to encode every group in turn, and the other load meanwhile."""
    with CpuMeter() as meter:
        started = time.perf_counter()
        for group in groups:
            if group:
                encode(model, group)
        seconds = time.perf_counter() - started
    return seconds, meter.foreign_load()


def experiment_batches(bench: Bench) -> None:
    """EXPERIMENT: encode in the driver's per-batch groups, as EmbedActor.embed receives them,
    alternating with one call over all chunks so both see the same load."""
    plain = bench.plain
    sizes = [len(b) for b in plain.batches if b]
    for _ in range(2):
        for what, groups in (("all at once", [plain.texts]), ("per batch", plain.batches)):
            seconds, load = timed_encode(plain.model, groups)
            print(
                f"  EXPERIMENT encode {what} ({len(groups)} calls; batches of "
                f"{min(sizes)}-{max(sizes)} chunks): {seconds:.2f}s = "
                f"{plain.pages / seconds:.2f} pages/s, other load {load:.0%}"
            )


def experiment_threads1(bench: Bench) -> None:
    """EXPERIMENT: encode with 1 torch thread (what an actor left at Ray's default gets),
    next to the same encode with every core."""
    import torch

    before = torch.get_num_threads()
    for threads in (1, before):
        torch.set_num_threads(threads)
        try:
            seconds, load = timed_encode(bench.plain.model, [bench.plain.texts])
        finally:
            torch.set_num_threads(before)
        print(
            f"  EXPERIMENT encode, {threads} torch thread(s): {seconds:.2f}s = "
            f"{bench.plain.pages / seconds:.2f} pages/s, other load {load:.0%}"
        )


EXPERIMENTS: dict[str, Callable[[Bench], None]] = {
    "fetch1": experiment_fetch1,
    "omp-passive": experiment_omp_passive,
    "batches": experiment_batches,
    "threads1": experiment_threads1,
    "embed-threads": experiment_embed_threads,
    "embed-processes": experiment_embed_processes,
    "ontology-last": experiment_ontology_last,
    "parse-ahead": experiment_parse_ahead,
    "nice-parsers": experiment_nice_parsers,
}


# -- main ----------------------------------------------------------------------------------


@dataclass
class Bench:
    """One corpus, its server, and what was measured on it."""

    folder: Path
    paths: list[Path]
    mongo_uri: str
    load: float
    runs: list[RayRun] = field(default_factory=list)
    # (c) timed right after each run of (a): seconds by batch size, one entry per run.
    ceilings: list[dict[int, list[float]]] = field(default_factory=list)
    # The same CPU meter as (a)'s runs, so that (c) pays its sampling too.
    ceiling_meters: list[CpuMeter] = field(default_factory=list)
    cold_ceiling: float | None = None
    plain: PlainRun = field(default_factory=PlainRun)
    plain_cpu: CpuMeter | None = None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--documents", type=int, default=30, help="PDFs in the corpus")
    parser.add_argument("--pages", type=int, default=12, help="pages per PDF (+0..2 each)")
    parser.add_argument("--runs", type=int, default=2, help="run_index runs (a new workspace each)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed encodes for (c) after each run, per size"
    )
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        choices=sorted(EXPERIMENTS),
        help="add a marked variant after the measurement (repeatable)",
    )
    return parser.parse_args()


def measure(bench: Bench, args: argparse.Namespace) -> None:
    """The cold run first, as on a new cluster; then (b), which loads the model (c) uses;
    then (c) after every run."""
    bench.runs.append(ray_run(bench.mongo_uri, bench.folder, bench.paths))
    threads = use_all_cores()
    with CpuMeter() as bench.plain_cpu:
        bench.plain = plain_pipeline(bench.paths, Settings().render_dpi, Settings().embed_model)
    time_ceiling(bench, args.repeats)
    bench.cold_ceiling = cold_ceiling(
        bench.plain.texts, threads, Settings().embed_model, bench.folder
    )
    for _ in range(args.runs - 1):
        bench.runs.append(ray_run(bench.mongo_uri, bench.folder, bench.paths))
        time_ceiling(bench, args.repeats)
    print_header(bench, threads)
    print_rates(bench)
    print_phases(bench)
    print_cpu(bench.runs)


def time_ceiling(bench: Bench, repeats: int) -> None:
    with CpuMeter() as meter:
        bench.ceilings.append(embed_ceiling(bench.plain.model, bench.plain.texts, repeats))
    bench.ceiling_meters.append(meter)


def main() -> None:
    args = parse_args()
    load = background_load()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        folder = Path(tmp)
        paths = write_sample_workspace(
            folder / "corpus", documents=args.documents, pages_each=args.pages
        )
        with EmbeddedMongo(folder / "mongo", in_memory=True) as mongo:
            connect_ray(None, num_cpus=RAY_CPUS)
            try:
                bench = Bench(folder, paths, mongo.uri, load)
                measure(bench, args)
                if args.experiment:
                    print("\nEXPERIMENTS (monkeypatched in this process; not the measurement):")
                for name in args.experiment:
                    EXPERIMENTS[name](bench)
            finally:
                ray.shutdown()


if __name__ == "__main__":
    main()
