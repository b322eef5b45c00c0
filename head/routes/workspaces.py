"""The workspace state a browser refetches (MongoDB is the source of truth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

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
