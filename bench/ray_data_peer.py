"""Our pipeline against a reference Ray Data pipeline: the same corpus, machine, model, run.

Run from the repository root (needs Ray Data's extras in the venv once:
`.venv/bin/pip install "ray[data]==2.60.0"`, which adds pandas and pyarrow):

    .venv/bin/python bench/ray_data_peer.py [--documents 30] [--pages 12] [--skip-cold]
                       [--reference-runs 2] [--reference-chunking both] [--budget-s 360]
                       [--reference-arithmetic ray]

Smaller and quicker: `--documents 4 --pages 4` (about 4 minutes on a busy 2-core machine,
most of it start-up and model loads); `--reference-chunking ray` leaves out the third
reference run.

One generated corpus (`cluster.sample_corpus`, as bench/pipeline.py makes it; default 30
PDFs, 390 pages), one local Ray (`connect_ray(None, num_cpus=2)`, started before any clock,
plus a few no-op tasks as Ray's benchmark does so worker start-up is not timed), then, in
this order:

ours  `run_index` against an in-memory EmbeddedMongo, timed as bench/pipeline.py times it
      (a new workspace each, no head: progress events are dropped). It does more than the
      reference: fetch from GridFS with sha256, PNG previews of every page, layout (reading
      order, headings), chunks of 180 words with 30 of overlap, embedding, the ontology
      phase, progress, and it writes all of it to MongoDB.
      - "cold": the first run, no embed pool yet: it creates the pool's EmbedActor, so
        the worker start, the torch import and the model load are in its time.
      - "warm": after an untimed run on the smallest document (the pool is up after the
        cold run already; the warm-up also covers --skip-cold), as every run after the
        first finds it on a long-lived cluster. The pool is then removed, so the
        reference gets the same 2 CPUs.
ref   The pipeline of Ray's own document-embedding benchmark
      (ray-project/ray, release/nightly_tests/multimodal_inference_benchmarks/
      document_embedding/ray_data_main.py), on local files:
      `read_binary_files` -> `flat_map` PyMuPDF `page.get_text()` per page -> `flat_map`
      fixed-size chunks -> `map_batches(Embedder, compute=ActorPoolStrategy(size=N),
      num_cpus=C, batch_size=10)`, with one Embedder per encode stream of ours
      (`plan_pools`: on 2 CPUs our one embed actor runs 2 single-threaded streams, so N=2
      single-threaded Embedders of 0.5 CPU each; Ray's script uses one per GPU)
      -> iterated in this process and counted. It writes nothing (Ray's benchmark writes
      Parquet; ours writes everything to MongoDB). Differences from Ray's script, on
      purpose: PyMuPDF comes from `actors.pdf.load_pymupdf`, without its layout add-on
      (seconds of onnxruntime import per worker, as our actors skip it); the Embedder loads
      the model with `core.embedding.load_model` (the same bundled all-MiniLM-L6-v2, offline)
      and encodes with `core.embedding.encode` at sentence-transformers' default batch
      size (Ray's script calls `model.encode` with it; each map batch of 10 is one forward
      pass), with torch threads set exactly as our
      EmbedActor sets them (`plan_pools`'s embed_threads); no
      `model.compile()` (torch.compile on a CPU compiles for minutes and recompiles for
      every new batch shape); the parse stages reserve 1 CPU (below).
      - "ray chunks": LangChain's RecursiveCharacterTextSplitter(2048, 200), as in Ray's
        benchmark, re-implemented in `char_windows` (LangChain is not a dependency).
        2,048 characters are ~450 tokens: the model reads the first 256 and drops the rest,
        so this reference embeds less text than ours does (see "what each embedded"). The
        model computes in float32, as in Ray's script; `--reference-arithmetic ours` gives
        these runs our embed actor's arithmetic instead.
      - "our chunks": the same pipeline with `actors.layout.chunk_page` (180/30 words) on
        the page text, and the model in the arithmetic our embed actor picks
        (`core.embedding.resolve_precision`: bfloat16 on a CPU with bfloat16 instructions):
        the same chunk sizes and arithmetic as ours, so the same model work per page. It
        runs last, and only when it would end within --budget-s of the start (on 2 cores
        with bfloat16 the whole run takes about 2.5 minutes; in float32 6-7, and then it
        did not fit: `--budget-s 600`, or `--skip-cold --reference-chunking ours` for that
        comparison alone).
      Run 1 is cold (Ray Data's first execution, the Embedder actor's start and model
      load); run 2+ repeat it. A Ray Data actor pool lives for one execution only: each run
      starts a new Embedder and loads the model again. The bench checks this rather than
      assuming it: every output row names its Embedder's actor id, and after each run the
      actor's state is read from the GCS.

Sizing on 2 CPUs: the Embedders reserve 1 CPU together (one torch thread each, as ours),
and the read and parse stages reserve 1 CPU per task, so Ray Data runs one
read+parse+chunk task (the three stages fuse into one task) beside the actors and the
reservations add up to the cluster's 2 CPUs, never more. Fractional CPUs would let several
parse tasks start at once and take CPU from the embedding, the bottleneck; 2 CPUs per task
would not fit beside the actors at all, so parsing and embedding could only take turns (or
the Embedders would wait for a CPU). Ours gives its parsers 0.25 CPU each for the same
reason. Before the reference runs our embed pool is removed and the bench waits until Ray
shows both CPUs free.

How to read it: pages/s is the corpus' pages over the run's wall time (both pipelines see
every page; a line says so when one did not); chunks/s counts each pipeline's own chunks.
"first out" is when the first page batch was done (ours) or the first embedded block
reached this process (ref); "steady" is pages/s between the first and the last of those,
left out ("-") when they are less than a quarter of the run apart. The ratio ours/ref is of
pages/s: above 1 ours is faster. Compare warm ours with ref run 2+ (what each costs per run
on a cluster that is up: ours keeps the model loaded between runs, Ray Data cannot), cold
with run 1, and "our chunks" for the same model work. "what each embedded" counts tokens
with the model's tokenizer: Ray's 2,048-character chunks are often longer than the model's
256 tokens, and what is past that is never embedded. The Embedder lines show each reference
run's actor, its model load, and its state after the run (DEAD: the pool did not outlive
the execution). The CPU table charges every CPU second during each measurement to a
process; "other load" is the share of all CPUs taken by processes that are not this
benchmark's. Above 15% a row is slower than the code is and ratios between rows are noise:
the final figures are taken on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from pipeline import (
    BUSY_MACHINE,
    CpuMeter,
    RayRun,
    actor_precision,
    background_load,
    ray_run,
)

from actors.embed_pool import pool_actor_names, remove_other_pools
from actors.layout import CHUNK_OVERLAP_WORDS, CHUNK_WORDS, chunk_page
from actors.pdf import load_pymupdf
from actors.pool import PoolPlan, plan_pools
from actors.spares import remove_spares
from cluster.ray_runtime import cluster_size, connect_ray
from cluster.sample_corpus import write_sample_workspace
from core.db import open_client
from core.embedded_mongo import EmbeddedMongo
from core.embedding import DEFAULT_BATCH_SIZE, encode, load_model
from core.settings import Settings

RAY_CPUS = 2
# Ray's benchmark: RecursiveCharacterTextSplitter(chunk_size=2048, chunk_overlap=200) and
# EMBEDDING_BATCH_SIZE = 10 rows per Embedder call.
RAY_CHUNK_CHARS = 2048
RAY_CHUNK_OVERLAP_CHARS = 200
RAY_EMBED_BATCH = 10
SEPARATORS = ("\n\n", "\n", " ")
PARSE_CPUS = 1.0
RESOURCES_FREE_TIMEOUT_S = 60.0
ACTOR_DEAD_TIMEOUT_S = 30.0
POLL_S = 0.2
STEADY_MIN_SHARE = 0.25
# Ref runs 1 and 2 (cold, then again) always run; later ones only within --budget-s.
REQUIRED_REFERENCE_RUNS = 2
LABEL_WIDTH = 60


# -- the reference pipeline's stages (run in Ray workers) ----------------------------------


def page_texts(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One row per page with PyMuPDF's plain text, as Ray's `extract_text_from_pdf`."""
    pymupdf = load_pymupdf()
    with pymupdf.open(stream=row["bytes"], filetype="pdf") as document:
        for page in document:
            yield {"path": row["path"], "page_number": page.number, "page_text": page.get_text()}


