"""Fetch phase: load a document's bytes, check them, and decide whether it needs indexing.

Sources: GridFS (uploaded with `indexer add`), `file://` paths and `http(s)://` URLs. Bytes
that did not come from GridFS are stored there, so any Ray node can read them later.
A document whose sha256 and indexing settings match its last complete index is skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from bson import ObjectId
from gridfs import AsyncGridFSBucket

from actors.pdf import open_pdf
from actors.supervision import SupervisedActor, supervised_remote
from core.db import DOCUMENTS_BUCKET, Document, LazyDatabase, retried_once
from core.errors import DocumentError
from core.gridfs_batch import NewFile, insert_files
from core.settings import Settings

PDF_MAGIC = b"%PDF-"
# The PDF header may follow some junk; readers accept it within the first kilobyte.
PDF_MAGIC_WINDOW_BYTES = 1024
PDF_EOF = b"%%EOF"
PDF_EOF_WINDOW_BYTES = 2048
HTTP_TIMEOUT_S = 30.0
UNREADABLE_PAGES_LISTED = 10


@dataclass(frozen=True)
class FetchedDocument:
    """What the driver needs to schedule a document's pages."""

    document_id: str
    gridfs_id: str
    sha256: str
    page_count: int
    skipped: bool
    warning: str | None = None


def check_pdf_bytes(data: bytes, max_bytes: int) -> None:
    """Size and content-type checks shared by `indexer add` and the fetch phase."""
    if not data:
        raise DocumentError("fetch", "empty: the file has zero bytes")
    if len(data) > max_bytes:
        raise DocumentError("fetch", f"too large: {len(data)} bytes, limit {max_bytes}")
    if PDF_MAGIC not in data[:PDF_MAGIC_WINDOW_BYTES]:
        raise DocumentError("fetch", "not a PDF: no %PDF- header")


def inspect_pdf(data: bytes, max_pages: int) -> tuple[int, str | None]:
    """Page count and an optional warning; DocumentError when the PDF cannot be indexed.

    PyMuPDF opens a truncated or damaged file "repaired", often with blank pages: such a
    file with no text and no images at all is refused; one with content is indexed with a
    warning (status `partial`). A file cut short (no `%%EOF` near its end) says so. Pages
    whose page object cannot be loaded (nested too deep, broken references) would come out
    blank without a word from MuPDF: they are named in the warning, or fail the document
    when no page is left. More than `max_pages` pages are refused before any page is read.
    """
    truncated = PDF_EOF not in data[-PDF_EOF_WINDOW_BYTES:]
    try:
        document = open_pdf(data)
    except DocumentError:
        if truncated:
            raise DocumentError("fetch", "truncated: the file ends before %%EOF") from None
        raise
    try:
        if document.needs_pass:
            raise DocumentError("fetch", "encrypted: a password is required to open it")
        if document.page_count == 0:
            raise DocumentError("fetch", "empty: the PDF has no pages")
        if document.page_count > max_pages:
            raise DocumentError(
                "fetch",
                f"too many pages: {document.page_count}; the limit is {max_pages} "
                "(INDEXER_MAX_PAGES)",
            )
        warnings = [_repair_warning(document, truncated), _unreadable_pages_warning(document)]
        return document.page_count, "; ".join(w for w in warnings if w) or None
    finally:
        document.close()


def _unreadable_pages_warning(document: Any) -> str | None:
    """Names the pages whose page object MuPDF cannot load; fails when none can be."""
    unreadable: list[int] = []
    reason = ""
    for number in range(document.page_count):
        try:
            document.xref_get_keys(document.page_xref(number))
        except Exception as exc:  # FzErrorLimit "exception stack overflow!", broken objects
            unreadable.append(number + 1)
            reason = reason or str(exc)
    if not unreadable:
        return None
    if len(unreadable) == document.page_count:
        raise DocumentError("fetch", f"damaged: no page can be read ({reason})")
    listed = ", ".join(str(n) for n in unreadable[:UNREADABLE_PAGES_LISTED])
    more = len(unreadable) - UNREADABLE_PAGES_LISTED
    listed += f" and {more} more" if more > 0 else ""
    pages, are = ("page", "is") if len(unreadable) == 1 else ("pages", "are")
    return f"damaged: {pages} {listed} cannot be read ({reason}) and {are} left blank"


def _repair_warning(document: Any, truncated: bool) -> str | None:
    """A repaired or truncated file is indexed with a warning if any content is left."""
    if not document.is_repaired and not truncated:
        return None
    has_content = any(page.get_text().strip() or page.get_images() for page in document)
    damage = "truncated" if truncated else "damaged"
    if not has_content:
        raise DocumentError("fetch", f"{damage}: repaired on open, no content left")
    return f"{damage}: repaired on open; some pages may be missing"


