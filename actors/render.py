"""Render phase: a PNG preview of each page, for its page document (`pages.image`), which
the embed phase stores with the page's layout and chunks (`actors.store`)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from bson import Binary

from actors.pdf import OpenDocuments
from actors.png import encode_png
from actors.supervised_actor import SupervisedActor, supervised_remote
from actors.telemetry import PipelineMetrics
from core.db import PAGES_BUCKET, LazyDatabase
from core.gridfs_batch import NewFile, insert_files
from core.settings import Settings

# A 20,000 x 20,000 pt page at 72 dpi would be a 1.2 GB pixmap: previews are capped.
MAX_PREVIEW_PIXELS = 4_000_000
# A preview up to this size is kept in its page's document (written with it, in one command
# with the batch's other pages); a larger one in GridFS, so page documents stay small.
INLINE_PREVIEW_BYTES = 512 * 1024


def preview_dpi(width_pt: float, height_pt: float, dpi: int) -> int:
    """The requested DPI, lowered so the preview stays under MAX_PREVIEW_PIXELS."""
    pixels = (width_pt * dpi / 72) * (height_pt * dpi / 72)
    if pixels <= MAX_PREVIEW_PIXELS:
        return dpi
    return max(1, int(dpi * math.sqrt(MAX_PREVIEW_PIXELS / pixels)))


@supervised_remote(num_cpus=0.5)
class RenderActor(SupervisedActor):
    """Render phase. Resources: half a CPU, and INDEXER_PARSER_MEMORY_MB of allocations.
    Concurrency: one call at a time. Retries: replaced and retried by its SupervisedPool
    (not by Ray, see actors/supervised_pool.py). Idempotency key: (document, page); a large
    preview's GridFS file is named `{document}/{sha256}/{dpi}/{page}.png`, its id derived
    from the name."""

    def __init__(self, settings: Settings, aggregator: Any) -> None:
        self._supervise(settings, aggregator)
        self._dpi = settings.render_dpi
        self._db = LazyDatabase(settings.mongodb_uri.reveal(), settings.mongodb_db)  # type: ignore[union-attr]
        self._documents = OpenDocuments()
        self._metrics = PipelineMetrics()

    async def render(
        self, workspace_id: str, document_id: str, gridfs_id: str, sha256: str, page_nos: list[int]
    ) -> dict[int, dict[str, Any]]:
        """A preview of each page, as its page document's fields (`image`, `renderedAt`): the
        PNG itself, or, for one over INLINE_PREVIEW_BYTES, its GridFS file, stored here in
        one bulk upload (a second attempt meets the first's: `core.gridfs_batch`). Takes the
        page-batch arguments analyze takes (`actors.parser_pools`); the workspace is not
        used here."""
        started = time.monotonic()
        db = self._db.get()
        document = await self._documents.get(db, gridfs_id)
        previews = [
            self._render_page(document, self._filename(document_id, sha256, p), p) for p in page_nos
        ]
        large = [preview for preview in previews if len(preview.data) > INLINE_PREVIEW_BYTES]
        ids = await insert_files(db, PAGES_BUCKET, large)
        stored = {preview.filename: file_id for preview, file_id in zip(large, ids, strict=True)}
        rendered_at = datetime.now(UTC)
        self._aggregator.record.remote("render", document_id, page_nos)
        self._metrics.phase_done("render", len(page_nos), time.monotonic() - started)
        return {
            page_no: {"image": _image_field(preview, stored), "renderedAt": rendered_at}
            for page_no, preview in zip(page_nos, previews, strict=True)
        }

    def _filename(self, document_id: str, sha256: str, page_no: int) -> str:
        return f"{document_id}/{sha256}/{self._dpi}/{page_no}.png"

    def _render_page(self, document: Any, filename: str, page_no: int) -> NewFile:
        try:  # MuPDF raises more than RuntimeError (FzErrorLimit, FzErrorSystem, MemoryError)
            page = document[page_no]
            dpi = preview_dpi(page.rect.width, page.rect.height, self._dpi)
            pixmap = page.get_pixmap(dpi=dpi)
            png = encode_png(pixmap)
        except Exception as exc:
            where = f"page {page_no + 1} cannot be rendered"
            raise self.parse_error("render", where, exc) from None
        metadata = {"width": pixmap.width, "height": pixmap.height, "dpi": dpi}
        return NewFile(filename, png, metadata)


def _image_field(preview: NewFile, stored: dict[str, Any]) -> dict[str, Any]:
    """The page document's `image`: the PNG itself, or the GridFS file that holds it."""
    if preview.filename in stored:
        return {"fileId": stored[preview.filename], **preview.metadata}
    return {"png": Binary(preview.data), **preview.metadata}
