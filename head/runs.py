"""Starting and cancelling runs from the head (browsers' start button, admin API).

Small workspaces (up to INDEXER_MAX_LOCAL_PAGES pages) run as a child process of the head,
`indexer index ID --job-id J`, on the Ray at RAY_ADDRESS (or a local one); larger ones are
submitted as Ray Jobs to RAY_JOBS_ADDRESS. The child runs in a session of its own, so a
cancel kills it with every Ray process it started: nothing writes after a cancel returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from typing import Any

from bson import ObjectId

from core.db import require_uri
from core.jobs import create_job, find_job, finish_job_if_active, update_job
from head.broadcast import broadcast
from head.state import HeadState

logger = logging.getLogger(__name__)

BYTES_PER_PAGE_ESTIMATE = 50_000
CANCEL_TIMEOUT_S = 30.0


class RunLauncher:
    """Owns the child processes of local runs; one per head."""

    def __init__(self, state: HeadState) -> None:
        self._state = state
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._cancelling: set[str] = set()

    async def start(self, workspace_id: str, requested_by: str) -> dict[str, str]:
        """Queue a run and launch it; RunAlreadyActiveError when one is going."""
        settings = self._state.settings
        db = self._state.db
        pages = await self.estimate_pages(workspace_id)
        remote = settings.ray_jobs_address is not None and pages > settings.max_local_pages
        mode = "ray-job" if remote else "local"
        job_id = await create_job(db, workspace_id, mode=mode, requested_by=requested_by)
        await db.workspaces.update_one(
            {"_id": ObjectId(workspace_id)}, {"$set": {"indexStatus": "queued"}}
        )
        try:
            if remote:
                await self._submit(workspace_id, job_id)
            else:
                await self._spawn(workspace_id, job_id)
        except (OSError, RuntimeError, ConnectionError) as exc:
            await finish_job_if_active(db, job_id, "failed", error=f"launch failed: {exc}")
            raise
        return {"jobId": job_id, "mode": mode}

    async def estimate_pages(self, workspace_id: str) -> int:
        """Known page counts, plus a size-based guess for documents never fetched."""
        total = 0
        cursor = self._state.db.documents.find(
            {"workspaceId": workspace_id}, {"pageCount": 1, "bytes": 1}
        )
        async for document in cursor:
            known = document.get("pageCount")
            total += (
                int(known)
                if known
                else max(1, int(document.get("bytes", 0)) // BYTES_PER_PAGE_ESTIMATE)
            )
        return total

    async def _spawn(self, workspace_id: str, job_id: str) -> None:
        settings = self._state.settings
        env = dict(os.environ)
        env.update(
            MONGODB_URI=require_uri(settings),
            MONGODB_DB=settings.mongodb_db,
            HEAD_URL=settings.head_url,
            NEXTAUTH_SECRET=settings.require_nextauth_secret().reveal(),
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cluster.cli",
            "index",
            workspace_id,
            "--job-id",
            job_id,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self._children[job_id] = process
        await update_job(
            self._state.db, job_id, driverPid=process.pid, driverHost=socket.gethostname()
        )
        watcher = asyncio.create_task(self._watch(job_id, process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, job_id: str, process: asyncio.subprocess.Process) -> None:
        """A driver that exits without ending its job (crash, OOM kill) fails it."""
        code = await process.wait()
        self._children.pop(job_id, None)
        if job_id in self._cancelling:
            return
        if await finish_job_if_active(
            self._state.db, job_id, "failed", error=f"driver exited with code {code}"
        ):
            logger.warning("run %s: driver exited with code %s", job_id, code)

    async def _submit(self, workspace_id: str, job_id: str) -> None:
        from cluster.jobs import submit_ray_job

        settings = self._state.settings
        ray_job_id = await asyncio.to_thread(
            submit_ray_job, settings, workspace_id, job_id, settings.ray_jobs_address
        )
        await update_job(self._state.db, job_id, rayJobId=ray_job_id, status="pending")

    async def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Stop a run; None when it is not going. The room hears `index:failed cancelled`."""
        db = self._state.db
        job = await find_job(db, job_id)
        if job is None or not job.get("active"):
            return None
        self._cancelling.add(job_id)
        try:
            await self._stop(job)
            if not await finish_job_if_active(db, job_id, "cancelled", error="cancelled"):
                return None  # it ended by itself meanwhile
        finally:
            self._cancelling.discard(job_id)
        workspace_id = job["workspaceId"]
        workspace = await db.workspaces.find_one({"_id": ObjectId(workspace_id)})
        phase = ((workspace or {}).get("indexProgress") or {}).get("phase", "fetch")
        await db.workspaces.update_one(
            {"_id": ObjectId(workspace_id)},
            {"$set": {"indexStatus": "failed", "indexError": "cancelled"}},
        )
        await broadcast(
            self._state, workspace_id, "index:failed", {"error": "cancelled", "phase": phase}
        )
        return await find_job(db, job_id)

    async def _stop(self, job: dict[str, Any]) -> None:
        job_id = str(job["_id"])
        process = self._children.get(job_id)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.wait_for(process.wait(), CANCEL_TIMEOUT_S)
        elif job.get("driverPid") and job.get("driverHost") == socket.gethostname():
            # started by another head on this machine
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(job["driverPid"]), signal.SIGKILL)
        elif job.get("rayJobId") and self._state.settings.ray_jobs_address:
            from cluster.jobs import stop_ray_job

            await asyncio.to_thread(
                stop_ray_job, self._state.settings.ray_jobs_address, job["rayJobId"]
            )

    async def aclose(self) -> None:
        """On head shutdown local runs go on: they report to MongoDB, not to this process."""
        for watcher in list(self._watchers):
            watcher.cancel()