@supervised_remote(num_cpus=0)
class FetchActor(SupervisedActor):
    """Fetch phase. Resources: no CPU reservation (it waits on I/O; PDF checks are short),
    INDEXER_PARSER_MEMORY_MB of allocations. Concurrency: one call at a time. Retries:
    replaced and retried by its SupervisedPool (not by Ray, see actors/supervision.py).
    Idempotency key: the document id (GridFS bytes are stored by sha256, so a retry reuses
    them)."""

    def __init__(self, settings: Settings, settings_hash: str, aggregator: Any) -> None:
        self._supervise(settings, aggregator)
        self._settings = settings
        self._settings_hash = settings_hash
        self._db = LazyDatabase(settings.mongodb_uri.reveal(), settings.mongodb_db)  # type: ignore[union-attr]

    async def fetch(self, document: Document) -> FetchedDocument:
        """Load, check and register one document; raises DocumentError when it is unusable."""
        data = await self._load(document)
        check_pdf_bytes(data, self._settings.max_document_bytes)
        sha256 = hashlib.sha256(data).hexdigest()
        document_id = str(document["_id"])
        if self._unchanged(document, sha256):
            return FetchedDocument(
                document_id,
                document["gridfsId"],
                sha256,
                document["pageCount"],
                skipped=True,
                warning=document.get("warning"),  # the complete index's, kept as it was
            )
        page_count, warning = self._inspect(data)
        gridfs_id = await self._store(document, data, sha256)
        await self._register(
            document["_id"],
            sha256,
            gridfs_id,
            page_count,
            warning,
            document.get("settingsHash"),
            document.get("sha256"),
        )
        return FetchedDocument(document_id, gridfs_id, sha256, page_count, False, warning)

    def _inspect(self, data: bytes) -> tuple[int, str | None]:
        """inspect_pdf, with what MuPDF raises besides DocumentError made one too."""
        try:
            return inspect_pdf(data, self._settings.max_pages)
        except DocumentError:
            raise
        except Exception as exc:
            raise self.parse_error("fetch", "cannot be read", exc) from None

    def _unchanged(self, document: Document, sha256: str) -> bool:
        # `indexedSha256` is set only when every page of that version was indexed.
        return (
            document.get("indexedSha256") == sha256
            and document.get("settingsHash") == self._settings_hash
        )

    async def _load(self, document: Document) -> bytes:
        kind = document.get("kind")
        if kind == "gridfs":
            bucket = AsyncGridFSBucket(self._db.get(), bucket_name=DOCUMENTS_BUCKET)
            stream = await bucket.open_download_stream(ObjectId(document["gridfsId"]))
            return await stream.read()
        if kind == "file":
            return read_local_file(document["source"], self._settings.max_document_bytes)
        if kind == "http":
            return await _download(document["source"], self._settings.max_document_bytes)
        raise DocumentError("fetch", f"unknown source kind {kind!r}")

    async def _store(self, document: Document, data: bytes, sha256: str) -> str:
        if document.get("kind") == "gridfs":
            return str(document["gridfsId"])
        db = self._db.get()
        existing = await db[f"{DOCUMENTS_BUCKET}.files"].find_one({"filename": sha256}, {"_id": 1})
        if existing is not None:
            return str(existing["_id"])
        [file_id] = await insert_files(db, DOCUMENTS_BUCKET, [NewFile(sha256, data)])
        return str(file_id)

    async def _register(
        self,
        oid: ObjectId,
        sha256: str,
        gridfs_id: str,
        page_count: int,
        warning: str | None,
        previous_hash: str | None,
        previous_sha256: str | None,
    ) -> None:
        db = self._db.get()
        await retried_once(
            lambda: db.documents.update_one(
                {"_id": oid},
                {
                    "$set": {
                        "sha256": sha256,
                        "gridfsId": gridfs_id,
                        "pageCount": page_count,
                        "settingsHash": self._settings_hash,
                        "status": "indexing",
                        "warning": warning,
                        "error": None,
                        "fetchedAt": datetime.now(UTC),
                    },
                    # set again by the driver once every page of these bytes is done with these
                    # settings; until then the document is not "unchanged": a run stopped now
                    # leaves the next one to index it, not to skip it on an older index's sha256
                    "$unset": {"indexedSha256": ""},
                },
            )
        )
        if previous_sha256 is None:
            return  # never fetched before: nothing of it is stored
        # Pages and chunks of an older version of this document, or made with other
        # settings (model, DPI, chunking), would be stale now.
        stale: dict[str, object] = {"documentId": str(oid)}
        if previous_hash in (None, self._settings_hash):
            stale["sha256"] = {"$ne": sha256}
        # chunks first: a run stopped in between never leaves a chunk without its page
        for name in ("chunks", "pages"):
            await retried_once(lambda name=name: db[name].delete_many(stale))


def read_local_file(source: str, max_bytes: int) -> bytes:
    """A local path or `file://` URL, refused before reading when over `max_bytes`."""
    parts = urlsplit(source)
    path = Path(unquote(parts.path)) if parts.scheme == "file" else Path(source)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DocumentError("fetch", f"too large: {size} bytes, limit {max_bytes}")
        return path.read_bytes()
    except OSError as exc:
        raise DocumentError("fetch", f"cannot read {path.name}: {exc.strerror}") from None


async def _download(url: str, max_bytes: int) -> bytes:
    try:
        async with (
            httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, follow_redirects=True) as http,
            http.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise DocumentError("fetch", f"download failed: HTTP {response.status_code}")
            content_type = response.headers.get("content-type", "").split(";")[0].strip()
            if content_type not in ("application/pdf", "application/octet-stream", ""):
                raise DocumentError("fetch", f"not a PDF: content-type {content_type}")
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > max_bytes:
                    raise DocumentError("fetch", f"too large: over {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise DocumentError("fetch", f"download failed: {type(exc).__name__}") from None
