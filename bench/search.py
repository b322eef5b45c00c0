"""Search latency over 50,000 chunks: exact top-k cosine as the head answers it.

Builds a workspace of N chunks (default 50,000) with unit-norm 384-dim vectors stored as
BSON binary vectors in an in-memory SecantusDB, then times, in one run:
- the first search (loads the workspace's matrix from MongoDB and the query model),
- warm searches (query embedding + matrix product + top-k + fetching the k chunks' text),
- the matrix product and top-k alone.
Run: .venv/bin/python bench/search.py [--chunks 50000] [--queries 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from bson import ObjectId
from bson.binary import Binary, BinaryVectorDtype

from core.db import ensure_indexes, open_client
from core.embedded_mongo import EmbeddedMongo
from head.search import Searcher

DIMENSIONS = 384
QUERIES = ["vector search over chunks", "reading order of a page", "ray worker node failures"]


async def fill(db: object, workspace_id: str, chunks: int) -> None:
    rng = np.random.default_rng(7)
    document_id = str(ObjectId())
    batch = []
    for number in range(chunks):
        vector = rng.standard_normal(DIMENSIONS).astype(np.float32)
        vector /= np.linalg.norm(vector)
        batch.append(
            {
                "workspaceId": workspace_id,
                "documentId": document_id,
                "chunkNo": number,
                "pageNo": number // 3,
                "text": f"chunk {number} " * 20,
                "embedding": Binary.from_vector(vector.tolist(), BinaryVectorDtype.FLOAT32),
            }
        )
        if len(batch) == 5000:
            await db.chunks.insert_many(batch)  # type: ignore[attr-defined]
            batch = []
    if batch:
        await db.chunks.insert_many(batch)  # type: ignore[attr-defined]


async def main(chunks: int, queries: int) -> None:
    with (
        tempfile.TemporaryDirectory() as folder,
        EmbeddedMongo(Path(folder), in_memory=True) as mongo,
    ):
        client = open_client(mongo.uri)
        db = client["bench"]
        await ensure_indexes(db)  # as the head does at start-up
        workspace = {
            "_id": ObjectId(),
            "pageCount": chunks // 3,
            "indexStatus": "ready",
            "indexProgress": {"updatedAt": 1},
        }
        started = time.perf_counter()
        await fill(db, str(workspace["_id"]), chunks)
        print(f"stored {chunks} chunks in {time.perf_counter() - started:.1f}s")
        searcher = Searcher("all-MiniLM-L6-v2")
        started = time.perf_counter()
        await searcher.search(db, workspace, QUERIES[0], 10)
        print(f"first search (matrix load + model load): {time.perf_counter() - started:.2f}s")
        timings = []
        for index in range(queries):
            started = time.perf_counter()
            result = await searcher.search(db, workspace, QUERIES[index % len(QUERIES)], 10)
            timings.append(time.perf_counter() - started)
        assert result["chunks"] == chunks
        assert len(result["results"]) == 10
        matrix = np.random.default_rng(1).standard_normal((chunks, DIMENSIONS)).astype(np.float32)
        query = matrix[0]
        products = []
        for _ in range(queries):
            started = time.perf_counter()
            np.argsort(-(matrix @ query), kind="stable")[:10]
            products.append(time.perf_counter() - started)
        print(
            f"warm search, k=10, {chunks} chunks: p50 {statistics.median(timings) * 1000:.1f} ms,"
            f" max {max(timings) * 1000:.1f} ms over {queries} queries"
        )
        print(f"  of which matrix product + top-k: p50 {statistics.median(products) * 1000:.1f} ms")
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=20)
    options = parser.parse_args()
    asyncio.run(main(options.chunks, options.queries))
