"""Named, detached actors that outlive runs (the embed pool, kept parser and ontology
actors): listing and removing them by name. They all live in one namespace, so a run finds
the ones another driver started."""

from __future__ import annotations

import ray

NAMESPACE = "indexer"


def actor_names(prefix: str) -> list[str]:
    """Names of the live actors of the namespace that start with `prefix`, sorted."""
    return sorted(
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == NAMESPACE and entry["name"].startswith(prefix)
    )


def kill_named(name: str) -> bool:
    """Kill the actor called `name`; False when it had left on its own meanwhile."""
    try:
        ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
    except ValueError:
        return False
    return True
