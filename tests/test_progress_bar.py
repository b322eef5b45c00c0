"""The terminal view of a run (tqdm): plain lines in a log, a redrawn bar on a TTY, and on
both a last line that says where the run ended. Fed by a real RunProgress on a simulated
clock; tests/test_pipeline.py follows a real run into a log."""

from __future__ import annotations

import fcntl
import io
import os
import struct
import termios
from collections.abc import Iterator
from typing import Any

from actors.run_progress import RunProgress
from cluster.progress_bar import PLAIN_LINE_EVERY_S, ProgressView

PAGES = 40


def simulated_run() -> Iterator[tuple[float, dict[str, Any]]]:
    """(time, snapshot) every 0.5 s of a 40-page run: 3 s of warm-up, then 4 pages/s."""
    progress = RunProgress(docs_total=2)
    progress.document_fetched("a", 30, already_done=0)
    progress.document_fetched("b", 10, already_done=0)
    now = 0.0
    while progress.pages_done < PAGES:
        if now >= 3.0:
            document = "a" if progress.pages_done < 30 else "b"
            first = progress.pages_done % 30 if document == "a" else progress.pages_done - 30
            pages = [first, first + 1]
            progress.record("render", document, pages)
            progress.record("analyze", document, pages)
            progress.pages_finished(document, pages)
        progress.observe(now)
        yield now, progress.payload(now)
        now += 0.5


def final(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {**snapshot, "phase": "finalize", "status": "ready"}


def test_a_log_gets_plain_lines_and_the_last_one() -> None:
    log = io.StringIO()
    view = ProgressView(log)
    shown = list(simulated_run())
    for now, snapshot in shown:
        view.show(snapshot, now)
    view.close(final(shown[-1][1]))

    output = log.getvalue()
    assert "\r" not in output, "a carriage return in a log"
    lines = output.splitlines()
    seconds = shown[-1][0]
    phases = 3  # fetch (nothing done yet), render, embed
    assert len(lines) <= seconds / PLAIN_LINE_EVERY_S + phases + 2, lines
    assert lines[0].startswith("render")
    assert lines[-1].startswith("ready")
    assert "100%|" in lines[-1]
    assert f"#| {PAGES}/{PAGES} pages" in lines[-1]
    assert "docs 2/2" in lines[-1]
    assert "eta" not in lines[-1]  # over: no time left to guess
    assert any("eta 00:0" in line for line in lines[1:-1]), lines


def test_closing_without_an_end_leaves_the_last_state_shown() -> None:
    """A run cut short (its driver cancelled): the last snapshot stays, even inside the
    5 s between plain lines."""
    log = io.StringIO()
    view = ProgressView(log)
    shown = list(simulated_run())[:10]
    for now, snapshot in shown:
        view.show(snapshot, now)
    view.close()
    last = log.getvalue().splitlines()[-1]
    done = shown[-1][1]["pagesDone"]
    assert f"{done}/{PAGES} pages" in last, last


def test_a_tty_gets_a_bar_redrawn_in_place() -> None:
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with os.fdopen(terminal, "w") as tty:
        view = ProgressView(tty)
        assert view.tty
        shown = list(simulated_run())
        for now, snapshot in shown:
            view.show(snapshot, now)
        view.close(final(shown[-1][1]))
        tty.flush()
        output = read_all(controller)
    os.close(controller)
    drawings = [d.strip() for d in output.split("\r") if d.strip()]
    assert len(drawings) >= len(shown), "not redrawn at each snapshot"
    assert drawings[-1].startswith("ready")
    assert "100%" in drawings[-1]
    assert f"{PAGES}/{PAGES} pages" in drawings[-1]
    assert max(len(d) for d in drawings) <= 100, "wider than the terminal"


def test_a_tty_of_unknown_size_gets_plain_lines() -> None:
    """A pseudo-terminal nobody sized (0 rows, as under `script` or in a container) would
    get nothing drawn by tqdm: it gets the log's plain lines, the last one included."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    with os.fdopen(terminal, "w") as tty:
        view = ProgressView(tty)
        assert not view.tty
        shown = list(simulated_run())
        for now, snapshot in shown:
            view.show(snapshot, now)
        view.close(final(shown[-1][1]))
        tty.flush()
        output = read_all(controller)
    os.close(controller)
    lines = [line for line in output.replace("\r\n", "\n").split("\n") if line.strip()]
    assert lines[-1].startswith("ready"), lines
    assert f"| {PAGES}/{PAGES} pages" in lines[-1]


def read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()
