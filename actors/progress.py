"""The ProgressAggregator: the one writer of a run's progress, and its voice to browsers.

Actors report every page here (fire and forget). The aggregator applies the throttle,
writes `indexProgress` to the workspace in MongoDB, then publishes the event through the
head's publishing path. A sender task does the I/O in order, so workers never wait on it,
and a head that is down only costs dropped notifications: MongoDB still has the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ray
from bson import ObjectId
from pymongo.errors import PyMongoError

from actors.run_progress import ProgressThrottle, RunProgress, progress_key
from actors.telemetry import PipelineMetrics
from core.db import LazyDatabase, ping, retried_once
from core.errors import PublishError
from core.jobs import one_line
from core.publisher import EventPublisher, make_publisher, undelivered_warning
from core.settings import Settings

logger = logging.getLogger(__name__)

TICK_S = 0.5
DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Outgoing:
    """An event for the run's room, and what the workspace stores first (progress, status)."""

    event: str
    payload: dict[str, Any]
    stored: dict[str, Any] | None = None


@ray.remote(num_cpus=0, max_restarts=0)
class ProgressAggregator:
    """One per run. Resources: none (I/O only). Concurrency: async, many calls interleave at
    awaits; state changes happen between them. Not restarted: a lost aggregator fails the run
    (the driver sees it), and the run can be started again, resuming from MongoDB.

    Created before its run is known (a warm driver keeps one ready, so a run does not wait
    for a worker process to start); `start` names the workspace.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._workspace_id = ""
        self._db = LazyDatabase(settings.mongodb_uri.reveal(), settings.mongodb_db)  # type: ignore[union-attr]
        self._progress = RunProgress()
        self._throttle = ProgressThrottle()
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._publisher: EventPublisher | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.events_sent: dict[str, int] = {}
        self._metrics = PipelineMetrics()
        self._started = False  # no update before `index:started`, whatever arrives first
        self._undelivered: str | None = None  # why events reach no head, said once
        self._undelivered_seen = asyncio.Event()
        self._final: dict[str, Any] = {}  # the last progress, with the run's status
        self._ended = asyncio.Event()

    async def ready(self) -> None:
        """Readiness probe. It opens the MongoDB connection and the publisher too: a run
        handed a prepared aggregator pays for neither before its `index:started`."""
        await ping(self._db.get())
        if self._publisher is None:
            self._publisher = make_publisher(self._settings)

    async def start(self, workspace_id: str, docs_total: int) -> None:
        self._workspace_id = workspace_id
        self._progress.docs_total = docs_total
        if self._publisher is None:
            self._publisher = make_publisher(self._settings)
        workspaces = self._db.get().workspaces
        await retried_once(
            lambda: workspaces.update_one(
                {"_id": ObjectId(self._workspace_id)}, {"$set": {"indexStatus": "indexing"}}
            )
        )
        # The driver does not wait for this call (the process may still be starting), so
        # reports can come first: they count, and updates wait until `index:started` is
        # queued, which is after the status write (it may take longer than a tick).
        self._outbox.put_nowait(Outgoing("index:started", {}))
        self._started = True
        self._maybe_update()
        self._tasks = [asyncio.create_task(self._send_loop()), asyncio.create_task(self._tick())]

    def document_fetched(self, document_id: str, pages: int, already_done: int) -> None:
        self._progress.document_fetched(document_id, pages, already_done=already_done)
        self._maybe_update()

    def document_failed(self, document_id: str, phase: str) -> None:
        self._progress.document_failed(document_id)
        self._metrics.failures.inc(tags={"phase": phase})
        self._maybe_update()

    def record(self, phase: str, document_id: str, page_nos: list[int]) -> None:
        self._progress.record(phase, document_id, page_nos)
        self._maybe_update()

    def pages_done(self, document_id: str, page_nos: list[int]) -> None:
        self._progress.pages_finished(document_id, page_nos)
        self._maybe_update()

    def set_phase(self, phase: str) -> None:
        self._progress.late_phase = phase
        self._maybe_update()

    def snapshot(self) -> dict[str, Any]:
        return self._progress.payload(time.monotonic())

    async def ended(self) -> dict[str, Any]:
        """Waits for the run's end (`finish` or `fail`): its last progress and `status`, so
        a terminal's last line says where the run ended (the aggregator leaves soon after)."""
        await self._ended.wait()
        return self._final

    async def undelivered(self) -> str:
        """Waits until an event of this run could not be published; returns the warning
        that says so (the driver writes it on the run's terminal, once)."""
        await self._undelivered_seen.wait()
        assert self._undelivered is not None
        return self._undelivered

    def undelivered_now(self) -> str | None:
        """That warning if an event could not be published so far, else None."""
        return self._undelivered

    async def finish(self, page_count: int) -> dict[str, int]:
        """Last progress, then `index:ready`; waits (bounded) until both were handed over."""
        self._progress.late_phase = "finalize"
        self._queue_update(time.monotonic(), status="ready", page_count=page_count)
        self._outbox.put_nowait(Outgoing("index:ready", {"pageCount": page_count}))
        self._end("ready")
        return await self._close()

    async def fail(self, error: str, phase: str) -> dict[str, int]:
        """`index:failed {error, phase}` as the last event of the run. It goes out even when
        the status cannot be stored (MongoDB away: the reason the run failed, often), and
        its error always fits the event's limit, so a browser is never left waiting."""
        error = one_line(error) or "failed"
        failed = {
            "indexStatus": "failed",
            "indexError": error,
            "indexProgress.updatedAt": datetime.now(UTC),
        }
        workspaces = self._db.get().workspaces
        try:
            await retried_once(
                lambda: workspaces.update_one(
                    {"_id": ObjectId(self._workspace_id)}, {"$set": failed}
                )
            )
        except PyMongoError as exc:
            logger.warning("failed status not stored: %s", type(exc).__name__)
        self._outbox.put_nowait(Outgoing("index:failed", {"error": error, "phase": phase}))
        self._end("failed")
        return await self._close()

    def _end(self, status: str) -> None:
        self._final = {**self._progress.payload(time.monotonic()), "status": status}
        self._ended.set()

    def _maybe_update(self) -> None:
        if not self._started:
            return
        now = time.monotonic()
        progress = self._progress
        progress.observe(now)
        in_flight = max(progress.rendered - progress.pages_done, 0)
        self._metrics.in_flight.set(in_flight, tags={"workspace": self._workspace_id})
        if self._throttle.due(now, progress.pages_done, progress.phase, progress_key(progress)):
            self._queue_update(now)

    def _queue_update(self, now: float, status: str | None = None, page_count: int = 0) -> None:
        """An `index:progress` to store in the workspace, then publish; with `status`, the
        workspace's status and page count are stored with it."""
        progress = self._progress
        self._throttle.sent(now, progress.pages_done, progress.phase, progress_key(progress))
        payload = progress.payload(now)
        stored: dict[str, Any] = {"indexProgress": {**payload, "updatedAt": datetime.now(UTC)}}
        if status is not None:
            stored.update(indexStatus=status, pageCount=page_count, indexError=None)
        self._outbox.put_nowait(Outgoing("index:progress", payload, stored))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._maybe_update()

    async def _send_loop(self) -> None:
        while True:
            outgoing = await self._outbox.get()
            try:
                if outgoing.stored is not None:
                    await self._store(outgoing.stored)
                await self._publish(outgoing.event, outgoing.payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad update must not stop the ones after it
                logger.exception("progress update %s failed", outgoing.event)
            finally:
                self._outbox.task_done()

    async def _store(self, fields: dict[str, Any]) -> None:
        workspaces = self._db.get().workspaces
        await retried_once(
            lambda: workspaces.update_one({"_id": ObjectId(self._workspace_id)}, {"$set": fields})
        )

    async def _publish(self, event: str, payload: dict[str, Any]) -> None:
        assert self._publisher is not None
        try:
            await self._publisher.publish(self._workspace_id, event, payload)
            self.events_sent[event] = self.events_sent.get(event, 0) + 1
        except PublishError as exc:
            self._not_delivered(event, exc)

    def _not_delivered(self, event: str, exc: PublishError) -> None:
        """The first failure is a warning naming the setting to fix; the ones after it
        would repeat it for every event, so they are debug lines."""
        if self._undelivered is not None:
            logger.debug("event %s not delivered: %s", event, exc)
            return
        self._undelivered = undelivered_warning(self._settings, exc)
        logger.warning("%s", self._undelivered)
        self._undelivered_seen.set()

    async def _close(self) -> dict[str, int]:
        if self._tasks:  # else `start` failed: there is no sender to wait for
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), DRAIN_TIMEOUT_S)
        for task in self._tasks:
            task.cancel()
        if self._publisher is not None:
            await self._publisher.aclose()
        await self._db.close()
        return dict(self.events_sent)
