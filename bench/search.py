"""Search latency over 50,000 chunks, as a browser gets it from a warm head.

    .venv/bin/python bench/search.py [--chunks 50000] [--queries 20]

One `indexer head` (INDEXER_WARM on: its Ray, run driver and embed pool up) on an
in-memory embedded MongoDB that holds a workspace of N chunks with unit-norm 384-dim
vectors stored as BSON binary vectors. `GET /api/workspaces/{id}/search` with the owner's
cookie, timed over HTTP. Printed: the first search (the head loads the workspace's matrix
from MongoDB), warm searches (the query's vector from the embed pool through the run
driver, matrix product, exact top-k, the k chunks' text), the matrix product and top-k
alone in this process, and the head process's RSS after the searches (it loads no model).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from bson import ObjectId
from bson.binary import Binary, BinaryVectorDtype
from harness import OWNER, HeadProcess, arguments, median, print_table

from core.db import ensure_indexes, open_client
from core.embedded_mongo import EmbeddedMongo
from core.workspaces import create_workspace

DIMENSIONS = 384
DATABASE = "bench"
QUERIES = ["vector search over chunks", "reading order of a page", "ray worker node failures"]


async def new_chunk_workspace(uri: str, chunks: int) -> str:
    """A ready workspace of OWNER holding `chunks` random unit vectors."""
    client = open_client(uri)
    try:
        db = client[DATABASE]
        await ensure_indexes(db)
        workspace_id = str(await create_workspace(db, name="search", owner_id=OWNER, member_ids=[]))
        await db.workspaces.update_one(
            {"_id": ObjectId(workspace_id)},
            {"$set": {"pageCount": chunks // 3, "indexStatus": "ready"}},
        )
        rng = np.random.default_rng(7)
        document_id = str(ObjectId())
        for first in range(0, chunks, 5000):
            batch: list[dict[str, Any]] = []
            for number in range(first, min(first + 5000, chunks)):
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
            await db.chunks.insert_many(batch)
        return workspace_id
    finally:
        await client.close()


async def timed_searches(
    head: HeadProcess, workspace_id: str, queries: int, chunks: int
) -> tuple[float, list[float]]:
    """(first search, warm searches) in seconds, each checked for k results over `chunks`."""
    timings: list[float] = []
    async with httpx.AsyncClient(base_url=head.url, timeout=180) as http:
        for index in range(queries + 1):
            started = time.perf_counter()
            answer = await http.get(
                f"/api/workspaces/{workspace_id}/search",
                params={"q": QUERIES[index % len(QUERIES)], "k": 10},
                headers={"Cookie": head.cookie()},
            )
            timings.append(time.perf_counter() - started)
            answer.raise_for_status()
            body = answer.json()
            if body["chunks"] != chunks or len(body["results"]) != 10:
                raise RuntimeError(f"unexpected answer: {str(body)[:300]}")
    return timings[0], timings[1:]


def matrix_product_seconds(chunks: int, queries: int) -> list[float]:
    """The head's matrix product and exact top-k alone, in this process."""
    matrix = np.random.default_rng(1).standard_normal((chunks, DIMENSIONS)).astype(np.float32)
    products = []
    for _ in range(queries):
        started = time.perf_counter()
        np.argsort(-(matrix @ matrix[0]), kind="stable")[:10]
        products.append(time.perf_counter() - started)
    return products


def main(chunks: int, queries: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        with EmbeddedMongo(work / "mongo", in_memory=True) as mongo:
            workspace_id = asyncio.run(new_chunk_workspace(mongo.uri, chunks))
            head = HeadProcess.start(work / "head", MONGODB_URI=mongo.uri, MONGODB_DB=DATABASE)
            try:
                head.wait_ready()
                first, warm = asyncio.run(timed_searches(head, workspace_id, queries, chunks))
                rss_mib = psutil.Process(head.process.pid).memory_info().rss / 2**20
            finally:
                head.stop()
    print_table(
        [f"{chunks} chunks, k=10", "figure"],
        [
            ["first search (the head loads the matrix), ms", f"{first * 1000:.0f}"],
            [f"warm search over HTTP, p50 of {queries}, ms", f"{median(warm) * 1000:.1f}"],
            [
                "of which matrix product + top-k, p50, ms",
                f"{median(matrix_product_seconds(chunks, queries)) * 1000:.1f}",
            ],
            ["head process RSS after the searches, MiB", f"{rss_mib:.0f}"],
        ],
    )


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=20)
    options = parser.parse_args()
    main(options.chunks, options.queries)
