"""Workspace REST for browsers: the state they refetch, starting a run, search, previews.

Same access rule as the rooms: 401 without a session, 404 for an unknown or malformed id,
403 for someone who is neither owner nor member.
"""

from __future__ import annotations

from typing import Annotated, Any

from bson import ObjectId
from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.responses import Response
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile

from core.db import PAGES_BUCKET, Document, parse_object_id
from core.extras import RUN_MODULES, require_extra
from core.jobs import RunAlreadyActiveError
from core.workspaces import find_workspace, public_state, role_of
from head.deps import Identity, State
from head.state import HeadState

router = APIRouter(prefix="/api/workspaces", tags=["workspaces"])

MAX_QUERY_CHARS = 500
MAX_FAILED_SHOWN = 100
# Page numbers fit MongoDB's int32 (documents stop far below, at INDEXER_MAX_PAGES); a
# larger one is a client error, not an integer BSON cannot encode.
PAGE_NO_LIMIT = 2**31


async def member_access(
    workspace_id: str, identity: Identity, state: State
) -> tuple[Document, str]:
    """The workspace and the caller's role in it, or the right HTTP error."""
    workspace = await find_workspace(state.db, workspace_id)
    if workspace is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Workspace not found")
    role = role_of(workspace, identity.user_id)
    if role is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Access denied")
    return workspace, role


Access = Annotated[tuple[Document, str], Depends(member_access)]


@router.get("/{workspace_id}")
async def get_workspace(access: Access, state: State) -> dict[str, Any]:
    """Name, role, indexStatus, indexProgress, pageCount, and failed documents with errors."""
    workspace, role = access
    body = public_state(workspace, role)
    cursor = state.db.documents.find(
        {"workspaceId": body["id"], "status": "failed"}, {"filename": 1, "source": 1, "error": 1}
    ).limit(MAX_FAILED_SHOWN)
    body["failedDocuments"] = [
        {
            "id": str(d["_id"]),
            "filename": d.get("filename") or d.get("source", ""),
            "error": d.get("error"),
        }
        async for d in cursor
    ]
    return body


@router.post("/{workspace_id}/index", status_code=status.HTTP_202_ACCEPTED)
async def start_indexing(access: Access, identity: Identity, state: State) -> dict[str, str]:
    """Start a run (owner only): 202 with the job id, 409 while one is going."""
    workspace, role = access
    if role != "owner":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Only the owner can start indexing")
    # a run is started (or submitted) through Ray: without it the job would only fail later
    require_extra("indexing", RUN_MODULES)
    try:
        return await state.runs.start(str(workspace["_id"]), requested_by=identity.user_id)
    except RunAlreadyActiveError:
        raise HTTPException(status.HTTP_409_CONFLICT, "Indexing is already running") from None


@router.get("/{workspace_id}/search")
async def search(
    access: Access,
    state: State,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """Best chunks by cosine similarity to the query (exact top-k), and matching concepts."""
    workspace, _ = access
    return await state.searcher.search(state.db, workspace, q, k)


@router.get("/{workspace_id}/documents/{document_id}/pages/{page_no}/image")
async def page_image(
    access: Access,
    state: State,
    document_id: str,
    page_no: Annotated[int, Path(ge=0, lt=PAGE_NO_LIMIT)],
) -> Response:
    """The page's PNG preview (pages are numbered from 0, as in `pages.pageNo`)."""
    workspace, _ = access
    if parse_object_id(document_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Page not found")
    page = await state.db.pages.find_one(
        {"documentId": document_id, "pageNo": page_no, "workspaceId": str(workspace["_id"])},
        {"image": 1},
    )
    image = (page or {}).get("image") or {}
    return Response(
        await _preview_bytes(state, image),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=300"},
    )


async def _preview_bytes(state: HeadState, image: Document) -> bytes:
    """The PNG: kept in the page document, or (a large one) in GridFS."""
    if isinstance(image.get("png"), bytes):
        return bytes(image["png"])
    file_id = image.get("fileId")
    if not isinstance(file_id, ObjectId):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Page not found")
    try:
        bucket = AsyncGridFSBucket(state.db, bucket_name=PAGES_BUCKET)
        stream = await bucket.open_download_stream(file_id)
    except NoFile:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Page not found") from None
    return await stream.read()
