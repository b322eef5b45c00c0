"""Parser memory over a long run: the RSS of the fetch, render and analyze actors, with and
without recycling.

    .venv/bin/python bench/parser_memory.py [--documents 500] [--pages 1] [--modes recycled,kept]
                                            [--recycle-documents N] [--recycle-rss-mb M]

Generated one-page documents (`cluster.sample_corpus` text, and on each a noise picture of
its own, as real documents carry their own images, so MuPDF's caches meet new images all
run long), indexed by `run_index` on a local Ray of 2 CPUs, once per mode, each into a
fresh in-memory MongoDB, after an untimed run of a few documents (Ray's workers and the
embed pool's model start there, not in the first mode):

- `recycled`: the settings' defaults (INDEXER_PARSER_RECYCLE_DOCUMENTS,
  INDEXER_PARSER_RECYCLE_RSS_MB), or `--recycle-documents` / `--recycle-rss-mb`;
- `kept`: recycling off: one actor per phase all run long.

The actors' RSS is read from outside, by psutil, every SAMPLE_S from the processes Ray
titles after each parser class. Printed per phase: the highest RSS in each tenth of the run
(MB; "+" where a new actor process appeared: a recycled one's replacement), the peak, and
how many actor processes the phase had.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pymupdf
import ray
from harness import actor_class, arguments, print_table, run_settings, timed_index

from cluster.ray_runtime import connect_ray
from cluster.sample_corpus import TOPICS, write_sample_pdf
from core.embedded_mongo import EmbeddedMongo
from core.settings import Settings

RAY_CPUS = 2
TENTHS = 10
WARM_UP_DOCUMENTS = 4
PICTURE_SIDE = 300
SAMPLE_S = 0.5
PHASES = {"FetchActor": "fetch", "RenderActor": "render", "AnalyzeActor": "analyze"}
MB = 1024 * 1024


def write_corpus(folder: Path, documents: int, pages: int) -> list[Path]:
    """Sample text documents, each with a noise picture of its own on its first page (noise
    neither compresses away nor repeats)."""
    folder.mkdir(parents=True, exist_ok=True)
    titles, side, paths = list(TOPICS), PICTURE_SIDE, []
    for index in range(documents):
        path = folder / f"doc-{index:04d}.pdf"
        write_sample_pdf(path, titles[index % len(titles)], pages, seed=index)
        pixels = bytearray(random.Random(index).randbytes(side * side * 3))
        with pymupdf.open(path) as document:
            picture = pymupdf.Pixmap(pymupdf.csRGB, side, side, pixels, False)
            document[0].insert_image(pymupdf.Rect(300, 600, 540, 800), pixmap=picture)
            document.saveIncr()
        paths.append(path)
    return paths


class RssSampler:
    """(seconds, phase, pid, RSS) of every parser actor process started after the `with`
    block begins, every SAMPLE_S."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, str, int, int]] = []
        self._before = set(psutil.pids())  # the parked actors of another mode are not ours
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            at = time.monotonic() - self._started
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                title = " ".join(proc.info["cmdline"] or [])
                phase = PHASES.get(actor_class(title)) if title.startswith("ray::") else None
                if phase and proc.pid not in self._before and proc.info["memory_info"]:
                    self.samples.append((at, phase, proc.pid, proc.info["memory_info"].rss))


def curve(samples: list[tuple[float, str, int, int]], phase: str, end: float) -> list[str]:
    """The highest RSS (MB) in each tenth of the run ("-": no actor up yet), "+" where a new
    process appeared; then the peak and the number of processes."""
    ours = [(at, pid, rss) for at, p, pid, rss in samples if p == phase]
    seen: set[int] = set()
    cells = []
    for tenth in range(TENTHS):
        window = [s for s in ours if tenth * end / TENTHS <= s[0] < (tenth + 1) * end / TENTHS]
        new = {pid for _, pid, _ in window} - seen
        mark = "+" if seen and new else ""
        seen |= new
        top = max((rss for *_, rss in window), default=None)
        cells.append("-" if top is None else f"{top / MB:.0f}{mark}")
    peak = max((rss for *_, rss in ours), default=0) / MB
    return [phase, *cells, f"{peak:.0f}", str(len({pid for _, pid, _ in ours}))]


def run_mode(mode: str, folder: Path, paths: list[Path], args: argparse.Namespace) -> None:
    recycled = mode == "recycled"
    with EmbeddedMongo(folder / f"mongo-{mode}", in_memory=True) as mongo:
        settings = run_settings(
            mongo.uri,
            folder,
            parser_recycle_documents=args.recycle_documents if recycled else 10**9,
            parser_recycle_rss_mb=args.recycle_rss_mb if recycled else 10**9,
        )
        with RssSampler() as sampler:
            run = timed_index(settings, paths)
    pages = run.summary.pages
    print(
        f"\n[{mode}] {pages} pages in {run.seconds:.0f} s ({pages / run.seconds:.1f} pages/s), "
        f"other load {run.cpu.foreign_load():.0%}; RSS of the parser actors, MB\n"
    )
    header = ["phase", *(f"{n}/10" for n in range(1, TENTHS + 1)), "peak", "actors"]
    print_table(header, [curve(sampler.samples, p, run.seconds) for p in PHASES.values()])


def main() -> None:
    defaults = Settings()
    parser = arguments(__doc__)
    parser.add_argument("--documents", type=int, default=500)
    parser.add_argument("--pages", type=int, default=1, help="pages per document")
    parser.add_argument("--modes", default="recycled,kept", help="recycled, kept, or both")
    parser.add_argument("--recycle-documents", type=int, default=defaults.parser_recycle_documents)
    parser.add_argument("--recycle-rss-mb", type=int, default=defaults.parser_recycle_rss_mb)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-parser-memory-") as tmp:
        folder = Path(tmp)
        paths = write_corpus(folder / "corpus", args.documents, args.pages)
        connect_ray(None, num_cpus=RAY_CPUS)
        try:
            with EmbeddedMongo(folder / "mongo-warm-up", in_memory=True) as mongo:
                timed_index(run_settings(mongo.uri, folder), paths[:WARM_UP_DOCUMENTS])
            for mode in (m.strip() for m in args.modes.split(",") if m.strip()):
                run_mode(mode, folder, paths, args)
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
