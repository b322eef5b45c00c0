"""`indexer submit`: one run as a Ray Job, optionally followed to its end with a progress bar.

The `jobs` document records the Ray job id and mirrors its status; progress is read from
MongoDB (the source of truth), so following works from any machine that reaches it.
"""

from __future__ import annotations

import asyncio
import time

from pymongo.asynchronous.database import AsyncDatabase

from cluster.jobs import RAY_TO_JOB_STATUS, jobs_client, submit_ray_job
from cluster.progress_bar import ProgressView, progress_of
from core.db import Document, ensure_indexes, open_client, require_uri
from core.errors import RunError
from core.jobs import create_job, find_job, finish_job_if_active, update_job
from core.settings import Settings
from core.workspaces import find_workspace

FOLLOW_INTERVAL_S = 1.0
FOLLOW_TIMEOUT_S = 24 * 3600.0


async def submit_run(settings: Settings, workspace_id: str, address: str, *, wait: bool) -> int:
    """Submit; print the Ray job id; with `wait`, follow it and return the exit code."""
    client = open_client(require_uri(settings))
    try:
        db = client[settings.mongodb_db]
        await ensure_indexes(db)
        workspace = await find_workspace(db, workspace_id)
        if workspace is None:
            raise RunError("fetch", f"no workspace {workspace_id!r}")
        job_id = await create_job(db, workspace_id, mode="ray-job", requested_by="cli")
        try:
            ray_job_id = await asyncio.to_thread(
                submit_ray_job, settings, workspace_id, job_id, address
            )
        except Exception as exc:  # any failure to submit ends the queued job
            await finish_job_if_active(db, job_id, "failed", error=f"submission failed: {exc}")
            raise RunError("fetch", f"Ray job submission failed: {exc}") from None
        await update_job(db, job_id, rayJobId=ray_job_id, status="pending")
        await db.workspaces.update_one(
            {"_id": workspace["_id"]}, {"$set": {"indexStatus": "queued"}}
        )
        print(ray_job_id, flush=True)
        if not wait:
            return 0
        return await _follow(db, address, job_id, ray_job_id, workspace_id)
    finally:
        await client.close()


async def _follow(
    db: AsyncDatabase[Document], address: str, job_id: str, ray_job_id: str, workspace_id: str
) -> int:
    ray_jobs = jobs_client(address)
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    view = ProgressView()
    try:
        while True:
            status = str(await asyncio.to_thread(ray_jobs.get_job_status, ray_job_id))
            await _mirror(db, job_id, status)
            view.show(progress_of(await find_workspace(db, workspace_id)))
            if status not in ("PENDING", "RUNNING") or time.monotonic() > deadline:
                break
            await asyncio.sleep(FOLLOW_INTERVAL_S)
    finally:
        view.close()  # the last state read stays on the terminal
    job = await find_job(db, job_id)
    final = job.get("status") if job else None
    print(f"run {job_id} (Ray job {ray_job_id}): {final}", flush=True)
    return 0 if status == "SUCCEEDED" and final == "succeeded" else 1


async def _mirror(db: AsyncDatabase[Document], job_id: str, ray_status: str) -> None:
    """Copy Ray's view into the jobs document; a driver that died cannot leave it running."""
    status = RAY_TO_JOB_STATUS.get(ray_status, ray_status.lower())
    if status in ("pending", "running"):
        job = await find_job(db, job_id)
        if job is not None and job.get("status") in ("queued", "pending"):
            await update_job(db, job_id, status=status)
    elif status in ("failed", "stopped"):
        await finish_job_if_active(db, job_id, status, error=f"Ray job {ray_status.lower()}")
