"""Our pipeline against Ray's document-embedding benchmark: same corpus, machine and model.

    .venv/bin/pip install -e ".[bench]"     # once: Ray Data's pandas and pyarrow
    .venv/bin/python bench/ray_data_peer.py [--documents 30] [--pages 12] [--reference-runs 2]
                                            [--reference-arithmetic ray|ours] [--no-same-work]

One generated corpus (`cluster.sample_corpus`, 30 PDFs, 390 pages) on a local Ray of 2 CPUs.

ours  `run_index` as bench/pipeline.py runs it (in-memory MongoDB, no head): cold (it
      starts every actor and loads the model), then warm (after an untimed run on the
      smallest document, as every run after the first on a long-lived cluster). It does
      more than the reference: GridFS fetch with sha256, PNG previews, layout, 180/30-word
      chunks, vectors, the ontology, progress, and it writes all of it to MongoDB.
ref   On a new local Ray (so it has both CPUs), the pipeline of Ray's benchmark
      (ray-project/ray, release/nightly_tests/multimodal_inference_benchmarks/
      document_embedding/ray_data_main.py) on the same files: `read_binary_files` ->
      `flat_map` PyMuPDF `get_text()` per page -> `flat_map` LangChain-style 2,048/200-
      character chunks (`char_windows`; LangChain is not a dependency) ->
      `map_batches(Embedder, ActorPoolStrategy)`, 10 rows a call, one single-threaded
      Embedder per encode stream of ours (`plan_pools`), the same model through
      `core.embedding`, in float32 as Ray's script (`--reference-arithmetic ours`: in our
      embed actor's arithmetic) -> iterated and counted; nothing is written. Runs 1..N are
      alike (a Ray Data actor pool lives for one execution, so each loads the model); a last
      run uses our chunks and our arithmetic: the same model work per page as ours.
      Read and parse tasks reserve 1 CPU, the Embedders 1 together, so the reservations
      add up to the 2 CPUs, as our parsers' and embed actor's do.

Printed: seconds, pages/s, own CPU and other load of each run; ours / reference of pages/s
(warm against the last run on Ray's chunks, cold against run 1, warm against the same model
work); what each embedded, counted with the model's tokenizer (the model reads 256 tokens of
a chunk: what is past that in a 2,048-character chunk is never embedded); CPU by process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import harness
import numpy as np
import ray

from actors.layout import chunk_page
from actors.pool import plan_pools
from cluster.ray_runtime import connect_ray
from core.db import open_client
from core.embedded_mongo import EmbeddedMongo
from core.embedding import DEFAULT_BATCH_SIZE, encode, load_model, resolve_precision
from core.pdf import load_pymupdf
from core.settings import Settings

RAY_CPUS = 2
RAY_CHUNK_CHARS, RAY_CHUNK_OVERLAP_CHARS = 2048, 200  # Ray's RecursiveCharacterTextSplitter
RAY_EMBED_BATCH = 10  # rows per Embedder call in Ray's benchmark
SEPARATORS = ("\n\n", "\n", " ")
PARSE_CPUS = 1.0
Measured = tuple[float, harness.CpuMeter, list[str]]  # seconds, CPU by process, the chunk texts

# -- the reference's stages, run in Ray workers --------------------------------------------


def page_texts(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One row per page with PyMuPDF's plain text, as Ray's `extract_text_from_pdf`
    (PyMuPDF without its layout add-on, as our actors load it)."""
    with load_pymupdf().open(stream=row["bytes"], filetype="pdf") as document:
        for page in document:
            yield {"path": row["path"], "page": page.number, "text": page.get_text()}


def merge_pieces(pieces: list[str], separator: str, size: int, overlap: int) -> list[str]:
    """LangChain's merge rule: fill a window up to `size` characters; the next one starts
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
        return [text[i : i + size] for i in range(0, len(text), max(1, size - overlap))]
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
    text = row.pop("text")
    for chunk in char_windows(text, RAY_CHUNK_CHARS, RAY_CHUNK_OVERLAP_CHARS, SEPARATORS):
        yield {**row, "chunk": chunk}


def our_chunks(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    text = row.pop("text")
    for chunk in chunk_page(text, int(row["page"])):
        yield {**row, "chunk": chunk.text}


CHUNKERS: dict[str, Callable[[dict[str, Any]], Iterator[dict[str, Any]]]] = {
    "Ray's": ray_chunks,
    "our": our_chunks,
}


class Embedder:
    """Ray's `Embedder`, with torch threads set as our embed actor sets them."""

    def __init__(self, model_name: str, threads: int, precision: str) -> None:
        import torch

        torch.set_num_threads(threads)
        self._model = load_model(model_name, "cpu")
        self._precision = precision

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(text) for text in batch["chunk"]]
        batch["embedding"] = encode(self._model, texts, DEFAULT_BATCH_SIZE, self._precision)
        return batch


