"""The terminal view of a run, drawn by tqdm: a bar redrawn in place on a TTY; in a log or
a pipe (not a TTY) the same line as plain lines, one every PLAIN_LINE_EVERY_S and on each
phase change; on both, the last line is where the run ended (100% when it succeeded).

The figures (pages, phase, pages/s, ETA) are the aggregator's, the ones browsers get, so
the terminal and the page agree; tqdm draws them, fits the bar to the terminal's width and
keeps log lines (`logging`) from breaking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from actors.ray_futures import as_future

REFRESH_S = 0.5
PLAIN_LINE_EVERY_S = 5.0
BAR_FORMAT = "{desc:<8} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} pages [{elapsed}{postfix}]"
# The width of a plain line (tqdm cannot ask a log for one).
PLAIN_COLUMNS = 100


class _Lines:
    """A stream for tqdm that turns each drawing into a line: tqdm redraws a bar after a
    carriage return, which a log file or a pipe keeps as one endless line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()  # tqdm pads a redraw with blanks
        if line:
            self._stream.write(line + "\n")

    def flush(self) -> None:
        self._stream.flush()


class ProgressView:
    """One run's bar. `show` each progress snapshot as it comes; `close` once, with the
    last snapshot when there is one; the bar is drawn when first shown."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = _is_terminal(self._stream)
        self._bar: tqdm[Any] | None = None
        self._line_at = -math.inf  # when the last plain line was written
        self._line: tuple[Any, ...] = ()

    @property
    def tty(self) -> bool:
        return self._tty

    def show(self, snapshot: dict[str, Any], now: float | None = None) -> None:
        """Redraw on a TTY; in a log, write a line when the phase changed or, if anything
        else did, PLAIN_LINE_EVERY_S after the last one."""
        now = time.monotonic() if now is None else now
        if self._bar is None:
            self._bar = self._new_bar(snapshot)  # drawn as tqdm makes it
        else:
            bar = self._update(snapshot)
            phase_changed = self._line[2] != bar.desc
            due = self._state() != self._line and now - self._line_at >= PLAIN_LINE_EVERY_S
            if not (self._tty or phase_changed or due):
                return
            bar.refresh()
        self._line, self._line_at = self._state(), now

    def close(self, snapshot: dict[str, Any] | None = None) -> None:
        """Draw the last state (this snapshot, else the last shown) and leave it in place."""
        if snapshot is not None and self._bar is not None:
            self._update(snapshot)
        elif snapshot is not None:
            self._bar = self._new_bar(snapshot)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _state(self) -> tuple[Any, ...]:
        assert self._bar is not None
        return (self._bar.n, self._bar.total, self._bar.desc, self._bar.postfix)

    def _update(self, snapshot: dict[str, Any]) -> tqdm[Any]:
        """The bar with the snapshot's figures, not drawn yet (tqdm draws on `refresh`)."""
        assert self._bar is not None
        bar = self._bar
        bar.total = int(snapshot.get("pagesTotal", 0))
        bar.update(int(snapshot.get("pagesDone", 0)) - bar.n)
        bar.set_description_str(_label(snapshot), refresh=False)
        bar.set_postfix_str(_figures(snapshot), refresh=False)
        return bar

    def _new_bar(self, snapshot: dict[str, Any]) -> tqdm[Any]:
        """A bar drawn at once with the snapshot's figures. Later drawings happen only on
        `refresh`: tqdm's own throttle (mininterval) and its monitor thread (which redraws
        bars with miniters > 1) stay out of the way of `show`'s choices."""
        return tqdm(
            total=int(snapshot.get("pagesTotal", 0)),
            initial=int(snapshot.get("pagesDone", 0)),
            desc=_label(snapshot),
            postfix=_figures(snapshot),
            file=self._stream if self._tty else _Lines(self._stream),
            bar_format=BAR_FORMAT,
            ascii=not self._tty,
            dynamic_ncols=self._tty,
            ncols=None if self._tty else PLAIN_COLUMNS,
            mininterval=math.inf,
            miniters=1,
            leave=True,
        )


def _is_terminal(stream: TextIO) -> bool:
    """A TTY that knows its size. One that reports 0 rows (a pseudo-terminal nobody sized,
    as `script` or a container's makes) gets plain lines: tqdm would draw nothing on it."""
    if not stream.isatty():
        return False
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return False
    return size.lines > 0 and size.columns > 0


def _label(snapshot: dict[str, Any]) -> str:
    """The phase while the run goes, its status (ready, failed) once it ended."""
    return str(snapshot.get("status") or snapshot.get("phase", "?"))


def _figures(snapshot: dict[str, Any]) -> str:
    docs = f"docs {snapshot.get('docsDone', 0)}/{snapshot.get('docsTotal', 0)}"
    failed = snapshot.get("docsFailed") or 0
    figures = [docs + (f" ({failed} failed)" if failed else "")]
    figures.append(f"{float(snapshot.get('pagesPerSecond') or 0):.1f} p/s")
    eta = snapshot.get("etaSeconds")
    if isinstance(eta, int | float) and snapshot.get("status") is None:
        figures.append(f"eta {tqdm.format_interval(eta)}")
    return ", ".join(figures)


async def show_progress(aggregator: Any, stream: TextIO | None = None) -> None:
    """Follow a run's aggregator until the run ends (then draw its last line) or this is
    cancelled (the last line shown stays); never raises into the run."""
    view = ProgressView(stream)
    ended = as_future(aggregator.ended.remote())
    redirect = logging_redirect_tqdm() if view.tty else contextlib.nullcontext()
    try:
        with redirect:  # on a TTY, log lines go above the bar, not through it
            while not ended.done():
                try:
                    view.show(await aggregator.snapshot.remote())
                except Exception:  # the aggregator is gone: the run is ending
                    return
                await asyncio.wait({ended}, timeout=REFRESH_S)
            if ended.exception() is None:
                view.close(ended.result())
    finally:
        view.close()


def progress_of(workspace: dict[str, Any] | None) -> dict[str, Any]:
    """A run's progress as MongoDB has it (for a view that follows a run it does not drive),
    labelled with the outcome once there is one."""
    workspace = workspace or {}
    progress = dict(workspace.get("indexProgress") or {})
    if workspace.get("indexStatus") in ("ready", "failed"):
        progress["status"] = workspace["indexStatus"]
    return progress
