"""The terminal view of a run: a redrawn bar on a TTY, plain lines otherwise."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

BAR_WIDTH = 30
REFRESH_S = 0.5
PLAIN_LINE_EVERY_S = 5.0


def format_progress(snapshot: dict[str, Any]) -> str:
    done, total = snapshot.get("pagesDone", 0), snapshot.get("pagesTotal", 0)
    filled = int(BAR_WIDTH * done / total) if total else 0
    eta = snapshot.get("etaSeconds")
    return (
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {snapshot.get('phase', '?'):<8} "
        f"pages {done}/{total}  docs {snapshot.get('docsDone', 0)}/{snapshot.get('docsTotal', 0)}"
        f"  {snapshot.get('pagesPerSecond', 0):.1f} p/s"
        + (f"  eta {eta:.0f}s" if isinstance(eta, int | float) else "")
    )


async def show_progress(aggregator: Any, stream: TextIO = sys.stderr) -> None:
    """Poll the aggregator until cancelled; never raises into the run."""
    tty = stream.isatty()
    last_line, last_plain = "", 0.0
    while True:
        try:
            snapshot = await aggregator.snapshot.remote()
        except Exception:  # the aggregator is gone: the run is ending
            return
        line = format_progress(snapshot)
        now = time.monotonic()
        if tty:
            stream.write("\r" + line)
            stream.flush()
        elif line != last_line and now - last_plain >= PLAIN_LINE_EVERY_S:
            stream.write(line + "\n")
            last_plain = now
        last_line = line
        await asyncio.sleep(REFRESH_S)
