"""Parser actors kept between runs, so a run does not start them again.

Starting a parser actor costs CPU-seconds (a worker process, Ray, MuPDF, PyMongo), and a
run's fetch, render and analyze actors start before its first page can move: on a small
cluster that is seconds of a short run (see docs/BENCHMARKS.md, 'Design choices'). So a run
ends by parking its healthy, idle parser actors (`SupervisedPool.release`), and the next run
with the same settings and pool plan claims them by name instead of starting new ones.

- Parser actors are named `parser-{key}-{phase}-{id}` and detached, so they outlive the
  driver that started them; `key` (`actors.lifecycle.names.actor_key`) hashes the settings
  actors are built with and the plan, so a claimed actor is one this run could have started
  itself.
- `claim` hands a parked actor to exactly one run (see `SupervisedActor.claim`); from then
  on its pool supervises it as its own.
- A parked actor leaves after INDEXER_PARSER_IDLE_S without a call; one whose run is gone
  (its driver killed) leaves as well. A run with another key removes the parked actors of
  other keys, so they never hold the CPUs its own actors need.
- The ontology actor is kept the same way, as one named actor per key that runs share.
- INDEXER_PARSER_IDLE_S=0 keeps nothing: actors are unnamed and die with their run.
"""

from __future__ import annotations

import uuid
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from actors.lifecycle.names import NAMESPACE, actor_names, kill_named
from core.settings import Settings

NAME_PREFIX = "parser"
ONTOLOGY_PREFIX = "ontology"


def keeps_parsers(settings: Settings) -> bool:
    return settings.parser_idle_s > 0


def spawn_options(key: str, phase: str) -> dict[str, Any]:
    """Ray options for a new parser actor that later runs can claim."""
    return {
        "name": f"{NAME_PREFIX}-{key}-{phase}-{uuid.uuid4().hex[:12]}",
        "namespace": NAMESPACE,
        "lifetime": "detached",
    }


async def claim_spares(
    key: str, phase: str, count: int, aggregator: Any, names: list[str]
) -> list[tuple[Any, int]]:
    """Up to `count` parked actors of `phase` among `names` (the cluster's named actors),
    each with the documents it has parsed."""
    claimed: list[tuple[Any, int]] = []
    for name in names:
        if len(claimed) == count:
            break
        if name.startswith(f"{NAME_PREFIX}-{key}-{phase}-"):
            taken = await _claim(name, aggregator)
            if taken is not None:
                claimed.append(taken)
    return claimed


async def remove_other_spares(keep: str, aggregator: Any, names: list[str]) -> list[str]:
    """Kill the parked actors and ontology actors of every other key among `names`; return
    their names."""
    removed = [
        name
        for name in names
        if name.startswith(f"{ONTOLOGY_PREFIX}-")
        and name != f"{ONTOLOGY_PREFIX}-{keep}"
        and kill_named(name)
    ]
    for name in names:
        if not name.startswith(f"{NAME_PREFIX}-") or name.startswith(f"{NAME_PREFIX}-{keep}-"):
            continue
        claimed = await _claim(name, aggregator)
        if claimed is not None:  # claimed first: one another run works with is left alone
            ray.kill(claimed[0], no_restart=True)
            removed.append(name)
    return removed


async def touch_parked(key: str) -> dict[str, int]:
    """Touch the parked parser actors of `key` (they stay, and stay claimable); how many of
    each phase there are."""
    parked: dict[str, int] = {}
    for name in actor_names(f"{NAME_PREFIX}-{key}-"):
        phase = name.removeprefix(f"{NAME_PREFIX}-{key}-").split("-", 1)[0]
        try:
            if await ray.get_actor(name, namespace=NAMESPACE).touch.remote():
                parked[phase] = parked.get(phase, 0) + 1
        except (ValueError, RayError):  # left since it was listed, or cannot answer
            continue
    return parked


def kept_actor_names() -> list[str]:
    """Names of the kept parser and ontology actors on the cluster (one call to Ray)."""
    return [n for n in actor_names("") if n.startswith((f"{NAME_PREFIX}-", f"{ONTOLOGY_PREFIX}-"))]


async def _claim(name: str, aggregator: Any) -> tuple[Any, int] | None:
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:  # left (idle) since it was listed
        return None
    try:
        documents = await handle.claim.remote(aggregator)
    except RayActorError:  # died since it was listed
        return None
    except RayError:  # alive but cannot take a call (out of memory): of no use to anyone
        ray.kill(handle, no_restart=True)
        return None
    return None if documents is None else (handle, documents)
