"""Prometheus metrics of one head, in a registry of its own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class HeadMetrics:
    """Sockets, rooms, events by type, publish-to-emit latency, auth failures by reason."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sockets_connected = Gauge(
            "indexer_head_sockets_connected",
            "Socket.IO connections open on this head",
            registry=self.registry,
        )
        self.rooms_joined = Gauge(
            "indexer_head_room_memberships",
            "Workspace rooms joined, summed over sockets",
            registry=self.registry,
        )
        self.events_sent = Counter(
            "indexer_head_events_sent",
            "Socket.IO events sent by this head, by event name",
            ["event"],
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "indexer_head_publish_to_emit_seconds",
            "From a run's publish call to the room emit on this head",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "indexer_head_auth_failures",
            "Refused sessions, by reason",
            ["reason"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
