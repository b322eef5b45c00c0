"""The embed pool: EmbedActors that outlive a run, so the model loads once per cluster.

Starting a worker, importing torch and sentence-transformers and loading the model takes
longer than embedding a small workspace. The pool's actors are named and detached; the next
run (or a run of another workspace at the same time) finds them by name and shares them.
The name holds a key of what the actors were built with (model, arithmetic, placement,
database server): a run with other settings gets other actors, and the old ones are removed
so they do not hold the CPUs or GPUs the new ones need. Idle actors leave after `embed_idle_s`.
"""

from __future__ import annotations

from typing import Any

from actors.embed import EmbedActor
from actors.lifecycle.names import NAMESPACE, actor_key, actor_names, kill_named
from actors.pool import PoolPlan
from core.settings import Settings

NAME_PREFIX = "embed-pool"


def embed_pool(settings: Settings, plan: PoolPlan) -> list[Any]:
    """Handles to the pool's actors, created when missing (Ray's get_if_exists)."""
    key = actor_key(settings, plan, any_database=True)
    remove_other_pools(keep=key)
    placement = {"num_cpus": plan.embed_cpus, "num_gpus": plan.embed_gpus}
    return [
        EmbedActor.options(
            name=f"{NAME_PREFIX}-{key}-{index}",
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            **placement,
        ).remote(settings, plan.embed_threads, plan.embed_streams)
        for index in range(plan.embed_actors)
    ]


def pool_actor_names() -> list[str]:
    """Names of every embed pool actor alive on the cluster."""
    return actor_names(f"{NAME_PREFIX}-")


def remove_other_pools(*, keep: str) -> list[str]:
    """Kill pool actors whose key is not `keep`; return their names."""
    return [
        name
        for name in pool_actor_names()
        if not name.startswith(f"{NAME_PREFIX}-{keep}-") and kill_named(name)
    ]
