"""A generated sample workspace for the demo and the tests: real PDFs with headings,
two-column pages and paragraphs, written by PyMuPDF, deterministic for a seed."""

from __future__ import annotations

import random
from pathlib import Path

from core.pdf import load_pymupdf

TOPICS = {
    "Ray cluster operations": [
        "autoscaler",
        "worker node",
        "head node",
        "placement group",
        "object store",
        "actor pool",
        "resource request",
        "dashboard",
    ],
    "Document indexing": [
        "text extraction",
        "page layout",
        "reading order",
        "bounding box",
        "chunk overlap",
        "embedding model",
        "vector search",
        "heading",
    ],
    "Realtime progress": [
        "socket connection",
        "workspace room",
        "progress event",
        "reconnect logic",
        "session cookie",
        "throttle interval",
        "redis adapter",
        "browser client",
    ],
    "Storage engines": [
        "write-ahead log",
        "b-tree index",
        "document store",
        "replica set",
        "change stream",
        "durable write",
        "compaction",
        "checkpoint",
    ],
}
VERBS = [
    "improves",
    "depends on",
    "is measured by",
    "replaces",
    "is limited by",
    "feeds",
    "schedules",
    "stores",
    "reports",
    "validates",
    "streams",
    "balances",
]
QUALIFIERS = [
    "under load",
    "after a restart",
    "on every node",
    "for large workspaces",
    "in the common case",
    "when the cluster scales",
    "during a rolling upgrade",
]


def _sentence(rng: random.Random, terms: list[str]) -> str:
    a, b = rng.sample(terms, 2)
    sentence = f"The {a} {rng.choice(VERBS)} the {b} {rng.choice(QUALIFIERS)}."
    return sentence[0].upper() + sentence[1:]


def _paragraph(rng: random.Random, terms: list[str]) -> str:
    return " ".join(_sentence(rng, terms) for _ in range(rng.randint(4, 7)))


def write_sample_pdf(path: Path, title: str, pages: int, seed: int) -> None:
    """One PDF of `pages` pages about `title`; odd pages are set in two columns."""
    pymupdf = load_pymupdf()

    rng = random.Random(seed)
    terms = TOPICS[title]
    document = pymupdf.open()
    for page_no in range(pages):
        page = document.new_page(width=595, height=842)
        page.insert_text((56, 70), f"{title} — part {page_no + 1}", fontsize=18, fontname="hebo")
        columns = [pymupdf.Rect(56, 100, 290, 800), pymupdf.Rect(305, 100, 540, 800)]
        if page_no % 2 == 0:
            columns = [pymupdf.Rect(56, 100, 540, 800)]
        for rect in columns:
            text = "\n\n".join(_paragraph(rng, terms) for _ in range(3))
            page.insert_textbox(rect, text, fontsize=10, fontname="helv")
    document.save(path)
    document.close()


def write_sample_workspace(folder: Path, *, documents: int = 6, pages_each: int = 6) -> list[Path]:
    """`documents` PDFs (a few dozen pages in all) in `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    titles = list(TOPICS)
    paths: list[Path] = []
    for index in range(documents):
        path = folder / f"sample-{index + 1:02d}.pdf"
        if not path.exists():
            write_sample_pdf(path, titles[index % len(titles)], pages_each + index % 3, index)
        paths.append(path)
    return paths
