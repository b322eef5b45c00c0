"""The admin API: jobs, cancel, retry of failed documents, sockets. Bearer ADMIN_TOKEN."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from core.jobs import RunAlreadyActiveError, find_job, public_job
from core.workspaces import find_workspace
from head.deps import State, check_bearer

MAX_PAGE_SIZE = 200


async def require_admin(request: Request, state: State) -> None:
    """401 without a bearer token, 403 with a wrong one (compared in constant time)."""
    check_bearer(request, state.settings.admin_token)


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.get("/jobs")
async def list_jobs(
    state: State,
    workspace_id: Annotated[str | None, Query(alias="workspaceId", max_length=64)] = None,
    job_status: Annotated[str | None, Query(alias="status", max_length=16)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> dict[str, Any]:
    """Runs, newest first; filter by workspace and status; paginated."""
    query: dict[str, Any] = {}
    if workspace_id is not None:
        query["workspaceId"] = workspace_id
    if job_status is not None:
        query["status"] = job_status
    total = await state.db.jobs.count_documents(query)
    cursor = state.db.jobs.find(query).sort("queuedAt", -1).skip((page - 1) * page_size)
    jobs = [public_job(j) for j in await cursor.limit(page_size).to_list()]
    return {"total": total, "page": page, "pageSize": page_size, "jobs": jobs}


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, state: State) -> dict[str, Any]:
    """One run: timings per phase, counts, failed documents with their errors."""
    job = await find_job(state.db, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Job not found")
    return public_job(job)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, state: State) -> dict[str, Any]:
    """Stop the run (its process or Ray job); status `cancelled`; the room hears
    `index:failed {error: "cancelled", phase}`. 409 when the run is not going."""
    job = await state.runs.cancel(job_id)
    if job is None:
        if await find_job(state.db, job_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Job not found")
        raise HTTPException(status.HTTP_409_CONFLICT, "Job is not running")
    return public_job(job)


@router.post("/workspaces/{workspace_id}/retry-failed", status_code=status.HTTP_202_ACCEPTED)
async def retry_failed(workspace_id: str, state: State) -> dict[str, Any]:
    """Re-run only the failed documents: the others are unchanged and the run skips them."""
    workspace = await find_workspace(state.db, workspace_id)
    if workspace is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Workspace not found")
    result = await state.db.documents.update_many(
        {"workspaceId": workspace_id, "status": "failed"},
        {"$set": {"status": "pending", "error": None}},
    )
    if result.modified_count == 0:
        return {"retried": 0, "jobId": None}
    try:
        started = await state.runs.start(workspace_id, requested_by="admin")
    except RunAlreadyActiveError:
        raise HTTPException(status.HTTP_409_CONFLICT, "A run is already going") from None
    return {"retried": result.modified_count, **started}


@router.get("/sockets")
async def sockets(state: State) -> dict[str, Any]:
    """Connections and workspace rooms on this head (other heads answer for theirs)."""
    rooms = state.sio.manager.rooms.get("/", {})
    workspace_rooms = {
        name: len(members)
        for name, members in rooms.items()
        if isinstance(name, str) and name.startswith("workspace:")
    }
    connected = rooms.get(None, {})
    return {"connections": len(connected), "rooms": workspace_rooms}
