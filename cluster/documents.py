"""`indexer add`: register a workspace's documents.

Local files are checked (size, PDF header) and stored in GridFS now, so any Ray node can
read them; `file://` and `http(s)://` sources are only recorded and read in the fetch phase.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from gridfs import AsyncGridFSBucket
from pymongo.asynchronous.database import AsyncDatabase

from core.db import DOCUMENTS_BUCKET, Document
from core.errors import DocumentError
from core.pdf import check_pdf_bytes, read_local_file


@dataclass(frozen=True)
class AddResult:
    source: str
    document_id: str | None
    error: str | None


async def add_document(
    db: AsyncDatabase[Document], workspace_id: str, source: str, *, max_bytes: int
) -> AddResult:
    """Register one source; a re-added source is updated in place (keyed by its source)."""
    scheme = urlsplit(source).scheme
    try:
        if scheme in ("http", "https"):
            fields: Document = {"kind": "http", "filename": Path(urlsplit(source).path).name}
        elif scheme == "file":
            fields = {"kind": "file", "filename": Path(urlsplit(source).path).name}
        else:
            source = await asyncio.to_thread(os.path.abspath, source)
            fields = await _upload(db, Path(source), max_bytes)
    except DocumentError as exc:
        return AddResult(source, None, exc.message)
    now = datetime.now(UTC)
    key = {"workspaceId": workspace_id, "source": source}
    # update_one + find_one rather than find_one_and_update (a full scan on SecantusDB 0.7).
    await db.documents.update_one(
        key,
        {
            "$set": {**fields, "status": "pending", "error": None, "updatedAt": now},
            "$setOnInsert": {"addedAt": now},
        },
        upsert=True,
    )
    record = await db.documents.find_one(key, {"_id": 1})
    assert record is not None
    return AddResult(source, str(record["_id"]), None)


async def _upload(db: AsyncDatabase[Document], path: Path, max_bytes: int) -> Document:
    data = await asyncio.to_thread(read_local_file, str(path), max_bytes)
    check_pdf_bytes(data, max_bytes)
    sha256 = hashlib.sha256(data).hexdigest()
    files = db[f"{DOCUMENTS_BUCKET}.files"]
    existing = await files.find_one({"filename": sha256}, {"_id": 1})
    if existing is not None:
        gridfs_id = existing["_id"]
    else:
        bucket = AsyncGridFSBucket(db, bucket_name=DOCUMENTS_BUCKET)
        gridfs_id = await bucket.upload_from_stream(sha256, data)
    return {"kind": "gridfs", "gridfsId": str(gridfs_id), "filename": path.name, "bytes": len(data)}
