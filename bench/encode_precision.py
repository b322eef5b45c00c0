"""float32 against bfloat16 for the embed actor's encode, as it encodes on a CPU.

    .venv/bin/python bench/encode_precision.py [--documents 30] [--rounds 2]

The generated corpus' chunks (`cluster.sample_corpus`, analysed as the pipeline analyses
them), encoded as one stream of the embed actor encodes them: one torch thread, a call per
driver page batch, `encode`'s batch size. The two arithmetics are taken in turn, round after
round, in this one process (the machine's speed moves within minutes). Prints the CPU
seconds of each round and the ratio of the means, whether this CPU has bfloat16 instructions
(what `core.embedding.resolve_precision` reads), and the smallest and mean cosine between
the two vectors of each chunk.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch
from harness import arguments, corpus_batches

from core.embedding import encode, load_model, resolve_precision
from core.settings import Settings

PRECISIONS = ("float32", "bfloat16")


def encode_all(model: Any, batches: list[list[str]], precision: str) -> tuple[float, np.ndarray]:
    """CPU seconds of one pass over the batches, and the vectors."""
    started = time.process_time()
    vectors = [encode(model, batch, precision=precision) for batch in batches]
    return time.process_time() - started, np.concatenate(vectors)


def main() -> None:
    parser = arguments(__doc__, documents=30)
    parser.add_argument("--rounds", type=int, default=2, help="passes of each arithmetic")
    args = parser.parse_args()
    torch.set_num_threads(1)
    batches = corpus_batches(args)
    model = load_model(Settings().embed_model, "cpu")
    encode(model, batches[0])  # warm-up
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    vectors: dict[str, np.ndarray] = {}
    for round_no in range(1, args.rounds + 1):
        for precision in PRECISIONS:
            spent, vectors[precision] = encode_all(model, batches, precision)
            seconds[precision].append(spent)
            print(f"round {round_no} {precision:9s} {spent:7.2f} CPU-s", flush=True)
    chunks = sum(len(b) for b in batches)
    print(f"{chunks} chunks in {len(batches)} calls, 1 torch thread")
    print(f"'auto' picks {resolve_precision('auto', 'cpu')} on this CPU")
    ratio = statistics.mean(seconds["float32"]) / statistics.mean(seconds["bfloat16"])
    print(f"float32 / bfloat16 CPU-s (means): {ratio:.2f}")
    cosine = np.sum(vectors["float32"] * vectors["bfloat16"], axis=1)
    print(f"cosine float32 vs bfloat16: smallest {cosine.min():.6f}, mean {cosine.mean():.6f}")


if __name__ == "__main__":
    main()
