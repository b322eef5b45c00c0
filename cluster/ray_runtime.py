"""Connecting to Ray: a cluster at RAY_ADDRESS / --ray-address, or a local one sized to
this machine. The runtime env keeps model loading offline in every worker."""

from __future__ import annotations

import os
from pathlib import Path

import ray

RUNTIME_ENV_VARS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def connect_ray(
    address: str | None, *, num_cpus: int | None = None, num_gpus: int | None = None
) -> None:
    """Attach to `address`, or start a local Ray (`address="local"`: never a stale cluster)."""
    if ray.is_initialized():
        return
    runtime_env = {"env_vars": dict(RUNTIME_ENV_VARS)}
    if address:
        _enable_token_auth_if_available()
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        return
    ray.init(
        address="local",
        num_cpus=num_cpus or os.cpu_count() or 1,
        num_gpus=num_gpus,
        include_dashboard=False,
        runtime_env=runtime_env,
        log_to_driver=False,
    )


def _enable_token_auth_if_available() -> None:
    """Ray 2.60 clusters use token auth when a token exists, but a driver that attaches with
    an explicit address only sends it with RAY_AUTH_MODE=token (Ray's documented switch)."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or Path(token_path).is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def cluster_size() -> tuple[float, float]:
    """(CPUs, GPUs) of the connected cluster."""
    resources = ray.cluster_resources()
    return float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))
