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

A file's id is derived from its name, which names its content (document, sha256, DPI,
page): writing it again (a retried call, a resumed run) meets the documents already there,
and those duplicates are the answer, not an error. So no look-up comes first, and a lost
reply can be retried.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from core.db import Document, retried_once

DUPLICATE_KEY = 11000

# The GridFS default: 255 KiB keeps a chunk document well under the 16 MiB BSON limit.
CHUNK_SIZE = 255 * 1024


@dataclass(frozen=True)
class NewFile:
    """One file to store: its name, bytes and metadata."""

    filename: str
    data: bytes
    metadata: dict[str, Any] = field(default_factory=dict)


def id_of_file(filename: str) -> ObjectId:
    """The id of the file named `filename`: the same name gives the same id."""
    return ObjectId(hashlib.sha256(filename.encode()).digest()[:12])


async def insert_files(
    db: AsyncDatabase[Document], bucket: str, files: list[NewFile]
) -> list[ObjectId]:
    """Store `files` in GridFS bucket `bucket` (those stored already are left as they are);
    return their ids, in order."""
    if not files:
        return []
    ids = [id_of_file(file.filename) for file in files]
    chunks = [
        {"files_id": file_id, "n": n, "data": file.data[start : start + CHUNK_SIZE]}
        for file_id, file in zip(ids, files, strict=True)
        for n, start in enumerate(range(0, len(file.data), CHUNK_SIZE))
    ]
    if chunks:  # an empty file has no chunks
        await _insert_new(db[f"{bucket}.chunks"], chunks)
    uploaded_at = datetime.now(UTC)
    await _insert_new(
        db[f"{bucket}.files"],
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
    )
    return ids


async def _insert_new(collection: AsyncCollection[Document], documents: list[Document]) -> None:
    """Insert what is not there yet (by `_id`, or the chunks' unique index)."""
    try:
        await retried_once(lambda: collection.insert_many(documents, ordered=False))
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors) or not errors:
            raise
