"""Opening PDFs held in GridFS, shared by the render and analyze actors."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from pymongo.asynchronous.database import AsyncDatabase

from core.db import DOCUMENTS_BUCKET, Document, retried_once
from core.pdf import open_pdf

if TYPE_CHECKING:
    import pymupdf

# PDF bytes a parser actor keeps open between calls (far inside INDEXER_PARSER_MEMORY_MB).
OPEN_DOCUMENTS_BYTES = 64 * 1024 * 1024


class OpenDocuments:
    """A small LRU of open PDFs, keyed by the GridFS id of their bytes, holding at most
    OPEN_DOCUMENTS_BYTES of them (and always the last one).

    A run sends an actor the page batches of several documents in turn, so it keeps a few
    open: reading a PDF again from GridFS costs the database server more than the page
    itself. Evicting closes a document, so the actors using this run one call at a time
    (`max_concurrency=1`): an async actor would otherwise interleave calls and close a PDF
    another call still reads.
    """

    def __init__(self) -> None:
        self._open: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    async def get(self, db: AsyncDatabase[Document], gridfs_id: str) -> pymupdf.Document:
        if gridfs_id in self._open:
            self._open.move_to_end(gridfs_id)
            return self._open[gridfs_id][0]
        bucket = AsyncGridFSBucket(db, bucket_name=DOCUMENTS_BUCKET)
        data = await retried_once(lambda: _download(bucket, gridfs_id))
        document = open_pdf(data)
        self._open[gridfs_id] = (document, len(data))
        while len(self._open) > 1 and sum(size for _, size in self._open.values()) > (
            OPEN_DOCUMENTS_BYTES
        ):
            _, (oldest, _) = self._open.popitem(last=False)
            oldest.close()
        return document


async def _download(bucket: AsyncGridFSBucket, gridfs_id: str) -> bytes:
    """A PDF's bytes; its chunks come through a cursor, which PyMongo does not retry."""
    stream = await bucket.open_download_stream(ObjectId(gridfs_id))
    return await stream.read()
