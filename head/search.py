"""Semantic search over a workspace's chunks: exact top-k by cosine, plus matching concepts.

Vectors are unit-norm, so cosine is a dot product. A workspace's matrix is loaded from
MongoDB once and kept until its index changes (another run finished). The query is
embedded by the embed pool, the model and arithmetic of the chunks' own vectors (the head
asks its run driver), so the head's process loads no model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymongo.asynchronous.database import AsyncDatabase

from core.concepts import candidate_phrases
from core.db import Document
from core.extras import RUN_MODULES, require_extra

SNIPPET_CHARS = 300
MAX_CONCEPTS = 8


@dataclass
class _Matrix:
    key: tuple[Any, ...]
    refs: list[tuple[str, int, int]]  # documentId, chunkNo, pageNo
    vectors: np.ndarray


class Searcher:
    """One per head: per-workspace matrices, and `embed_query` to turn a query into a vector
    (`head.runs.RunLauncher.embed_query`)."""

    def __init__(self, embed_query: Callable[[str], Awaitable[list[float]]]) -> None:
        self._embed_query = embed_query
        self._matrices: dict[str, _Matrix] = {}

    async def search(
        self, db: AsyncDatabase[Document], workspace: Document, query: str, k: int
    ) -> dict[str, Any]:
        """Top-k chunks and matching concepts. What `embed_query` raises when the query
        cannot be embedded (ExtraMissingError, ClusterError: 503s) goes up; a workspace
        without vectors answers without embedding the query."""
        require_extra("search", RUN_MODULES)  # a head-only install: 503 naming the extra
        workspace_id = str(workspace["_id"])
        matrix = await self._matrix(db, workspace)
        hits: list[dict[str, Any]] = []
        if matrix.refs:  # no vectors, nothing to compare a query's vector with
            vector = np.asarray(await self._embed_query(query), dtype=np.float32)
            scores = matrix.vectors @ vector
            top = np.argsort(-scores, kind="stable")[:k]
            hits = await self._describe(db, matrix, top, scores)
        concepts = await _matching_concepts(db, workspace_id, query)
        return {
            "query": query,
            "k": k,
            "chunks": len(matrix.refs),
            "results": hits,
            "concepts": concepts,
        }

    async def _matrix(self, db: AsyncDatabase[Document], workspace: Document) -> _Matrix:
        workspace_id = str(workspace["_id"])
        progress = workspace.get("indexProgress") or {}
        key = (workspace.get("pageCount"), progress.get("updatedAt"), workspace.get("indexStatus"))
        cached = self._matrices.get(workspace_id)
        if cached is not None and cached.key == key:
            return cached
        refs: list[tuple[str, int, int]] = []
        rows: list[bytes] = []
        cursor = db.chunks.find(
            {"workspaceId": workspace_id, "embedding": {"$exists": True}},
            {"documentId": 1, "chunkNo": 1, "pageNo": 1, "embedding": 1},
        )
        async for chunk in cursor:
            refs.append((chunk["documentId"], chunk["chunkNo"], chunk.get("pageNo", 0)))
            rows.append(bytes(chunk["embedding"])[2:])  # BSON vector: 2 header bytes
        vectors = (
            np.frombuffer(b"".join(rows), dtype="<f4").reshape(len(rows), -1)
            if rows
            else np.zeros((0, 0), dtype=np.float32)
        )
        matrix = _Matrix(key, refs, vectors)
        self._matrices[workspace_id] = matrix
        return matrix

    async def _describe(
        self, db: AsyncDatabase[Document], matrix: _Matrix, top: np.ndarray, scores: np.ndarray
    ) -> list[dict[str, Any]]:
        picked = [matrix.refs[i] for i in top]
        # k point lookups on the (documentId, chunkNo) index: an $or over k keys is a
        # collection scan on SecantusDB 0.7
        found = await asyncio.gather(
            *(
                db.chunks.find_one({"documentId": d, "chunkNo": c}, {"text": 1})
                for d, c, _ in picked
            )
        )
        texts = {
            (d, c): (chunk or {}).get("text", "")
            for (d, c, _), chunk in zip(picked, found, strict=True)
        }
        names = await _filenames(db, {d for d, _, _ in picked})
        return [
            {
                "documentId": d,
                "filename": names.get(d, ""),
                "chunkNo": c,
                "pageNo": p,
                "page": p + 1,
                "score": round(float(scores[i]), 4),
                "snippet": texts.get((d, c), "")[:SNIPPET_CHARS],
            }
            for i, (d, c, p) in zip(top, picked, strict=True)
        ]


async def _filenames(db: AsyncDatabase[Document], document_ids: set[str]) -> dict[str, str]:
    from bson import ObjectId

    ids = [ObjectId(d) for d in document_ids if ObjectId.is_valid(d)]
    cursor = db.documents.find({"_id": {"$in": ids}}, {"filename": 1})
    return {str(d["_id"]): d.get("filename", "") async for d in cursor}


async def _matching_concepts(
    db: AsyncDatabase[Document], workspace_id: str, query: str
) -> list[dict[str, Any]]:
    ids = sorted({concept_id for concept_id, _ in candidate_phrases(query)})
    if not ids:
        return []
    cursor = (
        db.concepts.find(
            {"workspaceId": workspace_id, "conceptId": {"$in": ids}},
            {"conceptId": 1, "label": 1, "score": 1, "chunkCount": 1},
        )
        .sort([("score", -1), ("conceptId", 1)])
        .limit(MAX_CONCEPTS)
    )
    return [
        {"conceptId": c["conceptId"], "label": c["label"], "chunkCount": c["chunkCount"]}
        async for c in cursor
    ]