def reference_run(paths: list[Path], chunker: str, precision: str) -> Measured:
    """One execution of the reference pipeline, timed to the last row consumed here."""
    plan = plan_pools(RAY_CPUS, 0)
    texts: list[str] = []
    with harness.CpuMeter() as meter:
        started = time.monotonic()
        dataset = (
            ray.data.read_binary_files(
                [str(p) for p in paths], include_paths=True, num_cpus=PARSE_CPUS
            )
            .flat_map(page_texts, num_cpus=PARSE_CPUS)
            .flat_map(CHUNKERS[chunker], num_cpus=PARSE_CPUS)
            .map_batches(
                Embedder,
                fn_constructor_kwargs={
                    "model_name": Settings().embed_model,
                    "threads": plan.embed_threads,
                    "precision": precision,
                },
                compute=ray.data.ActorPoolStrategy(size=plan.encode_streams),
                batch_size=RAY_EMBED_BATCH,
                num_cpus=plan.embed_cpus / plan.embed_streams,
            )
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            texts.extend(str(text) for text in batch["chunk"])
        seconds = time.monotonic() - started
    return seconds, meter, texts


@ray.remote(num_cpus=1)
def _noop() -> None:
    return None


# -- ours ----------------------------------------------------------------------------------


async def stored_texts(mongo_uri: str, run: harness.TimedRun) -> list[str]:
    client = open_client(mongo_uri)
    try:
        cursor = client["bench"].chunks.find({"workspaceId": run.workspace_id}, {"text": 1})
        return [str(chunk["text"]) async for chunk in cursor]
    finally:
        await client.close()


def ours(folder: Path, paths: list[Path]) -> tuple[harness.TimedRun, harness.TimedRun, list[str]]:
    """Cold, then warm after an untimed run on the smallest document; the warm run's chunks."""
    with EmbeddedMongo(folder / "mongo", in_memory=True) as mongo:
        connect_ray(None, num_cpus=RAY_CPUS)
        try:
            settings = harness.run_settings(mongo.uri, folder)
            cold = harness.timed_index(settings, paths)
            harness.timed_index(settings, [min(paths, key=lambda p: p.stat().st_size)])
            warm = harness.timed_index(settings, paths)
            return cold, warm, asyncio.run(stored_texts(mongo.uri, warm))
        finally:
            ray.shutdown()


# -- report --------------------------------------------------------------------------------


def token_row(label: str, model: Any, texts: list[str]) -> list[Any]:
    """Chunks, mean tokens, the share cut at the model's limit, and the tokens embedded."""
    limit = int(model.max_seq_length)
    counts = [len(ids) for ids in model.tokenizer(texts)["input_ids"]] or [0]
    cut = sum(c > limit for c in counts) / len(counts)
    embedded = sum(min(c, limit) for c in counts)
    return [label, len(texts), f"{np.mean(counts):.0f}", f"{cut:.0%}", f"{embedded:,}"]


def report(pages: int, measured: dict[str, Measured]) -> None:
    rows = [
        [label, f"{s:.2f}", f"{pages / s:.2f}", f"{m.own_cpu():.1f}", f"{m.foreign_load():.0%}"]
        for label, (s, m, _) in measured.items()
    ]
    harness.print_table(["run", "seconds", "pages/s", "own CPU s", "other load"], rows)
    seconds = {label: s for label, (s, _, _) in measured.items()}
    ray_runs = [label for label in seconds if "Ray's chunks" in label]
    same_work = [label for label in seconds if "our chunks" in label]
    pairs = [("ours warm", ray_runs[-1]), ("ours cold", ray_runs[0])]
    pairs += [("ours warm", label) for label in same_work]
    print("\nours / reference, pages/s (above 1: ours is faster):")
    for ours_label, ref in pairs:
        print(f"  {ours_label} / {ref}: {seconds[ref] / seconds[ours_label]:.2f}")
    import transformers

    transformers.logging.set_verbosity_error()  # its long-input warning is the point here
    model = load_model(Settings().embed_model, "cpu")
    print(f"\nwhat each embedded (the model reads at most {model.max_seq_length} tokens):\n")
    harness.print_table(
        ["run", "chunks", "tokens", "cut", "tokens embedded"],
        [
            token_row(label, model, texts)
            for label, (_, _, texts) in measured.items()
            if label != "ours cold"
        ],
    )
    print()
    harness.print_cpu({label: meter for label, (_, meter, _) in measured.items()})


def main() -> None:
    parser = harness.arguments(__doc__, documents=30)
    parser.add_argument("--reference-runs", type=int, default=2, help="runs on Ray's chunks")
    parser.add_argument(
        "--reference-arithmetic",
        choices=("ray", "ours"),
        default="ray",
        help="ray: float32 on Ray's chunks; ours: our embed actor's",
    )
    parser.add_argument("--no-same-work", action="store_true", help="no run on our chunks")
    args = parser.parse_args()
    print(f"other load before: {harness.other_load():.0%} of {os.cpu_count()} CPUs")
    ours_precision = resolve_precision(Settings().embed_precision, "cpu")
    ray_precision = ours_precision if args.reference_arithmetic == "ours" else "float32"
    with tempfile.TemporaryDirectory(prefix="bench-ray-data-") as tmp:
        folder = Path(tmp)
        paths = harness.sample_corpus(folder / "corpus", args)
        cold, warm, texts = ours(folder, paths)
        measured = {
            "ours cold": (cold.seconds, cold.cpu, []),
            "ours warm": (warm.seconds, warm.cpu, texts),
        }
        plan = [("Ray's", ray_precision)] * args.reference_runs
        plan += [] if args.no_same_work else [("our", ours_precision)]
        connect_ray(None, num_cpus=RAY_CPUS)
        try:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = context.print_on_execution_start = False
            ray.get([_noop.remote() for _ in range(4 * RAY_CPUS)])  # workers up, untimed
            for index, (chunker, precision) in enumerate(plan, 1):
                label = f"reference run {index}, {chunker} chunks, {precision}"
                measured[label] = reference_run(paths, chunker, precision)
        finally:
            ray.shutdown()
    report(warm.summary.pages, measured)


if __name__ == "__main__":
    main()
