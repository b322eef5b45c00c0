"""Named, detached actors that outlive runs (the embed pool, kept parser and ontology
actors): their key, listing and removing them by name. They all live in one namespace, so a
run finds the ones another driver started."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import ray

from actors.pool import PoolPlan
from core.settings import Settings

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


def actor_key(settings: Settings, plan: PoolPlan, *, any_database: bool = False) -> str:
    """What actors that outlive runs must share to serve a run: the settings they are built
    with (the database, the model and its arithmetic, preview resolution, document and
    memory limits, idle times) and the pool plan. Settings only a head or an aggregator
    reads (ports, HEAD_URL, Redis, tokens) are left out, so two heads on one Ray share one
    set. `any_database`: the actors are given the database with each call (the embed pool),
    so runs on any database of the server share them. The database URI is hashed: no secret
    appears in a name."""
    uri = settings.mongodb_uri.reveal() if settings.mongodb_uri else ""
    key = {
        "uri": hashlib.sha256(uri.encode()).hexdigest(),
        "db": None if any_database else settings.mongodb_db,
        "model": settings.embed_model,
        "precision": settings.embed_precision,
        "dpi": settings.render_dpi,
        "maxPages": settings.max_pages,
        "maxDocumentBytes": settings.max_document_bytes,
        "parserMemoryMb": settings.parser_memory_mb,
        "parserIdleS": settings.parser_idle_s,
        "embedIdleS": settings.embed_idle_s,
        "plan": asdict(plan),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
