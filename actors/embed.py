"""Embed phase: sentence-transformers vectors for chunks, on a GPU when Ray grants one.

The same code runs everywhere: an actor created with `num_gpus=1` sees its GPU through
CUDA_VISIBLE_DEVICES and encodes on CUDA; any other actor encodes on the CPU with as many
torch threads as it was sized for (Ray would otherwise pin it to `num_cpus` threads).

An actor can run several encode streams at once, each a thread with a model of its own: on
a small CPU machine two single-threaded streams in one process embed as fast as two
processes (torch releases the GIL in its kernels), and the process imports torch and
sentence-transformers once instead of twice (see docs/BENCHMARKS.md, 'Design choices').
Each stream has its own model because a fast tokenizer is not safe to call from two
threads at once (transformers sets its truncation state on every call).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import ray
from bson.binary import Binary, BinaryVectorDtype

from actors.allocator import keep_freed_memory
from actors.lifecycle.idle import IdleTimer
from actors.lifecycle.liveness import run_is_alive
from actors.store import store_batch
from actors.telemetry import PipelineMetrics
from core.db import Document, LazyClient
from core.embedding import encode, load_model, resolve_precision
from core.errors import RunError
from core.settings import Settings

# Calls beyond the streams wait for a free model; this only bounds the queue at the actor.
MAX_CONCURRENT_CALLS = 16


def to_bson_vector(vector: np.ndarray) -> Binary:
    return Binary.from_vector(vector.tolist(), BinaryVectorDtype.FLOAT32)


def pick_device() -> str:
    """CUDA when Ray assigned this actor a GPU and torch can use it, the CPU otherwise."""
    import torch

    gpu_ids = ray.get_gpu_ids() if ray.is_initialized() else []
    return "cuda" if gpu_ids and torch.cuda.is_available() else "cpu"


# Not restarted by Ray: a restart waits for resources like the first start, forever when
# the actor's GPU node is gone. The driver makes the pool again and sends the batch again.
@ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=MAX_CONCURRENT_CALLS)
class EmbedActor:
    """Embed phase. Resources: given by the driver (CPUs, or 1 GPU on GPU nodes); loads its
    models once and outlives runs (see `actors.embed_pool`), so nothing run-specific is kept:
    the database and the run's aggregator come with each call. Concurrency: `streams`
    batches encode at once, each on its own model and thread; more calls wait for a free
    model. Retries: none by Ray; a batch whose actor died is sent again by the driver to a
    new pool (`cluster.driver.IndexRun._embed`). Idempotency key: (document, chunkNo); a
    page is marked done once its chunks are stored."""

    def __init__(self, settings: Settings, cpu_threads: int, streams: int = 1) -> None:
        import torch

        self.keeps_freed_memory = keep_freed_memory()  # before the models' first allocations
        self.device = pick_device()
        self.precision = resolve_precision(settings.embed_precision, self.device)
        self.streams = max(1, streams)
        threads = max(1, cpu_threads) if self.device == "cpu" else torch.get_num_threads()
        torch.set_num_threads(threads)
        models = [load_model(settings.embed_model, self.device) for _ in range(self.streams)]
        self.dimensions = int(models[0].get_sentence_embedding_dimension())
        self._free_models: asyncio.Queue[Any] = asyncio.Queue()
        for model in models:
            self._free_models.put_nowait(model)
        # OpenMP keeps its thread count per thread: each encode thread sets its own.
        self._encoders = ThreadPoolExecutor(
            self.streams, "encode", initializer=torch.set_num_threads, initargs=(threads,)
        )
        self._client = LazyClient(settings.mongodb_uri.reveal())  # type: ignore[union-attr]
        self._metrics = PipelineMetrics()
        self._idle = IdleTimer(settings.embed_idle_s)
        ray.get_runtime_context().current_actor.watch_idle.remote()

    async def watch_idle(self) -> None:
        """Start the idle check (see `actors.lifecycle.idle`); the constructor sends this call."""
        self._idle.watch()

    def describe(self) -> dict[str, Any]:
        """Readiness probe and placement report: device, arithmetic, threads, vector size,
        allocator. It counts as use: every run asks it first, and a driver that keeps the
        runtime warm asks it between runs, so the pool stays."""
        import torch

        self._idle.touch()
        return {
            "device": self.device,
            "precision": self.precision,
            "threads": torch.get_num_threads(),
            "streams": self.streams,
            "dimensions": self.dimensions,
            "keepsFreedMemory": self.keeps_freed_memory,
            "gpuIds": ray.get_gpu_ids(),
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
        }

    async def embed(
        self,
        database: str,
        aggregator: Any,
        document_id: str,
        batch: dict[str, list[Document]],
        chunks_before: dict[int, int],
    ) -> int:
        """Encode the chunks of `batch` (what analyze returned for a page batch) and store
        its pages and chunks in `database`, vectors included (`actors.store`): a page stored
        is a page done. Then tell the run's `aggregator`.

        The pool outlives runs: a call still queued when its run was cancelled (its driver and
        aggregator gone) must write nothing, so the run's aggregator is asked first.
        """
        self._idle.busy()
        pages, chunks = batch["pages"], batch["chunks"]
        page_nos = [page["pageNo"] for page in pages]
        try:
            async with self._free_model() as model:
                started = time.monotonic()
                vectors = await self._encode(model, chunks)
            await _require_live_run(aggregator)
            stored_at = datetime.now(UTC)
            for chunk, vector in zip(chunks, vectors if vectors is not None else [], strict=True):
                chunk["embedding"] = to_bson_vector(vector)
            for page in pages:
                page.update(done=True, embeddedAt=stored_at)
            db = self._client.database(database)
            await store_batch(db, document_id, pages, chunks, chunks_before)
            aggregator.pages_done.remote(document_id, page_nos)
            self._metrics.phase_done("embed", len(page_nos), time.monotonic() - started)
            return len(chunks)
        finally:
            self._idle.done()

    async def encode_query(self, text: str) -> list[float]:
        """A search query's vector, from the model and arithmetic that embedded the chunks it
        is compared with. The head asks through its run driver, so it loads no model."""
        self._idle.busy()
        try:
            async with self._free_model() as model:
                vectors = await self._encode(model, [{"text": text}])
            assert vectors is not None
            return [float(x) for x in vectors[0]]
        finally:
            self._idle.done()

    @contextlib.asynccontextmanager
    async def _free_model(self) -> AsyncIterator[Any]:
        """A model no other stream is using; calls beyond the streams wait here."""
        model = await self._free_models.get()
        try:
            yield model
        finally:
            self._free_models.put_nowait(model)

    async def _encode(self, model: Any, chunks: list[dict[str, Any]]) -> np.ndarray | None:
        """Vectors of the chunks' texts, encoded in the model's own thread so the event loop
        (other calls' writes, probes) goes on meanwhile."""
        if not chunks:
            return None
        texts = [c["text"] for c in chunks]
        loop = asyncio.get_running_loop()
        work = functools.partial(encode, model, texts, precision=self.precision)
        return await loop.run_in_executor(self._encoders, work)


async def _require_live_run(aggregator: Any) -> None:
    """Raise RunError when the run's aggregator is gone (its run was cancelled or died)."""
    if not await run_is_alive(aggregator):
        raise RunError("embed", "the run is gone (cancelled or its driver died)")
