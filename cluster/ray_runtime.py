"""Connecting to Ray: a cluster at RAY_ADDRESS / --ray-address, or a local one sized to
this machine. The runtime env keeps model loading offline in every worker."""

from __future__ import annotations

import os

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


def cluster_size() -> tuple[float, float]:
    """(CPUs, GPUs) of the connected cluster."""
    resources = ray.cluster_resources()
    return float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))
