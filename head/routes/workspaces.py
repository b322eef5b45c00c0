"""The workspace state a browser refetches (MongoDB is the source of truth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from core.jobs import RunAlreadyActiveError
from core.workspaces import find_workspace, public_state, role_of
from head.deps import Identity, State

router = APIRouter(prefix="/api/workspaces", tags=["workspaces"])


@router.get("/{workspace_id}")
async def get_workspace(workspace_id: str, identity: Identity, state: State) -> dict[str, Any]:
    """Name, role, indexStatus, indexProgress, pageCount. 401 no session, 403 not a member,
    404 unknown or malformed id."""
    workspace = await find_workspace(state.db, workspace_id)
    if workspace is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Workspace not found")
    role = role_of(workspace, identity.user_id)
    if role is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Access denied")
    return public_state(workspace, role)


@router.post("/{workspace_id}/index", status_code=status.HTTP_202_ACCEPTED)
async def start_indexing(
    workspace_id: str, identity: Identity, state: State, request: Request
) -> dict[str, str]:
    """Start a run (owner only): 202 with the job id, 409 while one is going."""
    workspace = await find_workspace(state.db, workspace_id)
    if workspace is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Workspace not found")
    role = role_of(workspace, identity.user_id)
    if role is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Access denied")
    if role != "owner":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Only the owner can start indexing")
    try:
        return await request.app.state.runs.start(workspace_id, requested_by=identity.user_id)
    except RunAlreadyActiveError:
        raise HTTPException(status.HTTP_409_CONFLICT, "Indexing is already running") from None
