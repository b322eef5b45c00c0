"""The `jobs` collection: one document per indexing run, and the one-run-per-workspace rule.

A run is `active` from the moment it is requested until it ends; a unique partial index on
(workspaceId) over active runs (core/db.py) makes a second request fail atomically, whoever sends it
(CLI, head, admin retry). Status mirrors the Ray job when there is one:
queued → pending → running → succeeded | failed | stopped | cancelled.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from core.db import Document, parse_object_id
from core.errors import IndexerError, RunError, StorageError

ACTIVE_STATUSES = ("queued", "pending", "running")
FINAL_STATUSES = ("succeeded", "failed", "stopped", "cancelled")
# A running driver beats every 10 s (cluster/driver.py); three missed beats expire its run.
RUNNING_LEASE = timedelta(seconds=30)
# A queued or pending run has no driver yet (e.g. a Ray job waiting for resources).
QUEUED_LEASE = timedelta(minutes=30)
# A run that ends while MongoDB is away keeps trying this long to record how it ended.
OUTCOME_PATIENCE_S = 300.0
OUTCOME_RETRY_S = 1.0
MAX_ERROR_CHARS = 500
# PyMongo appends its timeouts and the whole topology to a message: not for people.
_PYMONGO_DETAILS = re.compile(r" \(configured timeouts:.*|, Timeout: .*|, Topology Description: .*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RunAlreadyActiveError(IndexerError):
    """The workspace already has a run queued or going."""

    def __init__(self, workspace_id: str) -> None:
        super().__init__(f"workspace {workspace_id} already has a run going")
        self.workspace_id = workspace_id


async def create_job(
    db: AsyncDatabase[Document], workspace_id: str, *, mode: str, requested_by: str
) -> str:
    """Insert a queued, active job; RunAlreadyActiveError when one is going already.

    An active job whose driver stopped sending heartbeats (killed, machine lost) is expired
    first, so a crashed run never blocks the workspace for good.
    """
    job = {
        "workspaceId": workspace_id,
        "status": "queued",
        "active": True,
        "mode": mode,
        "requestedBy": requested_by,
        "rayJobId": None,
    }
    for attempt in range(2):
        try:
            result = await db.jobs.insert_one({**job, "queuedAt": datetime.now(UTC)})
            return str(result.inserted_id)
        except DuplicateKeyError:
            if attempt == 1 or not await _expire_lost_run(db, workspace_id):
                raise RunAlreadyActiveError(workspace_id) from None
    raise AssertionError("unreachable")


async def _expire_lost_run(db: AsyncDatabase[Document], workspace_id: str) -> bool:
    """Fail the workspace's active job if its lease ran out; True when it is gone."""
    job = await db.jobs.find_one({"workspaceId": workspace_id, "active": True})
    if job is None:
        return True  # it ended meanwhile
    now = datetime.now(UTC)
    if job.get("heartbeatAt") is not None:
        lost = now - job["heartbeatAt"] > RUNNING_LEASE
    else:
        lost = now - job.get("queuedAt", now) > QUEUED_LEASE
    if not lost:
        return False
    return await finish_job_if_active(
        db, str(job["_id"]), "failed", error="driver lost: its lease expired"
    )


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


async def finish_job_patiently(
    db: AsyncDatabase[Document],
    job_id: str,
    status: str,
    *,
    patience_s: float = OUTCOME_PATIENCE_S,
    **fields: Any,
) -> bool:
    """`finish_job_if_active`, tried again while MongoDB cannot be reached: a run that failed
    because the server went away records so once it is back, instead of leaving its job
    `running` (and the workspace blocked) until the lease runs out.

    Raises:
        StorageError: MongoDB stayed unreachable for `patience_s`.
    """
    deadline = time.monotonic() + patience_s
    retried = False
    while True:
        try:
            if await finish_job_if_active(db, job_id, status, **fields):
                return True
            if not retried:
                return False
            # An attempt whose reply was lost may have been applied: then it is ours.
            job = await db.jobs.find_one({"_id": ObjectId(job_id)}, {"status": 1})
            return job is not None and job.get("status") == status
        except ConnectionFailure as exc:
            if time.monotonic() >= deadline:
                raise StorageError(
                    f"MongoDB unavailable: run {job_id} ended {status} but could not record it"
                ) from exc
        retried = True
        await asyncio.sleep(OUTCOME_RETRY_S)


def failure_message(exc: BaseException) -> str:
    """One clear line for a failed run's job and its `index:failed` event.

    The cause of a Ray task error rather than its remote traceback; a MongoDB outage said
    as such, with what to do; never longer than MAX_ERROR_CHARS.
    """
    cause = exc
    while isinstance(inner := getattr(cause, "cause", None), BaseException) and inner is not cause:
        cause = inner
    if isinstance(cause, RunError):
        return one_line(cause.message)
    if isinstance(cause, PyMongoError):
        detail = _PYMONGO_DETAILS.sub("", one_line(str(cause)))
        return one_line(
            f"MongoDB unavailable ({type(cause).__name__}: {detail}); "
            "the pages done so far are kept: run the index again to resume"
        )
    if isinstance(cause, IndexerError):
        return one_line(str(cause))
    return one_line(f"{type(cause).__name__}: {one_line(str(cause))}")


def one_line(text: str) -> str:
    """The first non-empty line of `text`, without terminal colours, at most MAX_ERROR_CHARS."""
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return lines[0][:MAX_ERROR_CHARS] if lines else ""


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
