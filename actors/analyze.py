"""Analyze phase: text blocks with bounding boxes, reading order, headings, and chunks."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import ray
from pymongo import UpdateOne

from actors.layout import (
    CHUNKS_PER_PAGE_LIMIT,
    TextBlock,
    blocks_from_dict,
    chunk_page,
    page_text,
)
from actors.pdf import OpenDocuments
from actors.supervision import SupervisedActor
from actors.telemetry import PipelineMetrics
from core.db import LazyDatabase
from core.errors import DocumentError
from core.settings import Settings

# Text extraction flags: keep ligatures and whitespace as is, drop images from the dict.
TEXT_FLAGS = 0
# A dense real page holds about 10,000 characters. A few KB of PDF can draw millions of
# glyphs: past this a page is refused, which also keeps its chunks under
# CHUNKS_PER_PAGE_LIMIT (chunk numbers would run into the next page's) and its MongoDB
# document far under the 16 MB BSON limit.
MAX_PAGE_TEXT_CHARS = 1_000_000


@ray.remote(num_cpus=0.5, max_restarts=0, max_task_retries=0, max_concurrency=1)
class AnalyzeActor(SupervisedActor):
    """Analyze phase. Resources: half a CPU, and INDEXER_PARSER_MEMORY_MB of allocations.
    Concurrency: one call at a time. Retries: replaced and retried by its SupervisedPool
    (not by Ray, see actors/supervision.py). Idempotency key: (document, page) for pages and
    (document, chunkNo) for chunks, where chunkNo = page * 10,000 + index on the page."""

    def __init__(self, settings: Settings, aggregator: Any) -> None:
        self._supervise(settings)
        self._db = LazyDatabase(settings.mongodb_uri.reveal(), settings.mongodb_db)  # type: ignore[union-attr]
        self._documents = OpenDocuments()
        self._aggregator = aggregator
        self._metrics = PipelineMetrics()

    async def analyze(
        self, workspace_id: str, document_id: str, gridfs_id: str, sha256: str, page_nos: list[int]
    ) -> list[dict[str, Any]]:
        """Write pages' layout and chunks; return the chunks to embed."""
        started = time.monotonic()
        db = self._db.get()
        document = await self._documents.get(db, gridfs_id)
        to_embed: list[dict[str, Any]] = []
        chunk_writes: list[UpdateOne] = []
        for page_no in page_nos:
            blocks = self._blocks(document, page_no)
            text = page_text(blocks)
            if len(text) > MAX_PAGE_TEXT_CHARS:
                raise DocumentError(
                    "analyze",
                    f"page {page_no + 1}: {len(text):,} characters of text; "
                    f"the limit is {MAX_PAGE_TEXT_CHARS:,} a page",
                )
            chunks = chunk_page(text, page_no)
            await db.pages.update_one(
                {"documentId": document_id, "pageNo": page_no},
                {
                    "$set": {
                        "workspaceId": workspace_id,
                        "sha256": sha256,
                        "text": text,
                        "blocks": [b.as_document() for b in blocks],
                        "headings": [b.text for b in blocks if b.heading],
                        "chunkCount": len(chunks),
                        "analyzedAt": datetime.now(UTC),
                    },
                    "$setOnInsert": {"done": False},
                },
                upsert=True,
            )
            # A re-analysis that yields fewer chunks must not leave the old tail behind.
            await db.chunks.delete_many(
                {
                    "documentId": document_id,
                    "chunkNo": {
                        "$gte": page_no * CHUNKS_PER_PAGE_LIMIT + len(chunks),
                        "$lt": (page_no + 1) * CHUNKS_PER_PAGE_LIMIT,
                    },
                }
            )
            for chunk in chunks:
                chunk_writes.append(
                    UpdateOne(
                        {"documentId": document_id, "chunkNo": chunk.chunk_no},
                        {
                            "$set": {
                                "workspaceId": workspace_id,
                                "sha256": sha256,
                                "pageNo": page_no,
                                "pages": [page_no],
                                "start": chunk.start,
                                "end": chunk.end,
                                "text": chunk.text,
                            }
                        },
                        upsert=True,
                    )
                )
                to_embed.append(
                    {"documentId": document_id, "chunkNo": chunk.chunk_no, "text": chunk.text}
                )
        if chunk_writes:
            await db.chunks.bulk_write(chunk_writes, ordered=False)
        self._aggregator.record.remote("analyze", document_id, len(page_nos))
        self._metrics.phase_done("analyze", len(page_nos), time.monotonic() - started)
        return to_embed

    def _blocks(self, document: Any, page_no: int) -> list[TextBlock]:
        """The page's text blocks; MuPDF raises more than RuntimeError (FzErrorLimit for a
        stack overflow, FzErrorSystem or MemoryError past the memory cap)."""
        try:
            return blocks_from_dict(document[page_no].get_text("dict", flags=TEXT_FLAGS))
        except Exception as exc:
            raise self.parse_error("analyze", f"page {page_no + 1}", exc) from None
