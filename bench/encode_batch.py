"""Texts per forward pass on a CPU: what `core.embedding.batch_size_for` is chosen from.

Run from the repository root:

    .venv/bin/python bench/encode_batch.py [--documents 30] [--batches 60] [--rounds 3]

The chunks of `bench/pipeline.py`'s generated corpus are encoded two ways, each at several
batch sizes taken in turn (round after round, so every size sees the same load):

- "actor": one torch thread, one `encode` call per driver page batch (`PAGE_BATCH` pages of
  a document, about 6 chunks), as each encode stream of the embed actor gets them;
- "ceiling": every core's torch threads, one `encode` call over all the chunks, as
  `bench/pipeline.py`'s (c).

It prints seconds and CPU seconds per size (best of the rounds), each size's time against
sentence-transformers' default of 32 texts a pass, and the largest difference between the
vectors of the smallest size and of 32 (padding changes the arithmetic, not the result).

Why small batches can win on a CPU: a batch is padded to its longest text, and its
activations leave the cache as the batch grows (at the model's 256 tokens, 1.5 MB per
text in each feed-forward layer).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pipeline import analyze_document, read_and_open

from cluster.sample_corpus import write_sample_workspace
from core.embedding import DEFAULT_BATCH_SIZE, encode, load_model
from core.settings import Settings

SIZES = (1, 2, 4, 8, DEFAULT_BATCH_SIZE)


def driver_batches(documents: int, limit: int) -> list[list[str]]:
    """Chunk texts grouped as the driver sends them to the embed actor (first `limit`)."""
    with tempfile.TemporaryDirectory(prefix="bench-encode-batch-") as tmp:
        paths = write_sample_workspace(Path(tmp), documents=documents, pages_each=12)
        batches = [b for p in paths for b in analyze_document(read_and_open(p)) if b]
    return batches[:limit]


def timed(work: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds of `work` (this process: its torch threads included)."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(
    model: Any, groups: list[list[str]], threads: int, rounds: int
) -> dict[int, list[tuple[float, float]]]:
    torch.set_num_threads(threads)
    encode(model, groups[0], DEFAULT_BATCH_SIZE)  # warm-up
    results: dict[int, list[tuple[float, float]]] = {size: [] for size in SIZES}
    for _ in range(rounds):
        for size in SIZES:
            results[size].append(timed(lambda size=size: [encode(model, g, size) for g in groups]))
    return results


def report(what: str, results: dict[int, list[tuple[float, float]]]) -> None:
    default = min(wall for wall, _ in results[DEFAULT_BATCH_SIZE])
    columns = f"{'texts a pass':>12}{'best s':>9}{'CPU s':>8}{'vs 32':>8}"
    print(f"\n{what}\n  {columns}   every round (s)")
    for size, rounds in results.items():
        wall, cpu = min(rounds)
        every = ", ".join(f"{w:.2f}" for w, _ in rounds)
        print(f"  {size:>12}{wall:9.2f}{cpu:8.2f}{wall / default:8.2f}   {every}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--documents", type=int, default=30, help="PDFs in the corpus")
    parser.add_argument("--batches", type=int, default=60, help="driver batches encoded")
    parser.add_argument("--rounds", type=int, default=3, help="times each size is timed")
    args = parser.parse_args()
    batches = driver_batches(args.documents, args.batches)
    texts = [text for batch in batches for text in batch]
    model = load_model(Settings().embed_model, "cpu")
    cores = os.cpu_count() or 1
    print(f"{len(texts)} chunks in {len(batches)} driver batches; {cores} CPUs")
    actor = measure(model, batches, 1, args.rounds)
    report("actor: 1 torch thread, a call per driver batch", actor)
    report(
        f"ceiling: {cores} torch threads, one call over all chunks",
        measure(model, [texts], cores, args.rounds),
    )
    smallest = encode(model, texts, SIZES[0])
    default = encode(model, texts, DEFAULT_BATCH_SIZE)
    print(
        f"\nlargest |difference| of a vector, {SIZES[0]} vs 32 texts a pass: "
        f"{float(np.abs(smallest - default).max()):.1e}"
    )


if __name__ == "__main__":
    main()
