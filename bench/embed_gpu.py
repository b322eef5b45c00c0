"""The embed path on a GPU: the same code on CUDA and on the CPUs of one machine, side by side.

Run from the repository root, on a machine with a CUDA GPU:

    .venv/bin/python bench/embed_gpu.py [--documents 120] [--pages 12]

Without CUDA it runs the CPU rows only and says so. One generated corpus
(`cluster.sample_corpus`) is measured two ways:

1. encode: the corpus's chunk texts, analysed as the pipeline analyses them, through
   `core.embedding.encode`, model loaded, after a warm-up: on the CPU with torch on every
   core at the batch size `encode` picks for it (on the first `--cpu-texts` texts: the CPU
   is slow), and on CUDA at the size `encode` picks for a GPU and at larger ones. Check: every
   CUDA vector has cosine >= MIN_COSINE with the CPU's vector of the same text.
2. pipeline: `run_index` (bench/pipeline.py's (a): embedded MongoDB, no head) on a local Ray
   with every CPU and the GPU, cold then warm: the embed actor must report `device: cuda`.
   Then a new local Ray with the same CPUs and no GPU, cold then warm. Each configuration
   gets an in-memory MongoDB server of its own, so each meets a server with the same
   history. Pages/s, cores busy and CPU seconds by process of each run, and the GPU/CPU
   ratio of the warm runs. Check: every chunk of each run has a vector, and the vectors
   stored by the GPU run agree with the CPU run's (MIN_COSINE, matched by text). A marked
   EXPERIMENT pair of runs repeats the GPU configuration with parser actors on all the CPUs
   left, to show whether parsing bounds a run once the GPU embeds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
from pipeline import RayRun, analyze_document, patched, print_cpu, ray_run, read_and_open
from pymongo import MongoClient

import cluster.driver as driver
from actors.pool import PoolPlan, batches_in_flight, plan_pools
from cluster.ray_runtime import connect_ray
from cluster.sample_corpus import write_sample_workspace
from core.embedded_mongo import EmbeddedMongo
from core.embedding import batch_size_for, encode, load_model
from core.settings import Settings

MIN_COSINE = 0.999
GPU_BATCH_SIZES = (128, 512)
REPEATS = 3


def say(line: str) -> None:
    print(line, flush=True)


def chunk_texts(paths: list[Path]) -> tuple[int, list[str]]:
    """(pages, chunk texts) of the corpus, as the analyze phase chunks it."""
    documents = [read_and_open(path) for path in paths]
    texts = [t for d in documents for batch in analyze_document(d) for t in batch]
    return sum(d.page_count for d in documents), texts


def timed_encode(model: Any, texts: list[str], batch_size: int) -> tuple[float, np.ndarray]:
    """Median seconds of REPEATS encodes of `texts`, and the vectors."""
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


def encode_section(texts: list[str], cpu_texts: int, model_name: str) -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    cpu_model = load_model(model_name, "cpu")
    sample = texts[:cpu_texts]
    cpu_size = batch_size_for(cpu_model)
    cpu_s, cpu_vectors = timed_encode(cpu_model, sample, cpu_size)
    cpu_rate = len(sample) / cpu_s
    say(
        f"encode cpu  threads={torch.get_num_threads():3d} batch={cpu_size:4d} "
        f"texts={len(sample):6d} {cpu_rate:9.1f} chunks/s"
    )
    if not torch.cuda.is_available():
        say("encode cuda: no CUDA device here; CPU rows only")
        return
    gpu_model = load_model(model_name, "cuda")
    for size in (batch_size_for(gpu_model), *GPU_BATCH_SIZES):
        torch.cuda.reset_peak_memory_stats()
        gpu_s, gpu_vectors = timed_encode(gpu_model, texts, size)
        agree = min_cosine(gpu_vectors[: len(sample)], cpu_vectors)
        gib = torch.cuda.max_memory_allocated() / 2**30
        say(
            f"encode cuda batch={size:4d} texts={len(texts):6d} {len(texts) / gpu_s:9.1f} "
            f"chunks/s  x{len(texts) / gpu_s / cpu_rate:6.1f} cpu  peak {gib:5.2f} GiB  "
            f"min cosine vs cpu {agree:.6f} {'ok' if agree >= MIN_COSINE else 'FAIL'}"
        )


def stored_vectors(run: RayRun) -> dict[str, np.ndarray]:
    """Text -> stored vector of the run's workspace; raises when a chunk has none."""
    client: MongoClient[dict[str, Any]] = MongoClient(run.settings.mongodb_uri.reveal())  # type: ignore[union-attr]
    try:
        chunks = client[run.settings.mongodb_db].chunks.find(
            {"workspaceId": run.workspace_id}, {"text": 1, "embedding": 1}
        )
        vectors: dict[str, np.ndarray] = {}
        for chunk in chunks:
            if chunk.get("embedding") is None:
                raise RuntimeError(f"chunk {chunk['_id']} of a {run.embed_actor} run has no vector")
            vectors[chunk["text"]] = np.asarray(chunk["embedding"].as_vector().data)
        return vectors
    finally:
        client.close()


