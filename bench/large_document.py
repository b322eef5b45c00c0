"""A 1,000-page PDF among small ones: does it serialize the run?

    .venv/bin/python bench/large_document.py [--large-pages 1000] [--small 20] [--small-pages 10]

One large generated PDF (`cluster.sample_corpus`) and `--small` small ones, indexed by
`run_index` on a local Ray of 2 CPUs into new workspaces of one in-memory database, after
an untimed run of one small document (the embed pool up, parser actors parked, as on a
cluster that is up): the large document with the small ones ("mixed"), then the small ones
alone.

Printed: each run's time and pages/s, the ideal time of the mixed run (the CPU seconds
this benchmark's processes spent during it ÷ the cores: a perfect schedule of the same
work), and when each document of the mixed run finished (its `indexedAt`). Run time / ideal
near 1 says the large document did not serialize the run; the small documents finishing
early says they were not held up behind it.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import ray
from harness import TimedRun, arguments, print_table, run_settings, timed_index

from cluster.ray_runtime import connect_ray
from cluster.sample_corpus import TOPICS, write_sample_pdf, write_sample_workspace
from core.db import open_client
from core.embedded_mongo import EmbeddedMongo
from core.settings import Settings

RAY_CPUS = 2


async def finish_times(settings: Settings, run: TimedRun, started_at: float) -> list[list[str]]:
    """(file, pages, seconds from the run's start to `indexedAt`) of the run's documents,
    earliest first."""
    client = open_client(settings.mongodb_uri.reveal())  # type: ignore[union-attr]
    try:
        documents = client[settings.mongodb_db].documents.find(
            {"workspaceId": run.workspace_id}, {"filename": 1, "pageCount": 1, "indexedAt": 1}
        )
        rows = [(d["indexedAt"].timestamp() - started_at, d) async for d in documents]
    finally:
        await client.close()
    return [
        [d["filename"], d["pageCount"], f"{at:.1f}"] for at, d in sorted(rows, key=lambda r: r[0])
    ]


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--large-pages", type=int, default=1000)
    parser.add_argument("--small", type=int, default=20, help="small PDFs")
    parser.add_argument("--small-pages", type=int, default=10, help="pages per small PDF")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        folder = Path(tmp)
        small = write_sample_workspace(
            folder / "small", documents=args.small, pages_each=args.small_pages
        )
        large = folder / "large.pdf"
        write_sample_pdf(large, next(iter(TOPICS)), args.large_pages, seed=1000)
        with EmbeddedMongo(folder / "mongo", in_memory=True) as mongo:
            connect_ray(None, num_cpus=RAY_CPUS)
            try:
                settings = run_settings(mongo.uri, folder)
                timed_index(settings, small[:1])  # untimed: the embed pool, parked parsers
                started_at = time.time()
                mixed = timed_index(settings, [*small, large])
                finished = asyncio.run(finish_times(settings, mixed, started_at))
                alone = timed_index(settings, small)
            finally:
                ray.shutdown()
    header = ["run", "pages", "seconds", "pages/s", "ideal s", "run / ideal", "other load"]
    print_table(header, [row("mixed", mixed), row("small ones alone", alone)])
    print("\nthe mixed run's documents:\n")
    print_table(["document", "pages", "finished at s"], finished)


def row(what: str, run: TimedRun) -> list[object]:
    ideal = run.cpu.own_cpu() / RAY_CPUS
    rate = run.summary.pages / run.seconds
    return [
        what,
        run.summary.pages,
        f"{run.seconds:.1f}",
        f"{rate:.2f}",
        f"{ideal:.1f}",
        f"{run.seconds / ideal:.2f}",
        f"{run.cpu.foreign_load():.0%}",
    ]


if __name__ == "__main__":
    main()
