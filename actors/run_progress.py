"""Progress of one run and the throttle that decides when to tell browsers: pure, no Ray.

Semantics (ARCHITECTURE.md): `pagesDone` counts pages through every per-page phase and
never goes down; `phase` is the earliest phase with unfinished work; an update goes out when
10 more pages are done, when the phase changes, or 5 s after the last one if anything changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PAGES_PER_UPDATE = 10
MAX_UPDATE_INTERVAL_S = 5.0


@dataclass
class RunProgress:
    """Counters of one run, fed by the actors' reports."""

    docs_total: int = 0
    docs_fetched: int = 0
    docs_done: int = 0
    docs_failed: int = 0
    pages_total: int = 0
    rendered: int = 0
    analyzed: int = 0
    pages_done: int = 0
    late_phase: str | None = None
    document_id: str | None = None
    started_at: float = 0.0
    pages_at_start: int = 0
    _pages_left: dict[str, int] = field(default_factory=dict)

    def document_fetched(self, document_id: str, pages: int, *, already_done: int) -> None:
        self.docs_fetched += 1
        self.pages_total += pages
        self.rendered += already_done
        self.analyzed += already_done
        self.pages_done += already_done
        self.pages_at_start += already_done
        self._pages_left[document_id] = pages - already_done
        self.document_id = document_id
        if pages == already_done:
            self.docs_done += 1

    def document_failed(self, document_id: str) -> None:
        """A document that cannot be indexed: its unfinished pages leave the total."""
        left = self._pages_left.pop(document_id, None)
        if left is None:  # failed before it was fetched
            self.docs_fetched += 1
        else:
            self.pages_total -= left
        self.docs_done += 1
        self.docs_failed += 1

    def record(self, phase: str, document_id: str, pages: int) -> None:
        if phase == "render":
            self.rendered += pages
        elif phase == "analyze":
            self.analyzed += pages
        self.document_id = document_id

    def pages_finished(self, document_id: str, pages: int) -> None:
        left = self._pages_left.get(document_id)
        if left is None:  # the document already failed; its pages were taken out
            return
        self.pages_done += pages
        self._pages_left[document_id] = left - pages
        if left - pages <= 0:
            self._pages_left.pop(document_id)
            self.docs_done += 1

    @property
    def phase(self) -> str:
        if self.late_phase is not None:
            return self.late_phase
        if self.docs_fetched < self.docs_total or self.docs_total == 0:
            return "fetch"
        if self.rendered < self.pages_total:
            return "render"
        if self.analyzed < self.pages_total:
            return "analyze"
        return "embed"

    def payload(self, now: float) -> dict[str, Any]:
        """The spec's `index:progress` fields plus per-phase counts, pages/s and an ETA."""
        elapsed = max(now - self.started_at, 1e-6)
        rate = (self.pages_done - self.pages_at_start) / elapsed
        remaining = max(self.pages_total - self.pages_done, 0)
        payload: dict[str, Any] = {
            "phase": self.phase,
            "docsDone": self.docs_done,
            "docsTotal": self.docs_total,
            "pagesDone": self.pages_done,
            "pagesTotal": self.pages_total,
            "docsFailed": self.docs_failed,
            "phases": {
                "fetch": self.docs_fetched,
                "render": self.rendered,
                "analyze": self.analyzed,
                "embed": self.pages_done,
            },
            "pagesPerSecond": round(rate, 3),
            "etaSeconds": round(remaining / rate, 1) if rate > 0 else None,
        }
        if self.document_id is not None:
            payload["documentId"] = self.document_id
        return payload


@dataclass
class ProgressThrottle:
    """Decides whether an update is due; the caller tells it when one was sent."""

    last_sent_at: float = 0.0
    last_pages: int = -1
    last_phase: str | None = None
    last_key: tuple[Any, ...] = ()

    def due(self, now: float, pages_done: int, phase: str, key: tuple[Any, ...]) -> bool:
        if phase != self.last_phase:
            return True
        if pages_done - self.last_pages >= PAGES_PER_UPDATE:
            return True
        changed = key != self.last_key
        return changed and now - self.last_sent_at >= MAX_UPDATE_INTERVAL_S

    def sent(self, now: float, pages_done: int, phase: str, key: tuple[Any, ...]) -> None:
        self.last_sent_at = now
        self.last_pages = pages_done
        self.last_phase = phase
        self.last_key = key


def progress_key(progress: RunProgress) -> tuple[Any, ...]:
    """Everything whose change is worth an update after 5 s."""
    return (
        progress.phase,
        progress.docs_done,
        progress.docs_total,
        progress.pages_done,
        progress.pages_total,
        progress.rendered,
        progress.analyzed,
        progress.docs_failed,
    )
