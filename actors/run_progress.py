"""Progress of one run and the throttle that decides when to tell browsers: pure, no Ray.

Semantics (ARCHITECTURE.md): `pagesDone` counts pages through every per-page phase and
never goes down; `phase` is the earliest phase with unfinished work; an update goes out when
10 more pages are done, when the phase changes, or 5 s after the last one if anything changed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

PAGES_PER_UPDATE = 10
MAX_UPDATE_INTERVAL_S = 5.0
# Pages/s (and so the ETA) are measured over about this many recent seconds: long enough
# to smooth the bursts in which page batches finish, short enough to follow a change.
RATE_WINDOW_S = 30.0


@dataclass
class PageRate:
    """Pages per second over the last RATE_WINDOW_S, measured from the first pages this run
    finished, not from its start: the seconds before them (workers starting, the model
    loading) say nothing about how fast pages go, and counting them made the ETA of a
    short run many times too long. Unknown (None) until pages were finished twice."""

    _samples: deque[tuple[float, int]] = field(default_factory=deque)

    def observe(self, now: float, pages_done: int) -> None:
        """Record `pages_done` (this run's) at `now` when it moved, from the first pages
        on; samples past the window go, but one stays before it, so the window is covered."""
        last_done = self._samples[-1][1] if self._samples else 0
        if pages_done == last_done:
            return
        self._samples.append((now, pages_done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()

    def per_second(self, now: float) -> float | None:
        """Between the first and the last sample, while the last is recent; a run that
        finishes nothing for longer than its mean gap between samples sees its rate fall
        (and its ETA grow) as `now` moves on."""
        if len(self._samples) < 2:
            return None
        (first_at, first_done), (last_at, last_done) = self._samples[0], self._samples[-1]
        span = last_at - first_at
        mean_gap = span / (len(self._samples) - 1)
        elapsed = max(span, now - first_at - mean_gap)
        return (last_done - first_done) / elapsed if elapsed > 0 else None


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
    pages_at_start: int = 0
    _pages_left: dict[str, int] = field(default_factory=dict)
    _rate: PageRate = field(default_factory=PageRate)
    # Pages each phase reported, by document, until the document is done: a batch redone
    # (its actor or its node lost after it reported) is not counted twice.
    _reported: dict[str, dict[str, set[int]]] = field(default_factory=dict)

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

    def record(self, phase: str, document_id: str, page_nos: Collection[int]) -> None:
        """`phase` (render or analyze) finished these pages; pages already reported (a
        redone batch) do not count again."""
        pages = self._first_reports(phase, document_id, page_nos)
        if phase == "render":
            self.rendered += pages
        elif phase == "analyze":
            self.analyzed += pages
        self.document_id = document_id

    def pages_finished(self, document_id: str, page_nos: Collection[int]) -> None:
        """These pages went through every per-page phase; `pagesDone` never counts a page
        twice, so it never runs ahead of the pages done and never goes back."""
        left = self._pages_left.get(document_id)
        if left is None:  # the document already failed (or is done); its pages are counted
            return
        pages = self._first_reports("embed", document_id, page_nos)
        self.pages_done += pages
        self._pages_left[document_id] = left - pages
        if left - pages <= 0:
            self._pages_left.pop(document_id)
            for reported in self._reported.values():
                reported.pop(document_id, None)
            self.docs_done += 1

    def _first_reports(self, phase: str, document_id: str, page_nos: Collection[int]) -> int:
        """How many of `page_nos` this phase reports for the first time."""
        reported = self._reported.setdefault(phase, {}).setdefault(document_id, set())
        new = set(page_nos) - reported
        reported |= new
        return len(new)

    def observe(self, now: float) -> None:
        """Called as reports arrive: the clock of the pages/s and ETA figures. Pages done
        before this run (resumed, skipped) are its starting point, not progress."""
        self._rate.observe(now, self.pages_done - self.pages_at_start)

    def pages_left(self) -> float:
        """Pages still to do, with those of documents not fetched yet estimated at the
        fetched ones' average: early in a large run most documents are not counted yet."""
        left = max(self.pages_total - self.pages_done, 0)
        unfetched = max(self.docs_total - self.docs_fetched, 0)
        if unfetched and self.docs_fetched:
            left += unfetched * self.pages_total / self.docs_fetched
        return left

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
        """The spec's `index:progress` fields plus per-phase counts, pages/s and an ETA
        (None until the rate is known; see PageRate)."""
        rate = self._rate.per_second(now) or 0.0
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
            "etaSeconds": round(self.pages_left() / rate, 1) if rate > 0 else None,
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
