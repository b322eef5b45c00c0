"""Render phase: a PNG preview of each page, stored in GridFS, referenced from `pages.image`
(written by the analyze phase with the page's layout, see `actors.analyze`)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from actors.pdf import OpenDocuments
from actors.png import encode_png
from actors.supervision import SupervisedActor, supervised_remote
from actors.telemetry import PipelineMetrics
from core.db import PAGES_BUCKET, LazyDatabase
from core.gridfs_batch import NewFile, insert_files
from core.settings import Settings

# A 20,000 x 20,000 pt page at 72 dpi would be a 1.2 GB pixmap: previews are capped.
MAX_PREVIEW_PIXELS = 4_000_000


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
    (not by Ray, see actors/supervision.py). Idempotency key: (document, page); the preview's
    GridFS file is named `{document}/{sha256}/{dpi}/{page}.png` and reused when present."""

    def __init__(self, settings: Settings, aggregator: Any) -> None:
        self._supervise(settings, aggregator)
        self._dpi = settings.render_dpi
        self._db = LazyDatabase(settings.mongodb_uri.reveal(), settings.mongodb_db)  # type: ignore[union-attr]
        self._documents = OpenDocuments()
        self._metrics = PipelineMetrics()

    async def render(
        self, workspace_id: str, document_id: str, gridfs_id: str, sha256: str, page_nos: list[int]
    ) -> dict[int, dict[str, Any]]:
        """Store a preview of each page, the batch's in one bulk upload (previews stored by
        an earlier attempt are met there and kept: `core.gridfs_batch`). Returns each page's
        fields for its page document (`image`, `renderedAt`), which the analyze phase writes
        with its own: one write of a page, not two. Takes the page-batch arguments analyze
        takes (`actors.parser_pools`); the workspace is written by analyze, so it is not used
        here."""
        started = time.monotonic()
        db = self._db.get()
        document = await self._documents.get(db, gridfs_id)
        previews = [
            self._render_page(document, self._filename(document_id, sha256, p), p) for p in page_nos
        ]
        ids = await insert_files(db, PAGES_BUCKET, previews)
        rendered_at = datetime.now(UTC)
        self._aggregator.record.remote("render", document_id, page_nos)
        self._metrics.phase_done("render", len(page_nos), time.monotonic() - started)
        return {
            page_no: {"image": {"fileId": file_id, **preview.metadata}, "renderedAt": rendered_at}
            for page_no, preview, file_id in zip(page_nos, previews, ids, strict=True)
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
