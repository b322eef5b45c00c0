"""Reading order, headings and chunk windows on real PyMuPDF output."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pymupdf

from actors.layout import (
    CHUNK_OVERLAP_WORDS,
    CHUNK_WORDS,
    CHUNKS_PER_PAGE_LIMIT,
    blocks_from_dict,
    chunk_page,
    page_text,
)

ROOT = Path(__file__).resolve().parents[1]


def two_column_page() -> dict:
    document = pymupdf.open()
    page = document.new_page(width=600, height=800)
    page.insert_text((50, 60), "Main Title", fontsize=24)
    page.insert_textbox(pymupdf.Rect(50, 100, 280, 400), "Left column first. " * 10, fontsize=10)
    page.insert_textbox(pymupdf.Rect(320, 100, 550, 400), "Right column second. " * 10, fontsize=10)
    page.insert_textbox(
        pymupdf.Rect(50, 450, 550, 700), "Footer paragraph wide. " * 20, fontsize=10
    )
    return page.get_text("dict")


def test_reading_order_columns_then_full_width() -> None:
    blocks = blocks_from_dict(two_column_page())
    texts = [b.text for b in blocks]
    assert texts[0] == "Main Title"
    assert texts[1].startswith("Left column")
    assert texts[2].startswith("Right column")
    assert texts[3].startswith("Footer paragraph")
    assert [b.order for b in blocks] == list(range(len(blocks)))
    assert blocks[0].heading
    assert not any(b.heading for b in blocks[1:])
    assert all(b.bbox[2] > b.bbox[0] for b in blocks)


def test_chunks_cover_text_with_overlap_and_offsets() -> None:
    words = [f"w{i}" for i in range(1000)]
    text = " ".join(words)
    chunks = chunk_page(text, page_no=3)
    assert chunks[0].chunk_no == 3 * CHUNKS_PER_PAGE_LIMIT
    assert [c.chunk_no for c in chunks] == list(
        range(chunks[0].chunk_no, chunks[0].chunk_no + len(chunks))
    )
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert len(chunk.text.split()) <= CHUNK_WORDS + 60
    for first, second in itertools.pairwise(chunks):
        overlap = set(first.text.split()) & set(second.text.split())
        assert len(overlap) == CHUNK_OVERLAP_WORDS
    covered = set()
    for chunk in chunks:
        covered.update(chunk.text.split())
    assert covered == set(words)


def test_short_and_empty_pages() -> None:
    assert chunk_page("", 0) == []
    assert chunk_page("   \n ", 0) == []
    single = chunk_page("just a few words here", 2)
    assert len(single) == 1
    assert single[0].text == "just a few words here"


def test_page_text_joins_blocks() -> None:
    blocks = blocks_from_dict(two_column_page())
    text = page_text(blocks)
    assert text.index("Left column") < text.index("Right column") < text.index("Footer")


def test_pymupdf_loads_without_its_add_ons() -> None:
    """Every parser process imports PyMuPDF as it starts: its optional add-ons (layout,
    pymupdf4llm, and onnxruntime through them) stay out, and PyMuPDF still works."""
    probe = (
        "import sys; from core.pdf import load_pymupdf; pymupdf = load_pymupdf(); "
        "doc = pymupdf.open(); doc.new_page().insert_text((72, 72), 'hello'); "
        "assert 'hello' in doc[0].get_text(); "
        "print(sorted(m for m in ('pymupdf.layout', 'pymupdf4llm', 'onnxruntime') "
        "if sys.modules.get(m) is not None))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
