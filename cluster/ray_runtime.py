"""Connecting to Ray: a cluster at RAY_ADDRESS / --ray-address, or a local one sized to
this machine.

No job-level runtime env: Ray reuses its prestarted idle workers only for jobs without one,
and starting a fresh worker for each of a run's actors costs seconds of CPU. What workers
need from their environment (offline model loading) `core.embedding` sets itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import ray


def connect_ray(
    address: str | None, *, num_cpus: int | None = None, num_gpus: int | None = None
) -> None:
    """Attach to `address`, or start a local Ray (`address="local"`: never a stale cluster)."""
    if ray.is_initialized():
        return
    if address:
        _enable_token_auth_if_available()
        ray.init(address=address, log_to_driver=False)
        return
    ray.init(
        address="local",
        num_cpus=num_cpus or os.cpu_count() or 1,
        num_gpus=num_gpus,
        include_dashboard=False,
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
