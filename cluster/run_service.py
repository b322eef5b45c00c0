"""`indexer driver`: the head's long-lived run driver, one process attached to the head's Ray.

A run's driver that starts with the run pays for a Python process, `import ray`, attaching
to the cluster, a MongoDB client and its aggregator's worker before its first page: about a
second of a run that needs one. So the head keeps one driver process up for all its local
runs: it attaches once, warms the embed pool and a set of parser actors (INDEXER_WARM), keeps
them warm between runs, and runs each run as a task of its own.

Isolation: a run's failure ends only its task; a cancel cancels its task, kills the actors
whose calls were cut short and its aggregator, and is answered once nothing of the run can
write any more. Untrusted bytes are parsed in supervised actors, never here; if this process
dies anyway, the head fails the runs it held (they resume when started again) and starts a
new one. Its Ray and the head live on.

The head talks to it over its standard streams, one JSON object per line:

    head → driver   {"op": "run", "workspaceId": W, "jobId": J}
                    {"op": "cancel", "jobId": J}
                    {"op": "embed", "queryId": Q, "text": T}     a search query's vector
                    {"op": "stop"}            cancel every run, then exit
    driver → head   {"event": "attached"}     on Ray, MongoDB open
                    {"event": "warm", "embed": {...}}   or {"event": "cold", "error": ...}
                    {"event": "ended", "jobId": J, "status": S, "error": E}
                    {"event": "cancelled", "jobId": J}
                    {"event": "embedded", "queryId": Q, "vector": [...]}  or ..., "error": E}

End of input (the head is gone) lets the runs going finish, then the process exits. Ray and
everything else that writes to standard output writes to the log (standard error) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import IO, Any

from cluster.driver import RunDriver
from core.errors import IndexerError
from core.jobs import failure_message, finish_job_if_active
from core.settings import Settings

logger = logging.getLogger(__name__)

# While no run is going, the warm actors are asked this often whether they are still there
# (an actor that left is started again); each question also counts as use, so they stay.
KEEP_WARM_INTERVAL_S = 60.0
# Warming that waits longer (actors that find no room on the cluster) is given up, and
# tried again at the next interval; runs start their own actors meanwhile.
WARM_TIMEOUT_S = 300.0


class DriverService:
    """Runs the head's runs as tasks of one RunDriver; see the module docstring."""

    def __init__(self, settings: Settings, out: IO[str]) -> None:
        self._settings = settings
        self._out = out
        self._driver = RunDriver(settings, prepare=True)
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._queries: set[asyncio.Task[None]] = set()
        self._warming: asyncio.Task[None] | None = None

    async def serve(self, commands: asyncio.StreamReader) -> None:
        """Attach, warm, then follow commands until `stop` or the end of input."""
        await self._driver.open()
        self._say(event="attached")
        self._warming = asyncio.create_task(self._keep_warm())
        try:
            while line := await commands.readline():
                if not await self._handle(line):
                    return
            # the head is gone: the runs going finish, nothing new comes
            await asyncio.gather(*self._runs.values(), return_exceptions=True)
        finally:
            for task in (self._warming, *self._queries):
                task.cancel()
            await asyncio.gather(self._warming, *self._queries, return_exceptions=True)
            await self._driver.aclose()

    async def _handle(self, line: bytes) -> bool:
        """One command; False once told to stop."""
        try:
            command = json.loads(line)
            op = command["op"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed command (%d bytes)", len(line))
            return True
        if op == "run":
            self._start(str(command["workspaceId"]), str(command["jobId"]))
        elif op == "cancel":
            await self._cancel(str(command["jobId"]))
        elif op == "embed":
            query = asyncio.create_task(self._embed(str(command["queryId"]), str(command["text"])))
            self._queries.add(query)
            query.add_done_callback(self._queries.discard)
        elif op == "stop":
            await asyncio.gather(*(self._cancel(job_id) for job_id in list(self._runs)))
            return False
        return True

    def _start(self, workspace_id: str, job_id: str) -> None:
        task = asyncio.create_task(self._run(workspace_id, job_id))
        self._runs[job_id] = task
        task.add_done_callback(lambda _: self._runs.pop(job_id, None))

    async def _run(self, workspace_id: str, job_id: str) -> None:
        """One run; says how it ended (a cancelled one is answered by `_cancel`)."""
        try:
            summary = await self._driver.run(workspace_id, job_id=job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # failed before its pages started: the job says why
            if not isinstance(exc, IndexerError):
                logger.error("run %s failed", job_id, exc_info=exc)
            error = failure_message(exc)
            with contextlib.suppress(Exception):  # MongoDB away: its lease expires the job
                await finish_job_if_active(self._driver.db, job_id, "failed", error=error)
            self._say(event="ended", jobId=job_id, status="failed", error=error)
            return
        self._say(event="ended", jobId=job_id, status=summary.status, error=summary.error)

    async def _embed(self, query_id: str, text: str) -> None:
        """Answer a search query with its vector, or with why there is none."""
        try:
            vector = await self._driver.embed_query(text)
        except Exception as exc:  # the head answers the search with the reason
            logger.warning("a search query was not embedded: %s", failure_message(exc))
            self._say(event="embedded", queryId=query_id, error=failure_message(exc))
            return
        self._say(event="embedded", queryId=query_id, vector=vector)

    async def _cancel(self, job_id: str) -> None:
        """Cancel a run and answer once it has let go of everything (see `RunDriver.run`)."""
        task = self._runs.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._say(event="cancelled", jobId=job_id)

    async def _keep_warm(self) -> None:
        if not self._settings.warm:
            return
        while True:
            if not self._runs:
                try:
                    embed = await asyncio.wait_for(self._driver.warm(), WARM_TIMEOUT_S)
                    self._say(event="warm", embed=embed)
                except asyncio.CancelledError:
                    raise
                except TimeoutError:
                    error = f"warming took longer than {WARM_TIMEOUT_S:.0f} s (no room on Ray?)"
                    logger.warning("%s", error)
                    self._say(event="cold", error=error)
                except Exception as exc:  # a run may still start its own actors
                    logger.warning("warming failed: %s", failure_message(exc))
                    self._say(event="cold", error=failure_message(exc))
            await asyncio.sleep(KEEP_WARM_INTERVAL_S)

    def _say(self, **message: Any) -> None:
        try:
            self._out.write(json.dumps(message) + "\n")
            self._out.flush()
        except OSError:  # the head is gone (killed): its runs go on, unannounced
            pass


def serve_driver(settings: Settings) -> int:
    """The `indexer driver` command: attach to RAY_ADDRESS and follow the head's commands."""
    from cluster.ray_runtime import connect_ray

    out = _protocol_stream()
    connect_ray(settings.ray_address)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        commands = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
        await DriverService(settings, out).serve(commands)

    asyncio.run(main())
    return 0


def _protocol_stream() -> IO[str]:
    """Standard output for the protocol only: what else writes there (Ray's C++ code,
    prints) goes to standard error."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return protocol