def timed_runs(mongo_uri: str, folder: Path, paths: list[Path], label: str) -> list[RayRun]:
    """A cold and a warm `run_index` on the Ray now connected, each reported, then their CPU
    seconds by process."""
    runs = []
    for when in ("cold", "warm"):
        run = ray_run(mongo_uri, folder, paths)
        runs.append(run)
        actor = run.embed_actor
        say(
            f"pipeline {label} {when}: {run.summary.pages:5d} pages in "
            f"{run.seconds:6.2f} s = {run.summary.pages / run.seconds:7.1f} pages/s; embed "
            f"actor device={actor.get('device')} gpuIds={actor.get('gpuIds')} "
            f"ready at {run.embed_ready_s or 0:.1f} s; "
            f"{run.cpu.busy / run.cpu.wall if run.cpu else 0:.1f} cores busy"
        )
    print_cpu(runs)
    return runs


def more_parsers(cpus: float, gpus: float) -> PoolPlan:
    """`plan_pools`' plan with as many parser pairs as the CPUs left beside the embed and
    ontology actors (and one for the driver and MongoDB) can hold."""
    plan = plan_pools(cpus, gpus)
    left = cpus - plan.embed_actors * plan.embed_cpus - plan.ontology_cpus - 1
    parsers = max(plan.render_actors, int(left // (plan.render_cpus + plan.analyze_cpus)))
    return replace(
        plan,
        render_actors=parsers,
        analyze_actors=parsers,
        max_batches_in_flight=batches_in_flight(parsers, plan.encode_streams),
    )


def runs_on_new_server(
    servers: contextlib.ExitStack, folder: Path, paths: list[Path], label: str
) -> list[RayRun]:
    """Cold and warm runs against a MongoDB server of their own: every configuration meets a
    server with the same history (the embedded one slows as its write log grows)."""
    mongo = servers.enter_context(EmbeddedMongo(folder / f"mongo-{label}", in_memory=True))
    return timed_runs(mongo.uri, folder, paths, label)


def pipeline_section(folder: Path, paths: list[Path]) -> None:
    import torch

    cpus = os.cpu_count() or 1
    results: dict[str, list[RayRun]] = {}
    configs = [("gpu", 1), ("cpu", 0)] if torch.cuda.is_available() else [("cpu", 0)]
    with contextlib.ExitStack() as servers:
        for label, gpus in configs:
            connect_ray(None, num_cpus=cpus, num_gpus=gpus)
            try:
                say(f"plan {label}: {plan_pools(cpus, gpus)}")
                results[label] = runs_on_new_server(servers, folder, paths, label)
                if label == "gpu":
                    say(f"plan EXPERIMENT: {more_parsers(cpus, gpus)}")
                    with patched(driver, plan_pools=more_parsers):
                        runs_on_new_server(servers, folder, paths, "EXPERIMENT-gpu-parsers")
            except Exception:  # the other configuration's figures still count
                traceback.print_exc()
            finally:
                ray.shutdown()
        if {"gpu", "cpu"} <= results.keys():
            compare(results["gpu"][-1], results["cpu"][-1])


def compare(gpu: RayRun, cpu: RayRun) -> None:
    say(f"pipeline warm gpu/cpu pages/s ratio: {cpu.seconds / gpu.seconds:.2f}")
    if gpu.embed_actor.get("device") != "cuda":
        say("FAIL: the embed actor of the GPU run did not encode on CUDA")
    gpu_vectors, cpu_vectors = stored_vectors(gpu), stored_vectors(cpu)
    shared = sorted(gpu_vectors.keys() & cpu_vectors.keys())
    agree = min_cosine(
        np.stack([gpu_vectors[t] for t in shared]), np.stack([cpu_vectors[t] for t in shared])
    )
    say(
        f"stored vectors: {len(gpu_vectors)} texts (gpu run), {len(cpu_vectors)} (cpu run), "
        f"min cosine {agree:.6f} {'ok' if agree >= MIN_COSINE else 'FAIL'}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--documents", type=int, default=120, help="PDFs in the corpus")
    parser.add_argument("--pages", type=int, default=12, help="pages per PDF (+0..2 each)")
    parser.add_argument("--cpu-texts", type=int, default=1500, help="texts timed on the CPU")
    parser.add_argument("--skip-pipeline", action="store_true", help="encode rows only")
    parser.add_argument("--skip-encode", action="store_true", help="pipeline rows only")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-embed-gpu-") as tmp:
        folder = Path(tmp)
        paths = write_sample_workspace(
            folder / "corpus", documents=args.documents, pages_each=args.pages
        )
        pages, texts = chunk_texts(paths)
        say(f"corpus: {len(paths)} PDFs, {pages} pages, {len(texts)} chunks; {os.cpu_count()} CPUs")
        if not args.skip_encode:
            encode_section(texts, args.cpu_texts, Settings().embed_model)
        if not args.skip_pipeline:
            pipeline_section(folder, paths)


if __name__ == "__main__":
    main()
