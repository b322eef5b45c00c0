"""Files written in bulk (`core.gridfs_batch`) are ordinary GridFS files to PyMongo."""

from __future__ import annotations

import os
from typing import Any

from gridfs import AsyncGridFSBucket

from core.db import ensure_indexes
from core.gridfs_batch import CHUNK_SIZE, NewFile, insert_files


async def test_bulk_files_read_back_through_pymongos_gridfs(db: Any) -> None:
    await ensure_indexes(db)
    files = [
        NewFile("a/1.png", os.urandom(1_000), {"width": 10, "height": 20}),
        NewFile("a/2.png", os.urandom(2 * CHUNK_SIZE + 7)),  # three chunks, the last short
        NewFile("a/3.png", os.urandom(CHUNK_SIZE)),  # exactly one chunk
        NewFile("a/empty", b""),  # no chunk at all, as the spec says
    ]
    ids = await insert_files(db, "previews", files)

    assert len(set(ids)) == len(files)
    bucket = AsyncGridFSBucket(db, bucket_name="previews")
    for file_id, file in zip(ids, files, strict=True):
        stream = await bucket.open_download_stream(file_id)
        assert await stream.read() == file.data
        assert stream.filename == file.filename
        assert stream.metadata == file.metadata
    by_name = await bucket.open_download_stream_by_name("a/2.png")
    assert by_name._id == ids[1]
    assert await db["previews.chunks"].count_documents({"files_id": ids[1]}) == 3
    assert await db["previews.chunks"].count_documents({"files_id": ids[3]}) == 0


async def test_nothing_to_store_writes_nothing(db: Any) -> None:
    assert await insert_files(db, "previews", []) == []
    assert "previews.files" not in await db.list_collection_names()


async def test_the_buckets_have_the_gridfs_indexes(db: Any) -> None:
    await ensure_indexes(db)
    for bucket in ("documents", "pages"):
        files = await db[f"{bucket}.files"].index_information()
        chunks = await db[f"{bucket}.chunks"].index_information()
        assert [("filename", 1), ("uploadDate", 1)] in [i["key"] for i in files.values()]
        unique = {tuple(i["key"]): i.get("unique", False) for i in chunks.values()}
        assert unique[(("files_id", 1), ("n", 1))] is True
