"""Analyze phase: text blocks with bounding boxes, reading order, headings, and chunks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from actors.layout import (
    Chunk,
    TextBlock,
    blocks_from_dict,
    chunk_page,
    page_text,
)
from actors.pdf import OpenDocuments
from actors.supervised_actor import SupervisedActor, supervised_remote
from actors.telemetry import PipelineMetrics
from core.db import Document, LazyDatabase
from core.errors import DocumentError
from core.settings import Settings

# Text extraction flags: keep ligatures and whitespace as is, drop images from the dict.
TEXT_FLAGS = 0
# A dense real page holds about 10,000 characters. A few KB of PDF can draw millions of
# glyphs: past this a page is refused, which also keeps its chunks under
# CHUNKS_PER_PAGE_LIMIT (chunk numbers would run into the next page's) and its MongoDB
# document far under the 16 MB BSON limit.
MAX_PAGE_TEXT_CHARS = 1_000_000


@supervised_remote(num_cpus=0.5)
class AnalyzeActor(SupervisedActor):
    """Analyze phase. Resources: half a CPU, and INDEXER_PARSER_MEMORY_MB of allocations.
    Concurrency: one call at a time. Retries: replaced and retried by its SupervisedPool
    (not by Ray, see actors/supervised_pool.py). Writes nothing: the embed phase stores what it
    returns (idempotency keys there: `actors.store`); chunkNo = page * 10,000 + index on the
    page."""

    def __init__(self, settings: Settings, aggregator: Any) -> None:
        self._supervise(settings, aggregator)
        self._db = LazyDatabase(settings.mongodb_uri.reveal(), settings.mongodb_db)  # type: ignore[union-attr]
        self._documents = OpenDocuments()
        self._metrics = PipelineMetrics()

    async def analyze(
        self,
        workspace_id: str,
        document_id: str,
        gridfs_id: str,
        sha256: str,
        page_nos: list[int],
        rendered: dict[int, dict[str, Any]],
    ) -> dict[str, list[Document]]:
        """The batch's page documents (layout, text, with the render phase's fields from
        `rendered`, by page) and chunk documents, for the embed phase to store with their
        vectors (`actors.store`): nothing is written here, so each page and chunk is
        written once."""
        started = time.monotonic()
        document = await self._documents.get(self._db.get(), gridfs_id)
        analyzed = [self._page(document, page_no) for page_no in page_nos]
        stamp = {"documentId": document_id, "workspaceId": workspace_id, "sha256": sha256}
        pages = [_page_document(stamp, page, rendered[page.page_no]) for page in analyzed]
        chunks = [
            _chunk_document(stamp, page.page_no, chunk)
            for page in analyzed
            for chunk in page.chunks
        ]
        self._aggregator.record.remote("analyze", document_id, page_nos)
        self._metrics.phase_done("analyze", len(page_nos), time.monotonic() - started)
        return {"pages": pages, "chunks": chunks}

    def _page(self, document: Any, page_no: int) -> AnalyzedPage:
        blocks = self._blocks(document, page_no)
        text = page_text(blocks)
        if len(text) > MAX_PAGE_TEXT_CHARS:
            raise DocumentError(
                "analyze",
                f"page {page_no + 1}: {len(text):,} characters of text; "
                f"the limit is {MAX_PAGE_TEXT_CHARS:,} a page",
            )
        return AnalyzedPage(page_no, blocks, text, chunk_page(text, page_no))

    def _blocks(self, document: Any, page_no: int) -> list[TextBlock]:
        """The page's text blocks; MuPDF raises more than RuntimeError (FzErrorLimit for a
        stack overflow, FzErrorSystem or MemoryError past the memory cap)."""
        try:
            return blocks_from_dict(document[page_no].get_text("dict", flags=TEXT_FLAGS))
        except Exception as exc:
            raise self.parse_error("analyze", f"page {page_no + 1}", exc) from None


@dataclass(frozen=True)
class AnalyzedPage:
    """One page's layout and chunks, between parsing and writing."""

    page_no: int
    blocks: list[TextBlock]
    text: str
    chunks: list[Chunk]


def _page_document(stamp: dict[str, str], page: AnalyzedPage, rendered: dict[str, Any]) -> Document:
    return {
        **stamp,
        **rendered,
        "pageNo": page.page_no,
        "text": page.text,
        "blocks": [b.as_document() for b in page.blocks],
        "headings": [b.text for b in page.blocks if b.heading],
        "chunkCount": len(page.chunks),
        "analyzedAt": datetime.now(UTC),
    }


def _chunk_document(stamp: dict[str, str], page_no: int, chunk: Chunk) -> Document:
    return {
        **stamp,
        "chunkNo": chunk.chunk_no,
        "pageNo": page_no,
        "pages": [page_no],
        "start": chunk.start,
        "end": chunk.end,
        "text": chunk.text,
    }
