"""The `jobs` collection: one document per indexing run, and the one-run-per-workspace rule.

A run is `active` from the moment it is requested until it ends; a unique partial index on
(workspaceId) over active runs (core/db.py) makes a second request fail atomically, whoever sends it
(CLI, head, admin retry). Status mirrors the Ray job when there is one:
queued → pending → running → succeeded | failed | stopped | cancelled.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from core.db import Document, parse_object_id
from core.errors import IndexerError

ACTIVE_STATUSES = ("queued", "pending", "running")
FINAL_STATUSES = ("succeeded", "failed", "stopped", "cancelled")


class RunAlreadyActiveError(IndexerError):
    """The workspace already has a run queued or going."""

    def __init__(self, workspace_id: str) -> None:
        super().__init__(f"workspace {workspace_id} already has a run going")
        self.workspace_id = workspace_id


async def create_job(
    db: AsyncDatabase[Document], workspace_id: str, *, mode: str, requested_by: str
) -> str:
    """Insert a queued, active job; RunAlreadyActiveError when one is going already."""
    try:
        result = await db.jobs.insert_one(
            {
                "workspaceId": workspace_id,
                "status": "queued",
                "active": True,
                "mode": mode,
                "requestedBy": requested_by,
                "queuedAt": datetime.now(UTC),
                "rayJobId": None,
            }
        )
    except DuplicateKeyError:
        raise RunAlreadyActiveError(workspace_id) from None
    return str(result.inserted_id)


async def update_job(db: AsyncDatabase[Document], job_id: str, **fields: Any) -> None:
    """Set fields; a final status also releases the workspace for the next run."""
    update: dict[str, Any] = {"$set": {**fields, "updatedAt": datetime.now(UTC)}}
    if fields.get("status") in FINAL_STATUSES:
        update["$unset"] = {"active": ""}
        update["$set"]["endedAt"] = datetime.now(UTC)
    await db.jobs.update_one({"_id": ObjectId(job_id)}, update)


async def finish_job_if_active(
    db: AsyncDatabase[Document], job_id: str, status: str, **fields: Any
) -> bool:
    """Move an active job to a final status; False when it had ended already (a race lost)."""
    now = datetime.now(UTC)
    result = await db.jobs.update_one(
        {"_id": ObjectId(job_id), "active": True},
        {
            "$set": {**fields, "status": status, "endedAt": now, "updatedAt": now},
            "$unset": {"active": ""},
        },
    )
    return result.modified_count == 1


async def find_job(db: AsyncDatabase[Document], job_id: str) -> Document | None:
    oid = parse_object_id(job_id)
    return None if oid is None else await db.jobs.find_one({"_id": oid})


def public_job(job: Document) -> dict[str, Any]:
    """A job as the admin API shows it (ids as strings, datetimes as ISO 8601)."""
    shown: dict[str, Any] = {}
    for key, value in job.items():
        if key == "_id":
            shown["id"] = str(value)
        elif isinstance(value, datetime):
            shown[key] = value.isoformat()
        elif isinstance(value, ObjectId):
            shown[key] = str(value)
        else:
            shown[key] = value
    shown.pop("active", None)
    return shown
