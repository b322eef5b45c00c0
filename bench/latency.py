"""Start → ready for a small workspace: what a person pressing Start feels.

    .venv/bin/python bench/latency.py [--runs 5]

One `indexer head` on the embedded defaults (its own MongoDB and Ray, INDEXER_WARM on, a
data directory of its own). Once it reports ready: for a 1-page and a 10-page excerpt of
a LaTeX package's manual (tabularx), runs 1..N each on a fresh workspace:
`POST /api/workspaces/{id}/index` with the owner's cookie, timed until the room (a
Socket.IO client joined beforehand) gets `index:started` and `index:ready`. Beside it, the
same work by a plain script in this process with its model loaded: open, render a PNG of
each page, text layout, chunks, vectors; nothing stored. Prints each run, the medians of
runs 2..N, and head / plain.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from harness import (
    HeadProcess,
    RoomClient,
    arguments,
    latex_manual,
    median,
    new_workspace,
    other_load,
    plain_work,
    print_table,
)

from core.embedded_mongo import EmbeddedMongo
from core.embedding import load_model, resolve_precision
from core.settings import Settings

SIZES = (1, 10)
EVENT_TIMEOUT_S = 120.0


async def timed_start(head: HeadProcess, workspace_id: str) -> tuple[float, float]:
    """(Start → index:started, Start → index:ready) in seconds."""
    events: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
    client = RoomClient(head.url)

    @client.sio.on("*")
    async def any_event(event: str, data: Any = None) -> None:
        await events.put((event, time.monotonic()))

    if not await client.connect(head.cookie()) or await client.join(workspace_id) is None:
        raise RuntimeError(f"could not join the room of {workspace_id}")
    try:
        async with httpx.AsyncClient(base_url=head.url) as http:
            started = time.monotonic()
            answer = await http.post(
                f"/api/workspaces/{workspace_id}/index",
                headers={"Cookie": head.cookie(), "Content-Type": "application/json"},
                content="{}",
            )
        answer.raise_for_status()
        times: dict[str, float] = {}
        while "index:ready" not in times:
            event, at = await asyncio.wait_for(events.get(), EVENT_TIMEOUT_S)
            if event == "index:failed":
                raise RuntimeError(f"run of {workspace_id} failed")
            times.setdefault(event, at)
        return times["index:started"] - started, times["index:ready"] - started
    finally:
        await client.disconnect()


def plain_seconds(pdfs: dict[int, Path], runs: int) -> dict[int, list[float]]:
    model = load_model(Settings().embed_model, "cpu")
    precision = resolve_precision(Settings().embed_precision, "cpu")
    plain_work(pdfs[1], model, dpi=Settings().render_dpi, precision=precision)  # warm-up
    seconds: dict[int, list[float]] = {}
    for pages, pdf in pdfs.items():
        for _ in range(runs):
            started = time.monotonic()
            plain_work(pdf, model, dpi=Settings().render_dpi, precision=precision)
            seconds.setdefault(pages, []).append(time.monotonic() - started)
    return seconds


async def head_seconds(
    head: HeadProcess, pdfs: dict[int, Path], runs: int
) -> dict[int, list[tuple[float, float]]]:
    with EmbeddedMongo(head.data_dir / "mongo") as mongo:  # the head's server, reused
        results: dict[int, list[tuple[float, float]]] = {}
        for pages, pdf in pdfs.items():
            for _ in range(runs):
                workspace_id = await new_workspace(mongo.uri, "indexer", [pdf])
                results.setdefault(pages, []).append(await timed_start(head, workspace_id))
        return results


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    folder = Path(tempfile.gettempdir()) / "bench-pdfs"
    pdfs = {pages: latex_manual(folder, pages) for pages in SIZES}
    print(f"other load before: {other_load():.0%} of the CPUs")
    head = HeadProcess.start(work / "data")
    try:
        warm_s = head.wait_ready()
        print(f"head start → ready (runs warm): {warm_s:.1f} s")
        runs = asyncio.run(head_seconds(head, pdfs, args.runs))
    finally:
        head.stop()
    plain = plain_seconds(pdfs, args.runs)
    print(f"other load after: {other_load():.0%}")
    rows = []
    for pages in SIZES:
        for run, (started, ready) in enumerate(runs[pages], 1):
            rows.append([f"{pages} p", run, f"{started * 1000:.0f} ms", f"{ready:.2f} s", ""])
        warm = median([ready for _, ready in runs[pages][1:]])
        plain_median = median(plain[pages])
        rows.append(
            [
                f"{pages} p",
                "median 2..",
                "",
                f"**{warm:.2f} s**",
                f"plain {plain_median:.2f} s, head/plain **{warm / plain_median:.1f}**",
            ]
        )
    print_table(["PDF", "run", "Start → started", "Start → ready", "beside"], rows)


if __name__ == "__main__":
    main()
