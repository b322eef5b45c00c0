"""Texts per forward pass on a CPU: what `core.embedding.batch_size_for` is chosen from.

    .venv/bin/python bench/encode_batch.py [--documents 30] [--batches 110] [--rounds 3]

The chunks of the generated corpus `bench/pipeline.py` indexes, encoded two ways at 1, 2,
4, 8 and 32 texts a pass, the sizes taken in turn round after round (the machine's speed
drifts within minutes, so sizes timed in separate runs are not comparable):

- "actor": as the embed actor does it: one encode stream per core, each a thread with its
  own model and one torch thread, one `encode` call per driver page batch;
- "ceiling": every core's torch threads, one `encode` call over all the chunks, as
  `bench/pipeline.py`'s (c).

Printed: seconds and CPU seconds per size (mean and best of the rounds), each size's mean
against sentence-transformers' default of 32, the padding tokens each size adds (per driver
batch and all at once), and the largest difference between the vectors at 1 and at 32
texts a pass (padding changes the arithmetic, not the result).

Why small batches can win on a CPU: a batch is padded to its longest text, and its
activations leave the cache as the batch grows (at the model's 256 tokens, 1.5 MB per
text in each feed-forward layer).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from harness import EncodeStreams, arguments, corpus_batches

from core.embedding import DEFAULT_BATCH_SIZE, encode, load_model
from core.settings import Settings

SIZES = (1, 2, 4, 8, DEFAULT_BATCH_SIZE)
Rounds = dict[int, list[tuple[float, float]]]


def timed(work: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds of `work` (this process: its threads included)."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def in_turn(work: Callable[[int], Any], rounds: int) -> Rounds:
    """`work(size)` for every size, round after round."""
    results: Rounds = {size: [] for size in SIZES}
    for _ in range(rounds):
        for size in SIZES:
            results[size].append(timed(lambda size=size: work(size)))
    return results


def actor_streams(model_name: str, batches: list[list[str]], rounds: int) -> Rounds:
    """A stream per core, as EmbedActor's (`harness.EncodeStreams`)."""
    models = [load_model(model_name, "cpu") for _ in range(os.cpu_count() or 1)]
    with EncodeStreams(models) as streams:
        streams.encode_all(batches[: len(models)], DEFAULT_BATCH_SIZE)  # warm-up
        return in_turn(lambda size: streams.encode_all(batches, size), rounds)


def all_cores(model: Any, texts: list[str], rounds: int) -> Rounds:
    torch.set_num_threads(os.cpu_count() or 1)
    encode(model, texts[:DEFAULT_BATCH_SIZE], DEFAULT_BATCH_SIZE)  # warm-up
    return in_turn(lambda size: encode(model, texts, size), rounds)


def padded_tokens(model: Any, groups: list[list[str]], size: int) -> int:
    """Tokens the model is given when each group is encoded `size` texts a pass: sorted by
    length, as `encode` sorts them, and padded to the longest of each pass."""
    limit = model.max_seq_length
    total = 0
    for group in groups:
        lengths = sorted(min(len(ids), limit) for ids in model.tokenizer(group)["input_ids"])
        total += sum(
            max(lengths[i : i + size]) * len(lengths[i : i + size])
            for i in range(0, len(lengths), size)
        )
    return total


def report_padding(model: Any, batches: list[list[str]], texts: list[str]) -> None:
    held = padded_tokens(model, [texts], 1)
    print(f"\ntokens the model is given, against the {held} the chunks hold:")
    for size in SIZES:
        per_batch = padded_tokens(model, batches, size) / held - 1
        at_once = padded_tokens(model, [texts], size) / held - 1
        calls = f"a call per driver batch +{per_batch:.1%}"
        print(f"  {size:>3} texts a pass: {calls}, all at once +{at_once:.1%}")


def report(what: str, results: Rounds) -> None:
    default = statistics.mean(wall for wall, _ in results[DEFAULT_BATCH_SIZE])
    columns = f"{'texts a pass':>12}{'mean s':>9}{'best s':>9}{'mean CPU s':>12}{'vs 32':>8}"
    print(f"\n{what}\n  {columns}   every round (s)")
    for size, rounds in results.items():
        wall = statistics.mean(w for w, _ in rounds)
        cpu = statistics.mean(c for _, c in rounds)
        every = ", ".join(f"{w:.2f}" for w, _ in rounds)
        best = min(rounds)[0]
        print(f"  {size:>12}{wall:9.2f}{best:9.2f}{cpu:12.2f}{wall / default:8.2f}   {every}")


def main() -> None:
    parser = arguments(__doc__, documents=30)
    parser.add_argument("--batches", type=int, default=110, help="driver batches encoded")
    parser.add_argument("--rounds", type=int, default=3, help="times each size is timed")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    batches = corpus_batches(args)[: args.batches]
    texts = [text for batch in batches for text in batch]
    model_name = Settings().embed_model
    cores = os.cpu_count() or 1
    print(f"{len(texts)} chunks in {len(batches)} driver batches; {cores} CPUs")
    actor = actor_streams(model_name, batches, args.rounds)
    report(f"actor: {cores} streams of 1 torch thread, a call per driver batch", actor)
    model = load_model(model_name, "cpu")
    report(
        f"ceiling: {cores} torch threads, one call over all chunks",
        all_cores(model, texts, args.rounds),
    )
    report_padding(model, batches, texts)
    smallest = encode(model, texts, SIZES[0])
    default = encode(model, texts, DEFAULT_BATCH_SIZE)
    difference = float(np.abs(smallest - default).max())
    print(f"\nlargest |difference| of a vector, {SIZES[0]} vs 32 texts a pass: {difference:.1e}")


if __name__ == "__main__":
    main()
