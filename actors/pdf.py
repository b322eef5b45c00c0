"""Opening PDFs held in GridFS, shared by the render and analyze actors.

PyMuPDF is imported here, lazily, and without its add-ons: PyMuPDF 2.0 imports
`pymupdf.layout` and `pymupdf4llm` (which import onnxruntime) whenever they are installed,
which costs CPU in every parser process as it starts, and the indexer does its own layout
(`actors.layout`).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from pymongo.asynchronous.database import AsyncDatabase

from core.db import DOCUMENTS_BUCKET, Document, retried_once
from core.errors import DocumentError

if TYPE_CHECKING:
    import pymupdf

# PDF bytes a parser actor keeps open between calls (far inside INDEXER_PARSER_MEMORY_MB).
OPEN_DOCUMENTS_BYTES = 64 * 1024 * 1024
OPTIONAL_ADD_ONS = ("pymupdf.layout", "pymupdf4llm")


def load_pymupdf() -> ModuleType:
    """PyMuPDF without `pymupdf.layout` and `pymupdf4llm` (which imports onnxruntime): a None
    entry in sys.modules makes their import fail, which PyMuPDF expects (both add-ons are
    optional) and handles by leaving them out."""
    for optional in OPTIONAL_ADD_ONS:
        sys.modules.setdefault(optional, None)
    import pymupdf

    return pymupdf


def open_pdf(data: bytes) -> pymupdf.Document:
    """Open PDF bytes, translating PyMuPDF's errors into a DocumentError."""
    pymupdf = load_pymupdf()
    try:
        return pymupdf.open(stream=data, filetype="pdf")
    except (pymupdf.FileDataError, RuntimeError, ValueError) as exc:
        raise DocumentError("fetch", f"corrupt: not a readable PDF ({exc})") from None


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
