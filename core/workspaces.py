"""Workspace records: creation by operators and the state a browser refetches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from core.db import Document, parse_object_id

EMPTY_PROGRESS: dict[str, Any] = {
    "phase": "fetch",
    "docsDone": 0,
    "docsTotal": 0,
    "pagesDone": 0,
    "pagesTotal": 0,
}


async def create_workspace(
    db: AsyncDatabase[Document], *, name: str, owner_id: str, member_ids: list[str]
) -> ObjectId:
    """Insert an idle workspace and return its id."""
    now = datetime.now(UTC)
    result = await db.workspaces.insert_one(
        {
            "name": name,
            "ownerId": owner_id,
            "members": [{"userId": m, "addedAt": now} for m in member_ids if m != owner_id],
            "indexStatus": "idle",
            "indexProgress": dict(EMPTY_PROGRESS, updatedAt=now),
            "pageCount": 0,
            "createdAt": now,
        }
    )
    return result.inserted_id


async def find_workspace(db: AsyncDatabase[Document], workspace_id: str) -> Document | None:
    """The workspace with that id, or None for an unknown or malformed id."""
    oid = parse_object_id(workspace_id)
    if oid is None:
        return None
    return await db.workspaces.find_one({"_id": oid})


def public_state(workspace: Document, role: str | None = None) -> dict[str, Any]:
    """The JSON a browser refetches: the same fields the events announce."""
    progress = dict(workspace.get("indexProgress") or EMPTY_PROGRESS)
    updated = progress.get("updatedAt")
    if isinstance(updated, datetime):
        progress["updatedAt"] = updated.isoformat()
    state: dict[str, Any] = {
        "id": str(workspace["_id"]),
        "name": workspace.get("name", ""),
        "indexStatus": workspace.get("indexStatus", "idle"),
        "indexProgress": progress,
        "pageCount": int(workspace.get("pageCount", 0)),
    }
    if role is not None:
        state["role"] = role
    return state


def role_of(workspace: Document, user_id: str) -> str | None:
    """The spec's getWorkspaceRole on a loaded workspace: ids compared as strings.

    Only string and ObjectId ids take part (the spec's `toString()` throws on a missing
    one), so a member entry without `userId` matches nobody, not a user called "None".
    """
    if _id_text(workspace.get("ownerId")) == user_id:
        return "owner"
    members = workspace.get("members") or []
    for member in members:
        if isinstance(member, dict) and _id_text(member.get("userId")) == user_id:
            return "viewer"
    return None


def _id_text(value: object) -> str | None:
    """A stored user id as text; None for anything that is not an id (None, numbers, ...)."""
    if isinstance(value, str | ObjectId):
        return str(value)
    return None
