"""Storing a page batch's index: each page and each chunk written once, vectors included.

A page and its chunks are written when the batch is embedded, in two commands (pages, then
chunks: a chunk never exists without its page), and inserted: an insert costs the embedded
MongoDB server a fraction of an update (no look-up, no merge; docs/BENCHMARKS.md, "What a
page costs outside the model"). A page stored is a page done. Writing again (a retried
call, a resumed run, the same pages redone) meets the documents already there: those are
replaced by key, so every write stays idempotent.
"""

from __future__ import annotations

from pymongo import DeleteMany, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from actors.layout import CHUNKS_PER_PAGE_LIMIT
from core.db import Document, retried_once

DUPLICATE_KEY = 11000


async def store_batch(
    db: AsyncDatabase[Document],
    document_id: str,
    pages: list[Document],
    chunks: list[Document],
    chunks_before: dict[int, int],
) -> None:
    """Store the batch's pages (each marked done) and chunks (with their vectors).

    `chunks_before`: how many chunks an earlier analysis stored for a page; a page that has
    fewer now loses the old tail, so no chunk of an older chunking is left behind.
    """
    await insert_or_replace(db.pages, pages, ("documentId", "pageNo"))
    if chunks:
        await insert_or_replace(db.chunks, chunks, ("documentId", "chunkNo"))
    stale = [
        _stale_tail(document_id, page["pageNo"], page["chunkCount"])
        for page in pages
        if chunks_before.get(page["pageNo"], 0) > page["chunkCount"]
    ]
    if stale:
        await retried_once(lambda: db.chunks.bulk_write(stale, ordered=False))


async def insert_or_replace(
    collection: AsyncCollection[Document], documents: list[Document], key: tuple[str, str]
) -> None:
    """Insert; the documents whose key (a unique index) is stored already replace what is
    there. What is new costs an insert, what is there a replace."""
    try:
        await retried_once(lambda: collection.insert_many(documents, ordered=False))
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if not errors or any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        replaced = [documents[error["index"]] for error in errors]
        writes = [
            ReplaceOne({field: doc[field] for field in key}, _without_id(doc), upsert=True)
            for doc in replaced
        ]
        await retried_once(lambda: collection.bulk_write(writes, ordered=False))


def _without_id(document: Document) -> Document:
    """insert_many gave the document an `_id`; the stored one keeps its own."""
    return {k: v for k, v in document.items() if k != "_id"}


def _stale_tail(document_id: str, page_no: int, chunk_count: int) -> DeleteMany:
    """The page's chunks past its last one (one range, answered from the (documentId,
    chunkNo) index; an `$or` of several would scan the collection)."""
    first = page_no * CHUNKS_PER_PAGE_LIMIT
    after_last = {"$gte": first + chunk_count, "$lt": first + CHUNKS_PER_PAGE_LIMIT}
    return DeleteMany({"documentId": document_id, "chunkNo": after_last})
