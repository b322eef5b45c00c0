"""Encoding with glibc's default thresholds against `actors.allocator.keep_freed_memory`.

    .venv/bin/python bench/encode_allocator.py [--pairs 2] [--chunks 400]

The embed actor's setting is for its whole process and cannot be undone, so each variant
runs in a child process of its own, alternating (default, kept, default, kept, ...) so
both see the same drift of the machine. A child does what the embed actor does on 2 CPUs:
two encode threads of one torch thread each, each with its own model, over batches of 7
chunks (a 4-page batch of the pipeline's corpus) of 166 words (its average chunk). It
prints, for one pass over the chunks after a warm-up batch: wall seconds, user and
kernel CPU seconds, and minor page faults (`getrusage`), then the kept / default ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

from harness import EncodeStreams, arguments

STREAMS = 2
CHUNKS_PER_BATCH = 7
WORDS_PER_CHUNK = 166
VARIANTS = ("default", "kept")


def chunk_texts(count: int) -> list[str]:
    """The same pseudo-text in every child: a fixed seed over a fixed vocabulary."""
    rng = random.Random(7)
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    vocabulary = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(5000)]
    return [" ".join(rng.choices(vocabulary, k=WORDS_PER_CHUNK)) for _ in range(count)]


def child(variant: str, chunks: int) -> None:
    """Encode every batch once on STREAMS threads; print one JSON line of figures."""
    import torch

    from actors.allocator import keep_freed_memory
    from core.embedding import load_model

    kept = keep_freed_memory() if variant == "kept" else False
    torch.set_num_threads(1)
    models = [load_model("all-MiniLM-L6-v2", "cpu") for _ in range(STREAMS)]
    texts = chunk_texts(chunks)
    batches = [texts[i : i + CHUNKS_PER_BATCH] for i in range(0, len(texts), CHUNKS_PER_BATCH)]
    with EncodeStreams(models) as streams:
        streams.encode_all([batches[0]] * STREAMS)  # warm-up
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        streams.encode_all(batches)
        wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "variant": variant,
        "applied": kept,
        "wall": wall,
        "user": after.ru_utime - before.ru_utime,
        "sys": after.ru_stime - before.ru_stime,
        "faults": after.ru_minflt - before.ru_minflt,
        "maxrss_mb": after.ru_maxrss / 1024,
    }
    print(json.dumps(figures))


def run_child(variant: str, chunks: int) -> dict[str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, __file__, "--child", variant, "--chunks", str(chunks)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--pairs", type=int, default=2, help="default/kept child pairs")
    parser.add_argument("--chunks", type=int, default=400, help="chunks each child encodes")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.chunks)
        return
    print(
        f"{args.chunks} chunks of {WORDS_PER_CHUNK} words, batches of {CHUNKS_PER_BATCH}, "
        f"{STREAMS} encode threads x 1 torch thread; {os.cpu_count()} CPUs\n"
    )
    print(f"{'variant':<9} {'wall s':>7} {'user s':>7} {'sys s':>6} {'faults':>9} {'RSS MB':>7}")
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.pairs):
        for variant in VARIANTS:
            r = run_child(variant, args.chunks)
            if variant == "kept" and not r["applied"]:
                sys.exit("keep_freed_memory() did not apply here (not glibc?)")
            results[variant].append(r)
            print(
                f"{variant:<9} {r['wall']:7.2f} {r['user']:7.2f} {r['sys']:6.2f} "
                f"{r['faults']:9.0f} {r['maxrss_mb']:7.0f}"
            )
    print("\nkept / default, medians:")
    for key in ("wall", "user", "sys", "faults"):
        default = statistics.median(r[key] for r in results["default"])
        kept = statistics.median(r[key] for r in results["kept"])
        print(f"  {key:<7} {kept:10.2f} / {default:10.2f} = {kept / default:.2f}")
    cpu = {v: statistics.median(r["user"] + r["sys"] for r in results[v]) for v in VARIANTS}
    kept, default = cpu["kept"], cpu["default"]
    print(f"  CPU s   {kept:10.2f} / {default:10.2f} = {kept / default:.2f}")


if __name__ == "__main__":
    main()
