"""Progress semantics and the throttle, on simulated timelines."""

from __future__ import annotations

import math
import random

import pytest

from actors.run_progress import ProgressThrottle, RunProgress, progress_key
from core.events import PHASES


def simulate(
    pages_per_doc: list[int], seconds_per_page: float, seed: int
) -> tuple[int, float, list[int]]:
    rng = random.Random(seed)
    progress = RunProgress(docs_total=len(pages_per_doc))
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
        for page in range(pages):
            now += seconds_per_page * rng.uniform(0.5, 1.5)
            for phase in ("render", "analyze"):
                progress.record(phase, f"d{index}", [page])
                maybe()
            progress.pages_finished(f"d{index}", [page])
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
    progress.record("render", "a", [0, 1])
    progress.record("render", "b", [0])
    assert progress.phase == "analyze"
    progress.record("analyze", "a", [0, 1])
    progress.record("analyze", "b", [0])
    assert progress.phase == "embed"
    progress.pages_finished("a", [0, 1])
    progress.pages_finished("b", [0])
    assert (progress.docs_done, progress.pages_done) == (2, 3)


def test_failed_document_leaves_totals() -> None:
    progress = RunProgress(docs_total=3)
    progress.document_fetched("a", 4, already_done=0)
    progress.document_fetched("b", 6, already_done=0)
    progress.pages_finished("b", [0, 1])
    progress.document_failed("b")
    progress.document_failed("c")  # failed in fetch
    assert progress.pages_total == 6
    assert progress.pages_done == 2
    assert progress.docs_done == 2
    assert progress.docs_failed == 2
    progress.pages_finished("b", [2, 3, 4, 5])  # late report of a failed document: ignored
    assert progress.pages_done == 2


def test_a_redone_batch_counts_once() -> None:
    """A batch whose actor (or node) was lost after it reported is done again and reported
    again: no phase counts its pages twice, and pagesDone never passes the total."""
    progress = RunProgress(docs_total=1)
    progress.document_fetched("a", 8, already_done=0)
    for _ in range(2):  # the first attempt reported, then its actor died; the retry did too
        progress.record("render", "a", [0, 1, 2, 3])
        progress.record("analyze", "a", [0, 1, 2, 3])
        progress.pages_finished("a", [0, 1, 2, 3])
    payload = progress.payload(now=1.0)
    assert (payload["pagesDone"], payload["docsDone"]) == (4, 0)
    assert payload["phases"] == {"fetch": 1, "render": 4, "analyze": 4, "embed": 4}
    progress.pages_finished("a", [2, 3, 4, 5, 6, 7])
    assert (progress.pages_done, progress.docs_done) == (8, 1)
    progress.pages_finished("a", [7])  # a late duplicate after the document is done
    assert (progress.pages_done, progress.docs_done) == (8, 1)


def test_resumed_pages_count_as_done() -> None:
    progress = RunProgress(docs_total=1)
    progress.document_fetched("a", 5, already_done=5)
    assert progress.docs_done == 1
    assert progress.pages_done == progress.pages_total == 5
    payload = progress.payload(now=1.0)
    assert payload["pagesDone"] == 5
    assert payload["phases"]["embed"] == 5


def steady_run(
    progress: RunProgress, *, warm_up_s: float, pages_per_s: float, until: float
) -> None:
    """Pages finish in 4-page batches at a steady rate once the pipeline is warm, as the
    aggregator sees them: each report observed at its own time."""
    batch_s = 4 / pages_per_s
    now = warm_up_s
    while now <= until and progress.pages_done < progress.pages_total:
        first = progress.pages_done
        progress.pages_finished("a", range(first, first + 4))
        progress.observe(now)
        now += batch_s


def test_eta_leaves_out_the_warm_up() -> None:
    """A 10 s run: 6 s to start workers and load the model, then 10 pages/s. The time before
    the first pages is no measure of the rate; counting it put the ETA many times too far."""
    progress = RunProgress(docs_total=1)
    progress.document_fetched("a", 100, already_done=0)
    progress.observe(0.0)
    assert progress.payload(now=5.0)["etaSeconds"] is None  # no rate yet: no guess
    steady_run(progress, warm_up_s=6.0, pages_per_s=10.0, until=8.0)
    payload = progress.payload(now=8.0)
    true_eta = (100 - payload["pagesDone"]) / 10.0
    assert payload["pagesPerSecond"] == pytest.approx(10.0, rel=0.1)
    assert payload["etaSeconds"] == pytest.approx(true_eta, rel=0.2), payload


def test_eta_grows_when_the_run_stalls_and_follows_a_new_rate() -> None:
    progress = RunProgress(docs_total=1)
    progress.document_fetched("a", 1000, already_done=0)
    steady_run(progress, warm_up_s=0.0, pages_per_s=20.0, until=10.0)
    before = progress.payload(now=10.0)["etaSeconds"]
    stalled = progress.payload(now=20.0)["etaSeconds"]
    assert stalled > 1.5 * before
    # 60 s at 5 pages/s: the 30 s window forgets the faster start
    now = 20.0
    while now < 80.0:
        progress.pages_finished("a", [progress.pages_done])
        progress.observe(now)
        now += 0.2
    assert progress.payload(now=80.0)["pagesPerSecond"] == pytest.approx(5.0, rel=0.1)


def test_eta_counts_the_documents_not_fetched_yet() -> None:
    """Half the documents fetched: the other half's pages are still to do."""
    progress = RunProgress(docs_total=4)
    progress.document_fetched("a", 50, already_done=0)
    progress.document_fetched("b", 50, already_done=0)
    steady_run(progress, warm_up_s=0.0, pages_per_s=10.0, until=2.0)
    payload = progress.payload(now=2.0)
    left = 200 - payload["pagesDone"]
    assert payload["etaSeconds"] == pytest.approx(left / 10.0, rel=0.2), payload


def test_resumed_pages_are_not_speed() -> None:
    """Pages done by an earlier run count as done, not as pages this run did in no time."""
    progress = RunProgress(docs_total=1)
    progress.document_fetched("a", 200, already_done=100)
    progress.observe(0.0)
    steady_run(progress, warm_up_s=1.0, pages_per_s=2.0, until=3.0)
    assert progress.payload(now=3.0)["pagesPerSecond"] == pytest.approx(2.0, rel=0.1)
