"""The embed actor's encode streams outside Ray, for the benchmarks that time its encoding.

`actors.embed.EmbedActor` encodes on one stream per CPU it holds: a thread of one torch
thread, on a model no other stream is using (a fast tokenizer must not be called from two
threads at once). `bench/encode_allocator.py` and `bench/encode_batch.py` encode the same way.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.embedding import encode


class EncodeStreams:
    """A stream per model; `encode_all` hands each batch to the next free one."""

    def __init__(self, models: list[Any]) -> None:
        import torch

        self._free_models: queue.Queue[Any] = queue.Queue()
        for model in models:
            self._free_models.put(model)
        self._threads = ThreadPoolExecutor(
            len(models), initializer=torch.set_num_threads, initargs=(1,)
        )

    def __enter__(self) -> EncodeStreams:
        return self

    def __exit__(self, *exc: object) -> None:
        self._threads.shutdown()

    def encode_all(self, batches: list[list[str]], batch_size: int | None = None) -> None:
        """Encode every batch (`batch_size` texts a pass, None: `encode`'s choice); return
        when all are done."""
        list(self._threads.map(self._encode, batches, [batch_size] * len(batches)))

    def _encode(self, texts: list[str], batch_size: int | None) -> None:
        model = self._free_models.get()
        try:
            encode(model, texts, batch_size)
        finally:
            self._free_models.put(model)
