"""Parser memory over a long run: the RSS of the fetch, render and analyze actors, with and
without recycling.

Run from the repository root:

    .venv/bin/python bench/parser_memory.py [--documents 500] [--pages 1] [--modes recycled,kept]

One generated corpus (`cluster.sample_corpus` text pages; each document also carries a
picture of its own, as real documents do, so MuPDF's caches see new images all run long)
is indexed by `run_index` on a local Ray (`connect_ray(None, num_cpus=2)`) into an
in-memory EmbeddedMongo (a fresh server per mode), once per mode, after an untimed warm-up
run of 4 documents (Ray's workers and the embed pool's model start there, not in the first
mode):

- `recycled`: the settings' defaults (INDEXER_PARSER_RECYCLE_DOCUMENTS=100,
  INDEXER_PARSER_RECYCLE_RSS_MB=1024), or `--recycle-documents` / `--recycle-rss-mb`;
- `kept`: recycling off (both thresholds out of reach): one actor per phase all run long.

Every parser call reports its actor's RSS with its result (`SupervisedActor.measured`); the
pool keeps (time, actor, RSS) after each call. The curve printed is the RSS of the actor
that served each tenth of the run's calls (MB, the highest in that tenth), then the peak,
the last value and the actors the pool started. "+" marks a tenth in which an actor was
recycled.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from pipeline import bench_settings, prepare_workspace

from actors.memory import MIB
from actors.supervision import SupervisedPool
from cluster.driver import RunActors, RunSummary, run_index
from cluster.ray_runtime import connect_ray
from cluster.sample_corpus import TOPICS, write_sample_pdf
from core.embedded_mongo import EmbeddedMongo
from core.settings import Settings

RAY_CPUS = 2
CURVE_POINTS = 10
WARM_UP_DOCUMENTS = 4
PICTURE_SIDE = 300


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=500)
    parser.add_argument("--pages", type=int, default=1, help="pages per document")
    parser.add_argument("--modes", default="recycled,kept", help="recycled, kept, or both")
    defaults = Settings()
    parser.add_argument("--recycle-documents", type=int, default=defaults.parser_recycle_documents)
    parser.add_argument("--recycle-rss-mb", type=int, default=defaults.parser_recycle_rss_mb)
    return parser.parse_args()


def write_corpus(folder: Path, documents: int, pages: int) -> list[Path]:
    """Sample text documents, each with a picture of its own on its first page."""
    import pymupdf

    folder.mkdir(parents=True, exist_ok=True)
    titles = list(TOPICS)
    paths = []
    for index in range(documents):
        path = folder / f"doc-{index:04d}.pdf"
        write_sample_pdf(path, titles[index % len(titles)], pages, seed=index)
        document = pymupdf.open(path)
        page = document[0]
        picture = _picture(random.Random(index))
        page.insert_image(pymupdf.Rect(300, 600, 540, 800), pixmap=picture)
        document.saveIncr()
        document.close()
        paths.append(path)
    return paths


def _picture(rng: random.Random) -> Any:
    """A photo-like RGB picture: noise, so it neither compresses away nor repeats."""
    import pymupdf

    side = PICTURE_SIDE
    return pymupdf.Pixmap(
        pymupdf.csRGB, side, side, bytearray(rng.randbytes(side * side * 3)), False
    )


def mode_settings(mode: str, mongo_uri: str, data_dir: Path, args: argparse.Namespace) -> Settings:
    """`bench_settings` (progress events dropped), with recycling on or off."""
    recycled = mode == "recycled"
    return bench_settings(mongo_uri, data_dir).with_overrides(
        parser_recycle_documents=args.recycle_documents if recycled else 10**9,
        parser_recycle_rss_mb=args.recycle_rss_mb if recycled else 10**9,
    )


@dataclass
class ModeResult:
    mode: str
    summary: RunSummary
    seconds: float
    pools: RunActors


async def run_mode(
    mode: str, mongo_uri: str, data_dir: Path, paths: list[Path], args: Any
) -> ModeResult:
    settings = mode_settings(mode, mongo_uri, data_dir, args)
    workspace_id = await prepare_workspace(settings, paths)
    started: list[RunActors] = []
    clock = time.monotonic()
    summary = await run_index(settings, workspace_id, on_start=started.append)
    seconds = time.monotonic() - clock
    if summary.status != "succeeded" or summary.failed_documents:
        raise RuntimeError(f"run {summary.status}: {summary.error} {summary.failed_documents}")
    return ModeResult(mode, summary, seconds, started[0])


def curve(pool: SupervisedPool) -> str:
    """RSS (MB) of the actor serving each tenth of the calls, then peak, last, actors."""
    history = list(pool.history)
    if not history:
        return "no calls"
    recycled_at = [r.at for r in pool.recycles]
    points = []
    since = float("-inf")
    for tenth in range(CURVE_POINTS):
        lo = tenth * len(history) // CURVE_POINTS
        hi = max(lo + 1, (tenth + 1) * len(history) // CURVE_POINTS)
        window = history[lo:hi]
        until = window[-1][0]
        mark = "+" if any(since < at <= until for at in recycled_at) else " "
        since = until
        points.append(f"{max(rss for _, _, rss in window) / MIB:5.0f}{mark}")
    peak = max(rss for _, _, rss in history) / MIB
    return (
        f"{''.join(points)} | peak {peak:4.0f}  last {history[-1][2] / MIB:4.0f}"
        f"  actors {pool.started}  calls {len(history)}"
    )


def report(result: ModeResult) -> None:
    """One mode's curves, printed as soon as its run ends."""
    pages = result.summary.pages
    print(
        f"\n[{result.mode}] {result.summary.documents} documents, {pages} pages in "
        f"{result.seconds:.0f} s ({pages / result.seconds:.1f} pages/s); RSS of the parser "
        f"actors, MB, per tenth of each pool's calls",
        flush=True,
    )
    for pool in (result.pools.fetch, result.pools.render, result.pools.analyze):
        reasons = ", ".join(sorted({r.reason for r in pool.recycles}))
        why = f" recycled {len(pool.recycles)}x ({reasons})" if reasons else ""
        print(f"  {pool.phase:8} {curve(pool)}{why}", flush=True)


def main() -> None:
    args = parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-parser-memory-") as tmp:
        folder = Path(tmp)
        clock = time.monotonic()
        paths = write_corpus(folder / "corpus", args.documents, args.pages)
        seconds = time.monotonic() - clock
        print(f"corpus: {len(paths)} documents x {args.pages} pages in {seconds:.0f} s", flush=True)
        connect_ray(None, num_cpus=RAY_CPUS)
        try:
            # Untimed: starts Ray's workers and the embed pool (the model), which the first
            # measured mode would otherwise pay alone.
            with EmbeddedMongo(folder / "mongo-warm-up", in_memory=True) as mongo:
                asyncio.run(run_mode("kept", mongo.uri, folder, paths[:WARM_UP_DOCUMENTS], args))
            for mode in modes:  # a server per mode: the modes do not share a database
                with EmbeddedMongo(folder / f"mongo-{mode}", in_memory=True) as mongo:
                    report(asyncio.run(run_mode(mode, mongo.uri, folder, paths, args)))
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
