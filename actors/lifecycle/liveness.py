"""Whether a run still lives: actors that outlive runs (the embed pool, parked parser
actors) hold a run's aggregator and must know when that run is gone."""

from __future__ import annotations

from typing import Any

from ray.exceptions import RayActorError


async def run_is_alive(aggregator: Any) -> bool:
    """False once the run's aggregator is gone: the run ended, was cancelled, or its driver
    died (the aggregator is the run's own actor and dies with it)."""
    try:
        await aggregator.snapshot.remote()
    except RayActorError:
        return False
    return True
