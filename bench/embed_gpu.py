"""The embed path on a GPU: the same code on CUDA and on the CPUs of one machine.

    .venv/bin/python bench/embed_gpu.py [--documents 120] [--pages 12] [--cpu-texts 1500]
                                        [--skip-encode] [--skip-pipeline]

Without CUDA it runs the CPU rows only and says so. One generated corpus
(`cluster.sample_corpus`), measured two ways:

1. encode: the corpus's chunks through `core.embedding.encode`, model loaded, after a
   warm-up: on the CPU with torch on every core (the first `--cpu-texts` texts: the CPU is
   slow) and on CUDA at the batch size `encode` picks for a GPU and at larger ones. Median of
   REPEATS; every CUDA vector must be within MIN_COSINE of the CPU's vector of its text.
2. pipeline: `run_index` (no head, as bench/pipeline.py) cold then warm on a local Ray with
   every CPU and the GPU, where the embed actors must report `device: cuda`
   (`RunDriver.warm`); then on a new local Ray with the same CPUs and no GPU. Each
   configuration has an in-memory MongoDB server of its own, so both meet a server with the
   same history. Every chunk must have a vector, and the vectors the two configurations
   stored must agree (MIN_COSINE, matched by text).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from harness import (
    TimedRun,
    arguments,
    chunk_batches,
    print_cpu,
    print_table,
    run_settings,
    sample_corpus,
    timed_index,
)
from pymongo import MongoClient

from actors.pool import plan_pools
from cluster.driver import RunDriver
from cluster.ray_runtime import connect_ray
from core.embedded_mongo import EmbeddedMongo
from core.embedding import batch_size_for, encode, load_model
from core.settings import Settings

MIN_COSINE = 0.999
GPU_BATCH_SIZES = (128, 512)
REPEATS = 3


def timed_encode(model: Any, texts: list[str], batch_size: int) -> tuple[float, np.ndarray]:
    """Median seconds of REPEATS encodes of `texts` after a warm-up, and the vectors."""
    encode(model, texts[:batch_size], batch_size)
    seconds, vectors = [], np.empty(0)
    for _ in range(REPEATS):
        started = time.perf_counter()
        vectors = encode(model, texts, batch_size)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), vectors


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine of two stacks of unit vectors."""
    return float(np.min(np.sum(a * b, axis=1)))


def encode_rows(texts: list[str], cpu_texts: int, model_name: str) -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    model = load_model(model_name, "cpu")
    sample, size = texts[:cpu_texts], batch_size_for(model)
    cpu_s, cpu_vectors = timed_encode(model, sample, size)
    cpu_rate = len(sample) / cpu_s
    rows = [[f"CPU, {torch.get_num_threads()} threads", size, f"{cpu_rate:.1f}", "1.0", "", ""]]
    if torch.cuda.is_available():
        gpu_model = load_model(model_name, "cuda")
        for size in (batch_size_for(gpu_model), *GPU_BATCH_SIZES):
            torch.cuda.reset_peak_memory_stats()
            gpu_s, vectors = timed_encode(gpu_model, texts, size)
            agree = min_cosine(vectors[: len(sample)], cpu_vectors)
            gib = torch.cuda.max_memory_allocated() / 2**30
            rate = len(texts) / gpu_s
            rows.append(
                [
                    "CUDA",
                    size,
                    f"{rate:.1f}",
                    f"{rate / cpu_rate:.1f}",
                    f"{gib:.2f} GiB",
                    f"{agree:.6f}" + ("" if agree >= MIN_COSINE else " FAIL"),
                ]
            )
    else:
        print("no CUDA device here: CPU rows only")
    print_table(["where", "batch", "chunks/s", "x CPU", "peak GPU memory", "min cosine"], rows)


async def embed_actors(settings: Settings) -> dict[str, Any]:
    """What the embed actors report (device, GPU ids, threads), from a driver's warm-up."""
    async with RunDriver(settings, prepare=True) as driver:
        return await driver.warm()


