"""What went wrong under a run and what it did again: nodes lost, work redone.

A run outlives the loss of a worker node: its pools replace the actors that were there and
send their calls again (all writes are keyed upserts, and progress counts a page once). The
job document says what it cost, so an operator sees why a run took longer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray


def alive_nodes() -> set[str]:
    """The ids of the nodes Ray counts as alive."""
    return {node["NodeID"] for node in ray.nodes() if node["Alive"]}


def node_is_alive(node_id: str | None) -> bool:
    """Whether Ray still counts the node as alive (True when the node is not known: only
    a node Ray has declared dead counts as lost)."""
    if node_id is None:
        return True
    return any(node["NodeID"] == node_id and node["Alive"] for node in ray.nodes())


@dataclass
class RunIncidents:
    """Nodes lost during one run and the calls it made again; kept by its driver."""

    nodes_lost: dict[str, float] = field(default_factory=dict)  # node id → when seen lost
    redone: list[dict[str, Any]] = field(default_factory=list)
    # Told once per node lost: the run's driver plans its pools again for what is left.
    on_node_lost: Callable[[str], None] | None = None

    def node_lost(self, node_id: str) -> None:
        if node_id in self.nodes_lost:
            return
        self.nodes_lost[node_id] = time.time()
        if self.on_node_lost is not None:
            self.on_node_lost(node_id)

    def redo(self, phase: str, document_id: str, what: str, reason: str) -> None:
        """A call of `phase` on `what` (e.g. "pages 5-8") is sent again, because of
        `reason` ("node lost", "actor died")."""
        self.redone.append(
            {"phase": phase, "documentId": document_id, "what": what, "reason": reason}
        )

    def as_document(self) -> dict[str, Any]:
        """The `incidents` field of the run's job document."""
        return {
            "nodesLost": [{"nodeId": n, "at": at} for n, at in self.nodes_lost.items()],
            "redone": list(self.redone),
        }
