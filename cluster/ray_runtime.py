"""Connecting to Ray: a cluster at RAY_ADDRESS / --ray-address, the local Ray a head on this
machine runs for the same INDEXER_DATA_DIR, or a local one of this process, sized to the
machine.

No job-level runtime env: Ray reuses its prestarted idle workers only for jobs without one,
and starting a fresh worker for each of a run's actors costs seconds of CPU. What workers
need from their environment (offline model loading) `core.embedding` sets itself. Token
authentication is set up before `ray` is imported (`cluster.ray_auth`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from cluster.local_runtime import LocalRayRuntime
from core.settings import Settings

logger = logging.getLogger(__name__)


def connect_ray(
    address: str | None, *, num_cpus: int | None = None, num_gpus: int | None = None
) -> None:
    """Attach to `address`, or start a local Ray (`address="local"`: never a stale cluster)."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    ray.init(
        address="local",
        num_cpus=num_cpus or os.cpu_count() or 1,
        num_gpus=num_gpus,
        include_dashboard=False,
        log_to_driver=False,
    )


@contextmanager
def ray_for_runs(settings: Settings) -> Iterator[None]:
    """Connect this process for runs: RAY_ADDRESS when set; else the head's local Ray of
    this data directory (used, so it stays up until this process is done), else a local
    Ray of this process's own."""
    if settings.ray_address:
        connect_ray(settings.ray_address)
        yield
        return
    runtime = LocalRayRuntime(settings.data_dir)
    info = runtime.attach()
    if info is not None:
        logger.info("using the head's Ray at %s (dashboard %s)", info.address, info.dashboard)
    try:
        connect_ray(info.address if info else None)
        yield
    finally:
        runtime.release()


def cluster_size() -> tuple[float, float]:
    """(CPUs, GPUs) of the connected cluster."""
    resources = ray.cluster_resources()
    return float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))