def stored_vectors(settings: Settings, run: TimedRun) -> dict[str, np.ndarray]:
    """Text -> stored vector of the run's workspace; raises when a chunk has none."""
    client: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_uri.reveal())  # type: ignore[union-attr]
    try:
        vectors: dict[str, np.ndarray] = {}
        query = {"workspaceId": run.workspace_id}
        for chunk in client[settings.mongodb_db].chunks.find(query, {"text": 1, "embedding": 1}):
            if chunk.get("embedding") is None:
                raise RuntimeError(f"chunk {chunk['_id']} has no vector")
            vectors[chunk["text"]] = np.asarray(chunk["embedding"].as_vector().data)
        return vectors
    finally:
        client.close()


def configuration(folder: Path, paths: list[Path], label: str, gpus: int) -> dict[str, Any]:
    """Cold and warm runs on a local Ray with every CPU and `gpus` GPUs, on a server of
    their own; a row for each, and the warm run's stored vectors."""
    cpus = os.cpu_count() or 1
    connect_ray(None, num_cpus=cpus, num_gpus=gpus)
    try:
        with EmbeddedMongo(folder / f"mongo-{label}", in_memory=True) as mongo:
            settings = run_settings(mongo.uri, folder)
            runs = {when: timed_index(settings, paths) for when in ("cold", "warm")}
            embed = asyncio.run(embed_actors(settings))
            vectors = stored_vectors(settings, runs["warm"])
    finally:
        ray.shutdown()
    print(f"{label}: {plan_pools(cpus, gpus)}")
    rows = [
        [
            label,
            when,
            f"{run.seconds:.2f}",
            f"{run.summary.pages / run.seconds:.1f}",
            f"{run.cpu.own_cpu() / run.cpu.wall:.1f}",
            f"device {embed.get('device')}, GPUs {embed.get('gpuIds')}",
        ]
        for when, run in runs.items()
    ]
    return {"rows": rows, "runs": runs, "vectors": vectors, "device": embed.get("device")}


def pipeline_rows(folder: Path, paths: list[Path]) -> None:
    configs = [("GPU", 1), ("CPU", 0)] if torch.cuda.is_available() else [("CPU", 0)]
    results = {label: configuration(folder, paths, label, gpus) for label, gpus in configs}
    header = ["configuration", "run", "seconds", "pages/s", "cores busy", "embed actors"]
    print_table(header, [row for result in results.values() for row in result["rows"]])
    print_cpu(
        {
            f"{label} {when}": run.cpu
            for label, result in results.items()
            for when, run in result["runs"].items()
        }
    )
    if "GPU" in results:
        gpu, cpu = results["GPU"], results["CPU"]
        ratio = cpu["runs"]["warm"].seconds / gpu["runs"]["warm"].seconds
        shared = sorted(gpu["vectors"].keys() & cpu["vectors"].keys())
        agree = min_cosine(
            np.stack([gpu["vectors"][t] for t in shared]),
            np.stack([cpu["vectors"][t] for t in shared]),
        )
        print(
            f"warm GPU / CPU pages/s: {ratio:.2f}; stored vectors of {len(shared)} texts, "
            f"min cosine {agree:.6f}" + ("" if agree >= MIN_COSINE else " FAIL")
        )
        if gpu["device"] != "cuda":
            print("FAIL: the embed actors of the GPU configuration did not encode on CUDA")


def main() -> None:
    parser = arguments(__doc__, documents=120)
    parser.add_argument("--cpu-texts", type=int, default=1500, help="texts timed on the CPU")
    parser.add_argument("--skip-pipeline", action="store_true", help="encode rows only")
    parser.add_argument("--skip-encode", action="store_true", help="pipeline rows only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-embed-gpu-") as tmp:
        folder = Path(tmp)
        paths = sample_corpus(folder / "corpus", args)
        texts = [text for path in paths for batch in chunk_batches(path) for text in batch]
        print(f"{len(paths)} PDFs, {len(texts)} chunks; {os.cpu_count()} CPUs")
        if not args.skip_encode:
            encode_rows(texts, args.cpu_texts, Settings().embed_model)
        if not args.skip_pipeline:
            pipeline_rows(folder, paths)


if __name__ == "__main__":
    main()