def merge_pieces(pieces: list[str], separator: str, size: int, overlap: int) -> list[str]:
    """LangChain's merge rule: fill a window up to `size` characters; the next window starts
    with the last pieces of this one, at most `overlap` characters of them."""
    windows: list[str] = []
    window: list[str] = []
    length = 0
    for piece in pieces:
        gap = len(separator) if window else 0
        if window and length + gap + len(piece) > size:
            windows.append(separator.join(window))
            while window and (length > overlap or length + gap + len(piece) > size):
                length -= len(window[0]) + (len(separator) if len(window) > 1 else 0)
                window.pop(0)
                gap = len(separator) if window else 0
        window.append(piece)
        length += len(piece) + (len(separator) if len(window) > 1 else 0)
    if window:
        windows.append(separator.join(window))
    return windows


def char_windows(text: str, size: int, overlap: int, separators: tuple[str, ...]) -> list[str]:
    """RecursiveCharacterTextSplitter's windows: split on the first separator the text has,
    merge the pieces, split a piece longer than `size` on the next separator."""
    separator = next((s for s in separators if s in text), None)
    if separator is None:
        step = max(1, size - overlap)
        return [text[i : i + size] for i in range(0, len(text), step)]
    rest = separators[separators.index(separator) + 1 :]
    windows: list[str] = []
    short: list[str] = []
    for piece in (p for p in text.split(separator) if p.strip()):
        if len(piece) <= size:
            short.append(piece)
            continue
        windows += merge_pieces(short, separator, size, overlap)
        short = []
        windows += char_windows(piece, size, overlap, rest)
    windows += merge_pieces(short, separator, size, overlap)
    return [w.strip() for w in windows if w.strip()]


