"""Starting and cancelling runs from the head (browsers' start button, admin API).

Small workspaces (up to INDEXER_MAX_LOCAL_PAGES pages) run on the head's own run driver
(`indexer driver`, see cluster/run_service.py): one child process, attached to RAY_ADDRESS
or, when that is unset, to the local Ray the head starts (cluster/local_runtime.py). The
driver stays up between runs with the embed pool and parser actors warm, so a small
workspace is ready about a second after Start. Larger workspaces are submitted as Ray Jobs
to RAY_JOBS_ADDRESS.

With INDEXER_WARM on (the default) the Ray and the driver start with the head and warm up
at once; `/readyz` says `warming` until then. Otherwise they start with the first run.
Stopping the head stops the driver (its runs fail with a clear error, and resume when
started again) and the local Ray, unless another head on this machine still uses it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import IO, Any

from bson import ObjectId

from core.db import require_uri
from core.errors import ClusterError
from core.extras import RUN_MODULES, require_extra
from core.jobs import create_job, find_job, finish_job_if_active, update_job
from head.broadcast import broadcast
from head.state import HeadState

logger = logging.getLogger(__name__)

BYTES_PER_PAGE_ESTIMATE = 50_000
CANCEL_TIMEOUT_S = 30.0
# A search query waits this long for its vector: a cold embed pool loads its model first.
QUERY_TIMEOUT_S = 120.0
DRIVER_STOP_TIMEOUT_S = 20.0
DRIVER_LOG = "driver-{pid}.log"  # per head: two heads may share a data directory


class RunLauncher:
    """Owns the head's Ray (when it starts one) and its run driver; one per head."""

    def __init__(self, state: HeadState) -> None:
        self._state = state
        self._driver: DriverProcess | None = None
        self._driver_lock = asyncio.Lock()
        self._runtime: Any = None  # cluster.local_runtime.LocalRayRuntime, once acquired
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.status = "cold"  # for /readyz: cold, starting, warming, ready, unavailable: ...

    def open(self) -> None:
        """With INDEXER_WARM on, start the Ray and the driver now; the head serves meanwhile."""
        if self._state.settings.warm:
            self._spawn_task(self._driver_process())

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
        if remote:
            try:
                await self._submit(workspace_id, job_id)
            except (OSError, RuntimeError, ConnectionError) as exc:
                await finish_job_if_active(db, job_id, "failed", error=f"launch failed: {exc}")
                raise
        else:
            # answered at once; a driver still starting takes the run when it is up
            self._spawn_task(self._dispatch(workspace_id, job_id))
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

    async def embed_query(self, text: str) -> list[float]:
        """A search query's vector, from the embed pool through the run driver: the head
        loads no model. ClusterError when there is none to be had (the driver cannot start,
        the pool cannot answer in QUERY_TIMEOUT_S)."""
        try:
            driver = await self._driver_process()
            return await asyncio.wait_for(driver.embed_query(text), QUERY_TIMEOUT_S)
        except TimeoutError:
            raise ClusterError(
                f"search: the embedding model did not answer in {QUERY_TIMEOUT_S:.0f} s"
            ) from None
        except ClusterError:
            raise
        except Exception as exc:  # the driver cannot start, or the pool cannot encode
            logger.warning("search: no query vector: %s", exc)
            raise ClusterError("search: the embedding model cannot be reached") from None

    async def _dispatch(self, workspace_id: str, job_id: str) -> None:
        try:
            driver = await self._driver_process()
        except Exception as exc:  # no Ray here, or it cannot start: the run fails, clearly
            await self._run_lost(job_id, f"the run cannot start: {exc}")
            return
        driver.run(workspace_id, job_id)
        await update_job(
            self._state.db, job_id, driverPid=driver.pid, driverHost=socket.gethostname()
        )

    async def _driver_process(self) -> DriverProcess:
        """The live driver, started (with the local Ray when RAY_ADDRESS is unset) if needed."""
        async with self._driver_lock:
            if self._driver is not None and self._driver.alive:
                return self._driver
            if self._closing:
                raise RuntimeError("the head is stopping")
            self.status = "starting"
            try:
                require_extra("indexing", RUN_MODULES)  # a head-only install runs nothing
                address = await self._ray_address()
                self._driver = await DriverProcess.spawn(self._state, address, self._on_event)
            except Exception as exc:
                self.status = f"unavailable: {exc}"
                raise
            self.status = "warming" if self._state.settings.warm else "ready"
            self._spawn_task(self._watch(self._driver))
            return self._driver

    async def _ray_address(self) -> str:
        settings = self._state.settings
        if settings.ray_address is not None:
            return settings.ray_address
        if self._runtime is None:
            from cluster.local_runtime import LocalRayRuntime

            runtime = LocalRayRuntime(settings.data_dir)
            await asyncio.to_thread(runtime.acquire)
            self._runtime = runtime
        return str(self._runtime.info.address)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "warm":
            self.status = "ready"
        elif kind == "cold" and self.status == "warming":
            self.status = "ready"  # runs start their own actors; warming tries again later
        elif kind == "ended" and event.get("status") == "failed":
            self._spawn_task(self._settle_workspace(str(event["jobId"]), event.get("error")))

    async def _watch(self, driver: DriverProcess) -> None:
        """A driver that exits by itself (crash, OOM kill) fails the runs it held, and the
        next one starts (at once with INDEXER_WARM, else with the next run)."""
        code = await driver.wait()
        if self._closing:
            return
        logger.warning("the run driver exited with code %s", code)
        self.status = "cold"
        for job_id in driver.jobs():
            await self._run_lost(job_id, f"the run's driver exited with code {code}")
        if self._state.settings.warm:
            self._spawn_task(self._driver_process())

    async def _run_lost(self, job_id: str, error: str) -> None:
        """Record a run that ended without its driver saying so, and tell its room."""
        error = f"{error}; run the index again to resume"
        if await finish_job_if_active(self._state.db, job_id, "failed", error=error):
            await self._settle_workspace(job_id, error)

    async def _settle_workspace(self, job_id: str, error: str | None) -> None:
        """A failed run whose workspace still says queued or indexing (its aggregator never
        got to say otherwise): the workspace fails too, and its room hears it."""
        db = self._state.db
        job = await find_job(db, job_id)
        if job is None:
            return
        workspace_id = job["workspaceId"]
        error = error or "failed"
        result = await db.workspaces.find_one_and_update(
            {"_id": ObjectId(workspace_id), "indexStatus": {"$in": ["queued", "indexing"]}},
            {"$set": {"indexStatus": "failed", "indexError": error}},
        )
        if result is not None:
            phase = (result.get("indexProgress") or {}).get("phase", "fetch")
            await broadcast(
                self._state, workspace_id, "index:failed", {"error": error, "phase": phase}
            )

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
        await self._stop(job)
        if not await finish_job_if_active(db, job_id, "cancelled", error="cancelled"):
            return None  # it ended by itself meanwhile
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
        """Stop the run's driver work. A run of this head's driver is cancelled there and
        answered once nothing of it writes; a run of another driver (another head, a
        terminal) sees its job end at its next heartbeat and stops itself."""
        job_id = str(job["_id"])
        driver = self._driver
        if driver is not None and job_id in driver.jobs():
            try:
                await asyncio.wait_for(driver.cancel(job_id), CANCEL_TIMEOUT_S)
            except TimeoutError:
                logger.warning(
                    "run %s did not stop in %ss: its driver is restarted", job_id, CANCEL_TIMEOUT_S
                )
                await driver.kill()
        elif job.get("rayJobId") and self._state.settings.ray_jobs_address:
            from cluster.jobs import stop_ray_job

            await asyncio.to_thread(
                stop_ray_job, self._state.settings.ray_jobs_address, job["rayJobId"]
            )

    async def aclose(self) -> None:
        """Stop the driver (its runs fail: run them again to resume) and the local Ray."""
        self._closing = True
        driver = self._driver
        if driver is not None:
            held = driver.jobs()
            await driver.stop(DRIVER_STOP_TIMEOUT_S)
            for job_id in held:
                await self._run_lost(job_id, "the head stopped")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runtime is not None:
            await asyncio.to_thread(self._runtime.release)
            self._runtime = None

    def _spawn_task(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("run launcher: %s", task.exception())


class DriverProcess:
    """The head's end of one `indexer driver` process: commands in, events out."""

    def __init__(self, process: asyncio.subprocess.Process, on_event: Any) -> None:
        self._process = process
        self._on_event = on_event
        self._jobs: set[str] = set()
        self._cancelled: dict[str, asyncio.Future[None]] = {}
        self._queries: dict[str, asyncio.Future[list[float]]] = {}
        self._query_ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read_events())

    @classmethod
    async def spawn(cls, state: HeadState, ray_address: str, on_event: Any) -> DriverProcess:
        from cluster.ray_auth import ray_auth_environment

        settings = state.settings
        env = dict(os.environ)
        env.update(
            MONGODB_URI=require_uri(settings),
            MONGODB_DB=settings.mongodb_db,
            HEAD_URL=settings.head_url,
            NEXTAUTH_SECRET=settings.require_nextauth_secret().reveal(),
            RAY_ADDRESS=ray_address,
            INDEXER_WARM="1" if settings.warm else "0",
            INDEXER_DATA_DIR=str(settings.data_dir),
        )
        env.update(ray_auth_environment(env))
        with _driver_log(settings.data_dir) as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cli.main",
                "driver",
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # a terminal's Ctrl-C reaches the head, which stops it
            )
        return cls(process, on_event)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.returncode is None

    def jobs(self) -> list[str]:
        """The runs it holds now."""
        return sorted(self._jobs)

    def run(self, workspace_id: str, job_id: str) -> None:
        self._jobs.add(job_id)
        self._send({"op": "run", "workspaceId": workspace_id, "jobId": job_id})

    async def cancel(self, job_id: str) -> None:
        """Cancel a run; returns once the driver says nothing of it writes any more."""
        answered = self._cancelled.setdefault(job_id, asyncio.get_running_loop().create_future())
        self._send({"op": "cancel", "jobId": job_id})
        await asyncio.shield(answered)

    async def embed_query(self, text: str) -> list[float]:
        """The query's vector (see `cluster.run_service`); RuntimeError with the driver's
        reason when it has none, or when the driver exits first."""
        query_id = str(next(self._query_ids))
        answer = self._queries[query_id] = asyncio.get_running_loop().create_future()
        try:
            if not self.alive:
                raise RuntimeError("the run driver is not running")
            self._send({"op": "embed", "queryId": query_id, "text": text})
            return await answer
        finally:
            self._queries.pop(query_id, None)

    async def stop(self, timeout_s: float) -> None:
        """Ask it to cancel its runs and exit; kill it when it does not within `timeout_s`."""
        self._send({"op": "stop"})
        try:
            await asyncio.wait_for(self._process.wait(), timeout_s)
        except TimeoutError:
            await self.kill()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def kill(self) -> None:
        from cluster.process_tree import end_session

        await asyncio.to_thread(end_session, self._process.pid, grace_s=0)
        await self._process.wait()

    async def wait(self) -> int:
        code = await self._process.wait()
        await asyncio.gather(self._reader, return_exceptions=True)
        for answered in self._cancelled.values():
            if not answered.done():
                answered.set_result(None)  # gone: nothing of its runs writes any more
        for answer in self._queries.values():
            if not answer.done():
                answer.set_exception(RuntimeError(f"the run driver exited with code {code}"))
        return code

    def _send(self, command: dict[str, str]) -> None:
        stdin = self._process.stdin
        if stdin is None or stdin.is_closing() or not self.alive:
            return  # its exit is handled by the head's watcher
        stdin.write((json.dumps(command) + "\n").encode())

    async def _read_events(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            job_id = str(event.get("jobId", ""))
            if kind in ("ended", "cancelled"):
                self._jobs.discard(job_id)
            if kind == "cancelled" and job_id in self._cancelled:
                self._cancelled.pop(job_id).set_result(None)
            if kind == "embedded":
                self._answer_query(event)
                continue
            self._on_event(event)

    def _answer_query(self, event: dict[str, Any]) -> None:
        answer = self._queries.get(str(event.get("queryId")))
        if answer is None or answer.done():
            return  # its search gave up waiting
        if "vector" in event:
            answer.set_result(event["vector"])
        else:
            answer.set_exception(RuntimeError(str(event.get("error", "no vector"))))


def _driver_log(data_dir: Path) -> IO[bytes]:
    """The driver's standard error, kept beside the data, one file per head process."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return (data_dir / DRIVER_LOG.format(pid=os.getpid())).open("ab")
