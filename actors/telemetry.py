"""Ray metrics of the pipeline (`ray.util.metrics`), exported by every node's metrics agent
to the Ray dashboard and Prometheus as `ray_indexer_*`.

Each actor builds its own instance in `__init__`, as Ray's metrics example does.
"""

from __future__ import annotations

from ray.util.metrics import Counter, Gauge, Histogram

PHASE_LATENCY_BOUNDARIES_S = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]


class PipelineMetrics:
    """Pages done per phase, per-call phase latency, pages in flight, failures by phase."""

    def __init__(self) -> None:
        self.pages_done = Counter(
            "indexer_pages_done", description="Pages through a phase", tag_keys=("phase",)
        )
        self.phase_latency = Histogram(
            "indexer_phase_latency_seconds",
            description="Duration of one phase call",
            boundaries=PHASE_LATENCY_BOUNDARIES_S,
            tag_keys=("phase",),
        )
        self.in_flight = Gauge(
            "indexer_pages_in_flight",
            description="Pages rendered but not yet done",
            tag_keys=("workspace",),
        )
        self.failures = Counter(
            "indexer_document_failures",
            description="Documents that failed, by phase",
            tag_keys=("phase",),
        )

    def phase_done(self, phase: str, pages: int, seconds: float) -> None:
        self.pages_done.inc(pages, tags={"phase": phase})
        self.phase_latency.observe(seconds, tags={"phase": phase})