def ray_chunks(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Ray's `chunker`: 2,048-character windows with 200 of overlap."""
    text = row.pop("page_text")
    windows = char_windows(text, RAY_CHUNK_CHARS, RAY_CHUNK_OVERLAP_CHARS, SEPARATORS)
    for index, chunk in enumerate(windows):
        yield {**row, "chunk": chunk, "chunk_id": index}


def our_chunks(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Our word windows (`chunk_page`) on the page text: the same model work per page."""
    text = row.pop("page_text")
    for index, chunk in enumerate(chunk_page(text, int(row["page_number"]))):
        yield {**row, "chunk": chunk.text, "chunk_id": index}


class Embedder:
    """Ray's `Embedder` with our model loading: torch threads set as EmbedActor sets them,
    and each row tagged with its actor and model load time, so a run shows which actor
    embedded it and whether it loaded the model itself."""

    def __init__(self, model_name: str, threads: int, precision: str) -> None:
        import torch

        started = time.monotonic()
        torch.set_num_threads(max(1, threads))
        self._model = load_model(model_name, "cpu")
        self._precision = precision
        self._load_s = time.monotonic() - started
        self._actor = ray.get_runtime_context().get_actor_id() or ""
        self._pid = os.getpid()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(batch["chunk"])
        texts = [str(text) for text in batch["chunk"]]
        batch["embedding"] = encode(self._model, texts, DEFAULT_BATCH_SIZE, self._precision)
        batch["actor"] = np.array([self._actor] * rows)
        batch["actor_pid"] = np.full(rows, self._pid)
        batch["load_s"] = np.full(rows, self._load_s)
        return batch


def ship_stages_by_value() -> None:
    """Workers cannot import bench/ (not a package): the stages above travel pickled by
    value, as they do anyway when this file runs as __main__, also when it is imported."""
    if __name__ != "__main__":
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


CHUNKERS: dict[str, Callable[[dict[str, Any]], Iterator[dict[str, Any]]]] = {
    "ray": ray_chunks,
    "ours": our_chunks,
}


def reference_precision(chunker: str, arithmetic: str) -> str:
    """float32 on Ray's chunks, as Ray's script computes (unless `arithmetic` is "ours"); on
    our chunks the arithmetic our embed actor picks, so that run does the same model work.
    Called before a run's clock starts: reading the CPU's instructions imports torch."""
    if chunker == "ray" and arithmetic == "ray":
        return "float32"
    return actor_precision()


def reference_dataset(
    paths: list[Path],
    chunker: str,
    model_name: str,
    plan: PoolPlan,
    batch_size: int,
    precision: str,
) -> ray.data.Dataset:
    """The reference pipeline, lazily: nothing runs until it is iterated. Its Embedder pool
    is sized as our embed pool (`plan`)."""
    ship_stages_by_value()
    return (
        ray.data.read_binary_files([str(p) for p in paths], include_paths=True, num_cpus=PARSE_CPUS)
        .flat_map(page_texts, num_cpus=PARSE_CPUS)
        .flat_map(CHUNKERS[chunker], num_cpus=PARSE_CPUS)
        .map_batches(
            Embedder,
            fn_constructor_kwargs={
                "model_name": model_name,
                "threads": plan.embed_threads,
                "precision": precision,
            },
            compute=ray.data.ActorPoolStrategy(size=plan.encode_streams),  # one per stream of ours
            batch_size=batch_size,
            num_cpus=plan.embed_cpus / plan.embed_streams,
        )
    )


# -- timing the reference ------------------------------------------------------------------


@dataclass
class RefRun:
    """One timed execution of the reference pipeline and what came out of it."""

    chunker: str
    seconds: float = 0.0
    chunks: int = 0
    pages: set[tuple[str, int]] = field(default_factory=set)
    texts: list[str] = field(default_factory=list)
    actors: dict[str, tuple[int, float]] = field(default_factory=dict)
    progress: list[tuple[float, int]] = field(default_factory=list)
    actor_states: dict[str, str] = field(default_factory=dict)
    cpu: CpuMeter | None = None

    def take(self, batch: dict[str, np.ndarray], at: float) -> None:
        self.chunks += len(batch["chunk"])
        self.texts.extend(str(text) for text in batch["chunk"])
        pages = zip(map(str, batch["path"]), map(int, batch["page_number"]), strict=True)
        self.pages.update(pages)
        tags = zip(batch["actor"], batch["actor_pid"], batch["load_s"], strict=True)
        for actor, pid, load in tags:
            self.actors[str(actor)] = (int(pid), float(load))
        self.progress.append((at, len(self.pages)))


def run_reference(paths: list[Path], chunker: str, args: argparse.Namespace) -> RefRun:
    """Build the dataset, then time its execution to the last row consumed here."""
    plan = plan_pools(*cluster_size())
    run = RefRun(chunker=chunker)
    precision = reference_precision(chunker, args.reference_arithmetic)
    with CpuMeter() as meter:
        started = time.monotonic()
        dataset = reference_dataset(
            paths, chunker, Settings().embed_model, plan, args.embed_batch, precision
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            run.take(batch, time.monotonic() - started)
        run.seconds = time.monotonic() - started
    run.cpu = meter
    run.actor_states = {actor: actor_state_when_done(actor) for actor in run.actors}
    return run


def actor_state(actor_id: str) -> str:
    """The actor's state in the GCS's actor table (no dashboard needed)."""
    try:
        entry = ray._private.state.actors(actor_id=actor_id)
    except Exception as exc:  # a private API: report rather than fail the bench
        return f"unknown ({type(exc).__name__})"
    return str(entry.get("State", "unknown")) if entry else "not found"


def actor_state_when_done(actor_id: str) -> str:
    """DEAD, and how long after the run it got there; or its state after the timeout."""
    started = time.monotonic()
    state = actor_state(actor_id)
    while state not in ("DEAD", "not found") and not state.startswith("unknown"):
        if time.monotonic() - started > ACTOR_DEAD_TIMEOUT_S:
            return f"{state} {ACTOR_DEAD_TIMEOUT_S:.0f}s after the run"
        time.sleep(POLL_S)
        state = actor_state(actor_id)
    return f"{state} {time.monotonic() - started:.1f}s after the run"


def steady_rate(progress: list[tuple[float, int]], seconds: float) -> float | None:
    """Pages/s between the first and the last progress point with pages done; none when
    they are closer than STEADY_MIN_SHARE of the run (output that came out all at once)."""
    points = [(t, n) for t, n in progress if n > 0]
    if len(points) < 2 or points[-1][0] - points[0][0] < STEADY_MIN_SHARE * seconds:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


# -- our pipeline --------------------------------------------------------------------------


async def stored_chunk_texts(settings: Settings, workspace_id: str) -> list[str]:
    client = open_client(settings.mongodb_uri.reveal())  # type: ignore[union-attr]
    try:
        chunks = client[settings.mongodb_db].chunks
        cursor = chunks.find({"workspaceId": workspace_id}, {"text": 1})
        return [str(doc.get("text", "")) async for doc in cursor]
    finally:
        await client.close()


# -- Ray -----------------------------------------------------------------------------------


@ray.remote(num_cpus=1)
def _noop() -> None:
    return None


def warm_workers() -> None:
    """No-op tasks before any clock, as Ray's benchmark does: worker start is not timed."""
    ray.get([_noop.remote() for _ in range(4 * RAY_CPUS)])


def wait_for_free_cpus() -> float:
    """Wait (untimed) until the previous measurement's actors gave their CPUs back."""
    started = time.monotonic()
    while ray.available_resources().get("CPU", 0.0) < RAY_CPUS - 1e-6:
        if time.monotonic() - started > RESOURCES_FREE_TIMEOUT_S:
            raise RuntimeError(f"CPUs still reserved: {ray.available_resources()}")
        time.sleep(POLL_S)
    return time.monotonic() - started


def quiet_ray_data() -> None:
    """No progress bars or INFO lines from Ray Data between the bench's own lines."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


# -- what each embedded ----------------------------------------------------------------------


@dataclass
class TokenStats:
    chunks: int
    chars: float
    tokens: float
    truncated: float
    embedded: int


def tokenizing_model() -> Any:
    """The model in this process, after the measurements, for its tokenizer and limit;
    transformers' loading bar and its long-input warning (the point here) kept quiet."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return load_model(Settings().embed_model, "cpu")


def token_stats(model: Any, texts: list[str]) -> TokenStats:
    """Tokens per chunk with the model's tokenizer; it reads at most `max_seq_length`."""
    limit = int(model.max_seq_length)
    counts = [len(ids) for ids in model.tokenizer(texts)["input_ids"]] if texts else [0]
    return TokenStats(
        chunks=len(texts),
        chars=float(np.mean([len(t) for t in texts])) if texts else 0.0,
        tokens=float(np.mean(counts)),
        truncated=float(np.mean([c > limit for c in counts])),
        embedded=sum(min(c, limit) for c in counts),
    )


# -- report --------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One row of the report."""

    label: str
    short: str
    seconds: float
    chunks: int
    first_s: float | None
    steady: float | None
    cpu: CpuMeter | None
    texts: list[str] = field(default_factory=list)


def our_measurement(label: str, short: str, run: RayRun, texts: list[str]) -> Measurement:
    first, steady = run.first_done_s(), steady_rate(run.progress, run.seconds)
    return Measurement(label, short, run.seconds, run.summary.chunks, first, steady, run.cpu, texts)


def ref_measurement(label: str, short: str, run: RefRun) -> Measurement:
    first = run.progress[0][0] if run.progress else None
    steady = steady_rate(run.progress, run.seconds)
    return Measurement(label, short, run.seconds, run.chunks, first, steady, run.cpu, run.texts)


def load_flag(meter: CpuMeter | None) -> str:
    if meter is None or meter.foreign_load() <= BUSY_MACHINE:
        return ""
    return "  ** other load"


def print_rows(rows: list[Measurement], pages: int) -> None:
    head = ("seconds", "pages/s", "chunks/s", "first out", "steady", "own CPU s", "other load")
    print(f"\n  {'':<{LABEL_WIDTH}}" + "".join(f"{h:>11}" for h in head))
    for m in rows:
        first = f"{m.first_s:10.1f}s" if m.first_s is not None else f"{'-':>11}"
        steady = f"{m.steady:11.2f}" if m.steady else f"{'-':>11}"
        cpu = m.cpu
        own = f"{cpu.own_cpu():11.1f}{cpu.foreign_load():11.0%}" if cpu else ""
        print(
            f"  {m.label:<{LABEL_WIDTH}}{m.seconds:11.2f}{pages / m.seconds:11.2f}"
            f"{m.chunks / m.seconds:11.2f}{first}{steady}{own}{load_flag(cpu)}"
        )


def print_ratio(what: str, ours: Measurement | None, ref: Measurement | None) -> None:
    if ours is None or ref is None:
        return
    ratio = ref.seconds / ours.seconds
    verdict = "ours faster" if ratio >= 1 else "ours SLOWER"
    print(f"  {what:<62}{ratio:6.2f}  ({verdict})")


def print_tokens(rows: list[Measurement], model: Any) -> None:
    print(
        f"\nwhat each embedded (the model's tokenizer; it reads at most {model.max_seq_length} "
        "tokens of a chunk and drops the rest):"
    )
    head = ("chunks", "chars", "tokens", "truncated", "embedded", "emb tok/s")
    print(f"  {'':<{LABEL_WIDTH}}" + "".join(f"{h:>11}" for h in head))
    for m in rows:
        if not m.texts:
            continue
        s = token_stats(model, m.texts)
        print(
            f"  {m.label:<{LABEL_WIDTH}}{s.chunks:11d}{s.chars:11.0f}{s.tokens:11.0f}"
            f"{s.truncated:11.0%}{s.embedded:11d}{s.embedded / m.seconds:11.0f}"
        )


def print_actors(refs: list[RefRun]) -> None:
    print("\nRay Data's Embedder actors (does the actor pool outlive an execution?):")
    seen: set[str] = set()
    for index, run in enumerate(refs, 1):
        for actor, (pid, load) in run.actors.items():
            new = "new actor" if actor not in seen else "SAME actor as an earlier run"
            print(
                f"  ref {index} ({run.chunker} chunks): actor {actor[:12]} pid {pid}, "
                f"{new}, model load {load:.1f}s in it; state: {run.actor_states.get(actor)}"
            )
            seen.add(actor)


def by_process(meter: CpuMeter) -> dict[str, float]:
    """CpuMeter's table with one line per role: the pool's actor is titled
    `ray::<name>:EmbedActor` or `ray::EmbedActor` depending on when it was first seen, and
    Ray Data names its fused tasks after every stage."""
    totals: dict[str, float] = {}
    for label, seconds in meter.by_label().items():
        name = label
        if label.startswith("ray::") and ":" in label[5:]:
            name = "ray::" + label[5:].rsplit(":", 1)[-1]
        if "->" in label:
            name = "ray::ReadBinary->FlatMap->FlatMap tasks"
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


def print_cpu(rows: list[Measurement]) -> None:
    meters = [(m.short, m.cpu) for m in rows if m.cpu is not None]
    tables = [by_process(meter) for _, meter in meters]
    labels = sorted({k for t in tables for k in t}, key=lambda k: -max(t.get(k, 0) for t in tables))
    print("\nCPU seconds spent during each measurement, by process:")
    print(f"  {'':<44}" + "".join(f"{short:>11}" for short, _ in meters))
    for label in labels:
        if max(t.get(label, 0.0) for t in tables) >= 0.05:
            print(f"  {label[:43]:<44}" + "".join(f"{t.get(label, 0.0):11.2f}" for t in tables))
    shares = [m.busy / ((os.cpu_count() or 1) * max(m.wall, 1e-9)) for _, m in meters]
    print(f"  {'all CPUs busy / available':<44}" + "".join(f"{s:11.0%}" for s in shares))


# -- main ----------------------------------------------------------------------------------


@dataclass
class Bench:
    """One corpus, its server, and the measurements in the order they ran."""

    folder: Path
    paths: list[Path]
    pages: int
    mongo_uri: str
    started: float = field(default_factory=time.monotonic)
    ours: list[Measurement] = field(default_factory=list)
    refs: list[RefRun] = field(default_factory=list)
    ref_rows: list[Measurement] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--documents", type=int, default=30, help="PDFs in the corpus")
    parser.add_argument("--pages", type=int, default=12, help="pages per PDF (+0..2 each)")
    parser.add_argument("--skip-cold", action="store_true", help="no cold run of ours")
    parser.add_argument(
        "--reference-runs", type=int, default=2, help="runs of the reference with Ray's chunks"
    )
    parser.add_argument(
        "--reference-chunking",
        choices=("ray", "ours", "both"),
        default="both",
        help="ray: Ray's 2,048/200-char chunks; ours: our 180/30-word chunks (one run)",
    )
    parser.add_argument(
        "--reference-arithmetic",
        choices=("ray", "ours"),
        default="ray",
        help="ray: float32 on Ray's chunks, as Ray's script; ours: our embed actor's arithmetic",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=360.0,
        help="skip reference runs after the first two that would end later than this",
    )
    parser.add_argument(
        "--embed-batch", type=int, default=RAY_EMBED_BATCH, help="rows per Embedder call"
    )
    return parser.parse_args()


def corpus_pages(paths: list[Path]) -> int:
    pymupdf = load_pymupdf()
    total = 0
    for path in paths:
        with pymupdf.open(path) as document:
            total += document.page_count
    return total


def measure_ours(bench: Bench, args: argparse.Namespace) -> None:
    """Cold run (no pool), untimed warm-up on the smallest document, warm run."""
    remove_other_pools(keep=None)
    wait_for_free_cpus()
    if not args.skip_cold:
        cold = ray_run(bench.mongo_uri, bench.folder, bench.paths)
        label = "ours cold (creates the embed pool)"
        bench.ours.append(our_measurement(label, "ours cold", cold, []))
    smallest = min(bench.paths, key=lambda p: p.stat().st_size)
    ray_run(bench.mongo_uri, bench.folder, [smallest])
    warm = ray_run(bench.mongo_uri, bench.folder, bench.paths)
    texts = asyncio.run(stored_chunk_texts(warm.settings, warm.workspace_id))
    label = "ours warm (embed pool up)"
    bench.ours.append(our_measurement(label, "ours warm", warm, texts))
    check_pages(bench, [warm.summary.pages], "run_index")


def measure_reference(bench: Bench, args: argparse.Namespace) -> None:
    """Remove our embed pool and parked parser actors (they hold CPUs), then each reference
    run on free CPUs."""
    removed = remove_other_pools(keep=None)
    parsers = remove_spares()
    if pool_actor_names():
        raise RuntimeError("the embed pool is still there")
    wait_for_free_cpus()
    print(
        f"(removed our embed pool: {len(removed)} actor(s), and {len(parsers)} parked parser "
        "and ontology actor(s); the reference gets 2 CPUs)"
    )
    plan = ["ray"] * args.reference_runs if args.reference_chunking != "ours" else []
    if args.reference_chunking in ("ours", "both"):
        plan.append("ours")
    for index, chunker in enumerate(plan, 1):
        if index > REQUIRED_REFERENCE_RUNS and over_budget(bench, args.budget_s):
            print(
                f"(skipped ref {index}, {chunker} chunks: it would end after --budget-s "
                f"{args.budget_s:g}; a larger --budget-s runs it)"
            )
            continue
        wait_for_free_cpus()
        run = run_reference(bench.paths, chunker, args)
        bench.refs.append(run)
        kind = "cold: Ray Data, new Embedder" if index == 1 else "new Embedder, model load"
        what = "Ray's chunks" if chunker == "ray" else "our chunks + arithmetic"
        if chunker == "ray" and args.reference_arithmetic == "ours":
            what = "Ray's chunks, our arithmetic"
        label = f"ref {index}, {what} ({kind})"
        bench.ref_rows.append(ref_measurement(label, f"ref {index} {chunker}", run))
        check_pages(bench, [len(run.pages)], f"ref run {index}")


def over_budget(bench: Bench, budget_s: float) -> bool:
    """Whether one more reference run, as long as the longest so far, ends after budget_s."""
    longest = max((run.seconds for run in bench.refs), default=0.0)
    return time.monotonic() - bench.started + longest > budget_s


def check_pages(bench: Bench, seen: list[int], what: str) -> None:
    for count in seen:
        if count != bench.pages:
            print(f"  ** {what} saw {count} pages of {bench.pages} (pages without text?)")


def report(bench: Bench, load: float, args: argparse.Namespace) -> None:
    plan = plan_pools(*cluster_size())
    print("\n=== our pipeline vs a reference Ray Data pipeline ===")
    print(
        f"corpus: {len(bench.paths)} PDFs, {bench.pages} pages; model {Settings().embed_model}; "
        f"{os.cpu_count()} CPUs, Ray {RAY_CPUS} CPUs; background load before start {load:.0%}"
        + ("  ** machine not quiet **" if load > BUSY_MACHINE else "")
    )
    print(
        f"ours: embed pool {plan.embed_actors} x {plan.embed_cpus:g} CPU, {plan.embed_streams} "
        f"streams of {plan.embed_threads} torch threads; parsers {plan.render_cpus:g} CPU "
        f"each; chunks {CHUNK_WORDS}/"
        f"{CHUNK_OVERLAP_WORDS} words; writes pages, previews, chunks, vectors to MongoDB"
    )
    print(
        f"ref:  read+parse+chunk tasks {PARSE_CPUS:g} CPU; Embedder x{plan.encode_streams}, "
        f"{plan.embed_cpus / plan.embed_streams:g} CPU each, "
        f"{plan.embed_threads} torch threads, {args.embed_batch} rows a call; stores nothing"
    )
    rows = bench.ours + bench.ref_rows
    print_rows(rows, bench.pages)
    print_ratios(bench)
    print_actors(bench.refs)
    print_cpu(rows)
    print_tokens(rows, tokenizing_model())
    busy = [m.label for m in rows if m.cpu is not None and m.cpu.foreign_load() > BUSY_MACHINE]
    if busy:
        print(
            f"\n** other load above {BUSY_MACHINE:.0%} during: {'; '.join(busy)}. These rows are "
            "slower than the code is; take the figures on a quiet machine. **"
        )


def find(rows: list[Measurement], start: str) -> Measurement | None:
    return next((m for m in rows if m.label.startswith(start)), None)


def print_ratios(bench: Bench) -> None:
    ray_rows = [m for m in bench.ref_rows if ", Ray's chunks" in m.label]
    warm, cold = find(bench.ours, "ours warm"), find(bench.ours, "ours cold")
    print("\nratio of pages/s, ours / reference (> 1: ours is faster):")
    if ray_rows:
        last = ray_rows[-1]
        print_ratio(f"ours warm / {last.label.split(' (')[0]} (each run, cluster up)", warm, last)
    if ray_rows:
        print_ratio("ours cold / ref 1, Ray's chunks (both cold)", cold, ray_rows[0])
    same_work = next((m for m in bench.ref_rows if ", our chunks" in m.label), None)
    print_ratio("ours warm / ref, our chunks (same model work)", warm, same_work)


def main() -> None:
    started = time.monotonic()
    args = parse_args()
    load = background_load()
    quiet_ray_data()
    with tempfile.TemporaryDirectory(prefix="bench-ray-data-") as tmp:
        folder = Path(tmp)
        paths = write_sample_workspace(
            folder / "corpus", documents=args.documents, pages_each=args.pages
        )
        with EmbeddedMongo(folder / "mongo", in_memory=True) as mongo:
            connect_ray(None, num_cpus=RAY_CPUS)
            try:
                warm_workers()
                bench = Bench(folder, paths, corpus_pages(paths), mongo.uri, started)
                measure_ours(bench, args)
                measure_reference(bench, args)
                report(bench, load, args)
            finally:
                ray.shutdown()


if __name__ == "__main__":
    main()
