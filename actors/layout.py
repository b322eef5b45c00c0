"""Page layout and chunking: pure functions over PyMuPDF's text dictionary, no Ray, no I/O.

Kept apart from the actor so the rules (reading order, headings, chunk windows) are testable
on their own and the same in every process.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

# Chunks hold 120-200 words: about 160-260 word-piece tokens for English text, the window of
# all-MiniLM-L6-v2 (256 tokens), with an overlap so no sentence is only ever cut in half.
CHUNK_WORDS = 180
CHUNK_OVERLAP_WORDS = 30
MIN_LAST_CHUNK_WORDS = 60
HEADING_SIZE_RATIO = 1.2
HEADING_MAX_WORDS = 16
BOLD_FLAG = 16
# Chunk numbers are page * this + index: unique per document and stable across runs.
CHUNKS_PER_PAGE_LIMIT = 10_000


@dataclass(frozen=True)
class TextBlock:
    """One block of text with its bounding box (points) and whether it reads as a heading."""

    text: str
    bbox: tuple[float, float, float, float]
    font_size: float
    heading: bool
    order: int

    def as_document(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "bbox": [round(v, 2) for v in self.bbox],
            "fontSize": round(self.font_size, 2),
            "heading": self.heading,
            "order": self.order,
        }


@dataclass(frozen=True)
class Chunk:
    """A window of a page's text; `start`/`end` are character offsets into the page text."""

    chunk_no: int
    page_no: int
    text: str
    start: int
    end: int


def blocks_from_dict(text_dict: dict[str, Any]) -> list[TextBlock]:
    """Text blocks of one page in reading order, headings marked.

    Reading order: blocks of a column (a block narrower than ~60% of the page, left of the
    middle or right of it) read top to bottom, left column first; full-width blocks break
    the columns (a heading or a figure caption across the page).
    """
    width = float(text_dict.get("width") or 1.0)
    raw = [_block_text(b) for b in text_dict.get("blocks", []) if b.get("type", 0) == 0]
    raw = [r for r in raw if r[0].strip()]
    if not raw:
        return []
    body_size = statistics.median(size for _, _, size, _ in raw)
    ordered = _reading_order(raw, width)
    return [
        TextBlock(
            text=text,
            bbox=bbox,
            font_size=size,
            heading=_is_heading(text, size, bold, body_size),
            order=index,
        )
        for index, (text, bbox, size, bold) in enumerate(ordered)
    ]


_RawBlock = tuple[str, tuple[float, float, float, float], float, bool]


def _block_text(block: dict[str, Any]) -> _RawBlock:
    lines: list[str] = []
    sizes: list[float] = []
    bold = True
    for line in block.get("lines", []):
        spans = line.get("spans", [])
        lines.append("".join(span.get("text", "") for span in spans).strip())
        for span in spans:
            if span.get("text", "").strip():
                sizes.append(float(span.get("size", 0.0)))
                bold = bold and bool(int(span.get("flags", 0)) & BOLD_FLAG)
    text = " ".join(line for line in lines if line)
    x0, y0, x1, y1 = (float(v) for v in block.get("bbox", (0, 0, 0, 0)))
    size = max(sizes) if sizes else 0.0
    return text, (x0, y0, x1, y1), size, bold and bool(sizes)


def _reading_order(blocks: list[_RawBlock], width: float) -> list[_RawBlock]:
    """Top to bottom; between full-width blocks, the left column before the right one."""
    ordered: list[_RawBlock] = []
    band: list[_RawBlock] = []

    def flush() -> None:
        band.sort(key=lambda b: (_column(b[1], width), b[1][1], b[1][0]))
        ordered.extend(band)
        band.clear()

    for block in sorted(blocks, key=lambda b: (b[1][1], b[1][0])):
        x0, _, x1, _ = block[1]
        if (x1 - x0) > 0.6 * width:
            flush()
            ordered.append(block)
        else:
            band.append(block)
    flush()
    return ordered


def _column(bbox: tuple[float, float, float, float], width: float) -> int:
    return 0 if (bbox[0] + bbox[2]) / 2 < width / 2 else 1


def _is_heading(text: str, size: float, bold: bool, body_size: float) -> bool:
    if len(text.split()) > HEADING_MAX_WORDS:
        return False
    return size >= HEADING_SIZE_RATIO * body_size or bold


def page_text(blocks: list[TextBlock]) -> str:
    """The page's text in reading order, one block per paragraph."""
    return "\n\n".join(block.text for block in blocks)


def chunk_page(text: str, page_no: int) -> list[Chunk]:
    """Overlapping word windows over one page's text, with character offsets.

    A short tail is merged into the previous window rather than left as a tiny chunk.
    """
    spans = _word_spans(text)
    if not spans:
        return []
    step = CHUNK_WORDS - CHUNK_OVERLAP_WORDS
    starts = list(range(0, max(len(spans) - CHUNK_OVERLAP_WORDS, 1), step))
    if len(starts) > 1 and len(spans) - starts[-1] < MIN_LAST_CHUNK_WORDS:
        starts.pop()
    chunks: list[Chunk] = []
    for index, first in enumerate(starts):
        last = len(spans) if index == len(starts) - 1 else min(first + CHUNK_WORDS, len(spans))
        start, end = spans[first][0], spans[last - 1][1]
        chunks.append(
            Chunk(
                chunk_no=page_no * CHUNKS_PER_PAGE_LIMIT + index,
                page_no=page_no,
                text=text[start:end],
                start=start,
                end=end,
            )
        )
    return chunks


def _word_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = None
    for position, char in enumerate(text):
        if char.isspace():
            if start is not None:
                spans.append((start, position))
                start = None
        elif start is None:
            start = position
    if start is not None:
        spans.append((start, len(text)))
    return spans
