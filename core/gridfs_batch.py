"""GridFS files written in bulk: a batch of small files in two round trips.

PyMongo's `upload_from_stream` costs four round trips per file, two of them a `find_one({})`
on the bucket's collections (to decide whether to create its indexes) that a server
without a fast path for an unfiltered, limited find answers by scanning the collection:
with one upload per page preview that grows with the square of the pages stored.
Render previews are a few kilobytes each, so the render actor writes a page batch's
previews at once: every chunk document in one `insert_many`, then every files document in
another, in the layout the GridFS spec gives (so `AsyncGridFSBucket` reads them as usual).
Chunks go first, so a files document never names chunks that are not stored yet. The
bucket's indexes are created with the others (`core.db.INDEXES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from core.db import Document

# The GridFS default: 255 KiB keeps a chunk document well under the 16 MiB BSON limit.
CHUNK_SIZE = 255 * 1024


@dataclass(frozen=True)
class NewFile:
    """One file to store: its name, bytes and metadata."""

    filename: str
    data: bytes
    metadata: dict[str, Any] = field(default_factory=dict)


async def insert_files(
    db: AsyncDatabase[Document], bucket: str, files: list[NewFile]
) -> list[ObjectId]:
    """Store `files` in GridFS bucket `bucket`; return their ids, in order."""
    if not files:
        return []
    ids = [ObjectId() for _ in files]
    chunks = [
        {"files_id": file_id, "n": n, "data": file.data[start : start + CHUNK_SIZE]}
        for file_id, file in zip(ids, files, strict=True)
        for n, start in enumerate(range(0, len(file.data), CHUNK_SIZE))
    ]
    if chunks:  # an empty file has no chunks
        await db[f"{bucket}.chunks"].insert_many(chunks, ordered=False)
    uploaded_at = datetime.now(UTC)
    await db[f"{bucket}.files"].insert_many(
        [
            {
                "_id": file_id,
                "length": len(file.data),
                "chunkSize": CHUNK_SIZE,
                "uploadDate": uploaded_at,
                "filename": file.filename,
                "metadata": file.metadata,
            }
            for file_id, file in zip(ids, files, strict=True)
        ],
        ordered=False,
    )
    return ids
