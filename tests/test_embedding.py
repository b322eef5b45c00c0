"""core.embedding: the batch size `encode` picks, and that it does not change the vectors;
the arithmetic it runs in, and how little bfloat16 changes them."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

from core.embedding import (
    CPU_TEXTS_PER_THREAD,
    DEFAULT_BATCH_SIZE,
    batch_size_for,
    encode,
    load_model,
    resolve_precision,
)
from core.settings import Settings

TEXTS = [
    "Short.",
    "A sentence of middling length about indexing documents on a cluster.",
    " ".join(f"word{i}" for i in range(150)),  # near the model's 256 tokens
    "Progress events reach the browsers in the workspace room.",
    " ".join(["padding"] * 40),
]


@pytest.fixture(scope="module")
def model() -> Any:
    return load_model(Settings().embed_model, "cpu")


def in_thread_with(threads: int, work: Any) -> Any:
    """`work()` in a new thread whose torch (OpenMP) thread count is `threads`, as each
    encode thread of the embed actor sets its own."""
    result: list[Any] = []

    def run() -> None:
        torch.set_num_threads(threads)
        result.append(work())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result[0]


def test_on_a_cpu_the_batch_follows_the_calling_threads_torch_threads(model: Any) -> None:
    assert in_thread_with(1, lambda: batch_size_for(model)) == CPU_TEXTS_PER_THREAD
    assert in_thread_with(2, lambda: batch_size_for(model)) == 2 * CPU_TEXTS_PER_THREAD
    assert CPU_TEXTS_PER_THREAD < DEFAULT_BATCH_SIZE


def test_the_batch_size_does_not_change_the_vectors(model: Any) -> None:
    small = in_thread_with(1, lambda: encode(model, TEXTS))
    default = encode(model, TEXTS, DEFAULT_BATCH_SIZE)
    assert small.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(small, axis=1), 1.0, atol=1e-5)
    assert np.abs(small - default).max() < 1e-5
    # a text's vector does not depend on the texts it shares a batch with
    alone = np.stack([encode(model, [text])[0] for text in TEXTS])
    assert np.abs(alone - small).max() < 1e-5


def test_bfloat16_keeps_each_vector_within_a_hair_of_float32(model: Any) -> None:
    full = encode(model, TEXTS)
    half = encode(model, TEXTS, precision="bfloat16")
    assert half.dtype == np.float32
    assert np.allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-5)
    assert np.abs(half - full).max() > 0  # the model did run in bfloat16
    assert np.sum(half * full, axis=1).min() > 0.9999


def test_an_unknown_precision_is_refused(model: Any) -> None:
    with pytest.raises(ValueError, match="precision"):
        encode(model, TEXTS[:1], precision="float16")


def test_auto_precision_is_float32_off_the_cpu_and_explicit_settings_win() -> None:
    assert resolve_precision("auto", "cuda") == "float32"
    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("bfloat16", "cuda") == "bfloat16"
