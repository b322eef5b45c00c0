"""Search latency over 50,000 chunks: exact top-k cosine as the head answers it.

    .venv/bin/python bench/search.py [--chunks 50000] [--queries 20]

A workspace of N chunks with unit-norm 384-dim vectors stored as BSON binary vectors in an
in-memory embedded MongoDB (indexes as the head creates them), searched by the head's
`Searcher`. Printed: the first search (it loads the workspace's matrix from MongoDB and the
query model), warm searches (query embedding, matrix product, exact top-k, the k chunks'
text), and the matrix product and top-k alone.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
from bson import ObjectId
from bson.binary import Binary, BinaryVectorDtype
from harness import arguments, median, print_table

from core.db import ensure_indexes, open_client
from core.embedded_mongo import EmbeddedMongo
from core.settings import Settings
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
        searcher = Searcher(Settings().embed_model)
        started = time.perf_counter()
        await searcher.search(db, workspace, QUERIES[0], 10)
        first = time.perf_counter() - started
        timings = []
        for index in range(queries):
            started = time.perf_counter()
            result = await searcher.search(db, workspace, QUERIES[index % len(QUERIES)], 10)
            timings.append(time.perf_counter() - started)
        assert result["chunks"] == chunks
        assert len(result["results"]) == 10
        await client.close()
    matrix = np.random.default_rng(1).standard_normal((chunks, DIMENSIONS)).astype(np.float32)
    products = []
    for _ in range(queries):
        started = time.perf_counter()
        np.argsort(-(matrix @ matrix[0]), kind="stable")[:10]
        products.append(time.perf_counter() - started)
    print_table(
        [f"{chunks} chunks, k=10", "ms"],
        [
            ["first search (loads the matrix and the query model)", f"{first * 1000:.0f}"],
            [f"warm search, p50 of {queries}", f"{median(timings) * 1000:.1f}"],
            ["of which matrix product + top-k, p50", f"{median(products) * 1000:.1f}"],
        ],
    )


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=20)
    options = parser.parse_args()
    asyncio.run(main(options.chunks, options.queries))
