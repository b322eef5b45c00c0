"""Progress semantics and the throttle, on simulated timelines."""

from __future__ import annotations

import math
import random

from actors.run_progress import ProgressThrottle, RunProgress, progress_key
from core.events import PHASES


def simulate(
    pages_per_doc: list[int], seconds_per_page: float, seed: int
) -> tuple[int, float, list[int]]:
    rng = random.Random(seed)
    progress = RunProgress(docs_total=len(pages_per_doc), started_at=0.0)
    throttle = ProgressThrottle()
    now, sent, done_seen = 0.0, 0, []

    def maybe() -> None:
        nonlocal sent
        key = progress_key(progress)
        if throttle.due(now, progress.pages_done, progress.phase, key):
            throttle.sent(now, progress.pages_done, progress.phase, key)
            sent += 1
            done_seen.append(progress.pages_done)

    for index, pages in enumerate(pages_per_doc):
        progress.document_fetched(f"d{index}", pages, already_done=0)
        maybe()
    for index, pages in enumerate(pages_per_doc):
        for _ in range(pages):
            now += seconds_per_page * rng.uniform(0.5, 1.5)
            for phase in ("render", "analyze"):
                progress.record(phase, f"d{index}", 1)
                maybe()
            progress.pages_finished(f"d{index}", 1)
            maybe()
        # the 0.5 s ticker
        maybe()
    return sent, now, done_seen


def test_throttle_bound_holds() -> None:
    for seed, (docs, rate) in enumerate([([30, 40, 50], 0.05), ([3, 2], 2.0), ([200], 0.3)]):
        sent, elapsed, done = simulate(docs, rate, seed)
        pages = sum(docs)
        assert sent <= math.ceil(pages / 10) + math.ceil(elapsed / 5) + len(PHASES) + 2
        assert done == sorted(done)


def test_phase_is_earliest_unfinished() -> None:
    progress = RunProgress(docs_total=2)
    assert progress.phase == "fetch"
    progress.document_fetched("a", 2, already_done=0)
    assert progress.phase == "fetch"
    progress.document_fetched("b", 1, already_done=0)
    assert progress.phase == "render"
    progress.record("render", "a", 3)
    assert progress.phase == "analyze"
    progress.record("analyze", "a", 3)
    assert progress.phase == "embed"
    progress.pages_finished("a", 2)
    progress.pages_finished("b", 1)
    assert (progress.docs_done, progress.pages_done) == (2, 3)


def test_failed_document_leaves_totals() -> None:
    progress = RunProgress(docs_total=3)
    progress.document_fetched("a", 4, already_done=0)
    progress.document_fetched("b", 6, already_done=0)
    progress.pages_finished("b", 2)
    progress.document_failed("b")
    progress.document_failed("c")  # failed in fetch
    assert progress.pages_total == 6
    assert progress.pages_done == 2
    assert progress.docs_done == 2
    assert progress.docs_failed == 2
    progress.pages_finished("b", 4)  # late report of a failed document is ignored
    assert progress.pages_done == 2


def test_resumed_pages_count_as_done() -> None:
    progress = RunProgress(docs_total=1)
    progress.document_fetched("a", 5, already_done=5)
    assert progress.docs_done == 1
    assert progress.pages_done == progress.pages_total == 5
    payload = progress.payload(now=1.0)
    assert payload["pagesDone"] == 5
    assert payload["phases"]["embed"] == 5
