"""Fetch phase: load a document's bytes, check them, and decide whether it needs indexing.

Sources: GridFS (uploaded with `indexer add`), `file://` paths and `http(s)://` URLs. Bytes
that did not come from GridFS are stored there, so any Ray node can read them later.
A document whose sha256 and indexing settings match its last complete index is skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from bson import ObjectId
from gridfs import AsyncGridFSBucket

from actors.supervised_actor import SupervisedActor, supervised_remote
from core.db import DOCUMENTS_BUCKET, Document, LazyDatabase, retried_once
from core.errors import DocumentError
from core.gridfs_batch import NewFile, insert_files
from core.pdf import check_pdf_bytes, inspect_pdf, read_local_file
from core.settings import Settings

HTTP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class FetchedDocument:
    """What the driver needs to schedule a document's pages."""

    document_id: str
    gridfs_id: str
    sha256: str
    page_count: int
    skipped: bool
    warning: str | None = None


@supervised_remote(num_cpus=0)
class FetchActor(SupervisedActor):
    """Fetch phase. Resources: no CPU reservation (it waits on I/O; PDF checks are short),
    INDEXER_PARSER_MEMORY_MB of allocations. Concurrency: one call at a time. Retries:
    replaced and retried by its SupervisedPool (not by Ray, see actors/supervised_pool.py).
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
