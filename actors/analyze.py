"""Analyze phase: text blocks with bounding boxes, reading order, headings, and chunks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import DeleteMany, UpdateOne

from actors.layout import (
    CHUNKS_PER_PAGE_LIMIT,
    Chunk,
    TextBlock,
    blocks_from_dict,
    chunk_page,
    page_text,
)
from actors.pdf import OpenDocuments
from actors.supervision import SupervisedActor, supervised_remote
from actors.telemetry import PipelineMetrics
from core.db import LazyDatabase, retried_once
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
    (not by Ray, see actors/supervision.py). Idempotency key: (document, page) for pages and
    (document, chunkNo) for chunks, where chunkNo = page * 10,000 + index on the page."""

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
    ) -> list[dict[str, Any]]:
        """Write pages' layout, with the render phase's fields (`rendered`, by page), and
        chunks; return the chunks to embed.

        The batch is parsed first, then written in three round trips (stale chunk tails,
        pages, chunks: a chunk never exists without its page), not three per page.
        """
        started = time.monotonic()
        db = self._db.get()
        document = await self._documents.get(db, gridfs_id)
        pages = [self._page(document, page_no) for page_no in page_nos]
        stamp = {"workspaceId": workspace_id, "sha256": sha256}
        # A re-analysis that yields fewer chunks must not leave the old tail behind.
        # One range per page, each answered from the (documentId, chunkNo) index; an `$or`
        # of them made SecantusDB scan every chunk of the collection, each batch.
        stale_tails = [_stale_tail(document_id, p) for p in pages]
        await retried_once(lambda: db.chunks.bulk_write(stale_tails, ordered=False))
        await db.pages.bulk_write(
            [_page_write(document_id, stamp, page, rendered[page.page_no]) for page in pages],
            ordered=False,
        )
        chunk_writes = [
            _chunk_write(document_id, stamp, page.page_no, chunk)
            for page in pages
            for chunk in page.chunks
        ]
        if chunk_writes:
            await db.chunks.bulk_write(chunk_writes, ordered=False)
        self._aggregator.record.remote("analyze", document_id, page_nos)
        self._metrics.phase_done("analyze", len(page_nos), time.monotonic() - started)
        return [
            {"documentId": document_id, "chunkNo": chunk.chunk_no, "text": chunk.text}
            for page in pages
            for chunk in page.chunks
        ]

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


def _stale_tail(document_id: str, page: AnalyzedPage) -> DeleteMany:
    """Delete the page's chunks past its new last chunk."""
    first = page.page_no * CHUNKS_PER_PAGE_LIMIT
    after_last = {"$gte": first + len(page.chunks), "$lt": first + CHUNKS_PER_PAGE_LIMIT}
    return DeleteMany({"documentId": document_id, "chunkNo": after_last})


def _page_write(
    document_id: str, stamp: dict[str, str], page: AnalyzedPage, rendered: dict[str, Any]
) -> UpdateOne:
    return UpdateOne(
        {"documentId": document_id, "pageNo": page.page_no},
        {
            "$set": {
                **stamp,
                **rendered,
                "text": page.text,
                "blocks": [b.as_document() for b in page.blocks],
                "headings": [b.text for b in page.blocks if b.heading],
                "chunkCount": len(page.chunks),
                "analyzedAt": datetime.now(UTC),
            },
            "$setOnInsert": {"done": False},
        },
        upsert=True,
    )


def _chunk_write(document_id: str, stamp: dict[str, str], page_no: int, chunk: Chunk) -> UpdateOne:
    return UpdateOne(
        {"documentId": document_id, "chunkNo": chunk.chunk_no},
        {
            "$set": {
                **stamp,
                "pageNo": page_no,
                "pages": [page_no],
                "start": chunk.start,
                "end": chunk.end,
                "text": chunk.text,
            }
        },
        upsert=True,
    )
