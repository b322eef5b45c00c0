"""Supervised parser pools: fetch, render and analyze actors that hang, die or grow are
replaced, and the document that caused it fails alone.

Parsers run MuPDF over untrusted bytes, so one page can take minutes, crash its process or
make it grow. The driver calls them through a `SupervisedPool` (same `call(method, *args)`
as `actors.pool.ActorPool`), which:

- **sends an actor one call at a time**, once it has answered `ready`. Ray does not promise
  that an async actor runs queued calls in the order they were sent (a later call can
  overtake an earlier one), so a call queued at a busy actor could neither be timed
  nor blamed for what happened to it. The round trip between two calls costs a
  millisecond against tenths of a second of parsing;
- **times each call** from the moment it is sent to its idle actor (waiting for a free
  actor does not count): a call over `INDEXER_PARSER_TIMEOUT_S` fails its document with a
  clear error, and the stuck actor is killed and replaced, so it does not hold the pool;
- **replaces actors that die** (a crash, the kernel's or Ray's OOM killer) and retries the
  call on the replacement: a call whose actor died under it twice fails its document, not
  the run, and a death it did not cause (the node went away) costs it one retry. Ray's own
  restarts and retries are off for these actors (`max_restarts=0`), so this is decided in
  one place;
- **recycles** actors after `INDEXER_PARSER_RECYCLE_DOCUMENTS` documents or once their RSS
  (reported with each result) is above `INDEXER_PARSER_RECYCLE_RSS_MB`: MuPDF keeps decoded
  images in its store and fragments the heap in long-lived processes. A retiring actor
  takes no new call, its replacement is started at once, and it is killed when its call
  has ended.

At the end of a run the pool parks its idle actors for the next run with the same
settings (`actors.lifecycle.parking`), unless INDEXER_PARSER_IDLE_S is 0; a parked actor carries the
count of documents it has parsed, so recycling holds across runs.

The actor side is `actors.supervised_actor.SupervisedActor`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError

from actors.incidents import RunIncidents, node_is_alive
from actors.memory import MIB
from actors.ray_futures import as_future
from core.errors import DocumentError, RunError
from core.settings import Settings

# A call whose actor died under it this many times fails its document.
STRIKES_TO_FAIL = 2
# How long a pool none of whose actors has started waits for one (a cold start under load
# takes seconds; no room on the cluster takes forever).
START_TIMEOUT_S = 180.0
# Deaths a call did not cause (its actor died before the call was sent) are retried, but
# not forever.
MAX_ATTEMPTS = 6


@dataclass(frozen=True)
class ParserLimits:
    """The limits a supervised pool enforces, from the settings."""

    timeout_s: float
    recycle_documents: int
    recycle_rss_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ParserLimits:
        return cls(
            timeout_s=float(settings.parser_timeout_s),
            recycle_documents=settings.parser_recycle_documents,
            recycle_rss_bytes=settings.parser_recycle_rss_mb * MIB,
        )


@dataclass(frozen=True)
class Recycle:
    """One actor retired by the pool, and why (`"documents"` or `"rss"`)."""

    phase: str
    reason: str
    rss_bytes: int
    documents: int


@dataclass(eq=False)
class _Member:
    """One actor of the pool and what the pool knows about it."""

    handle: Any
    ready: Any  # ObjectRef of `ready()`: the actor is constructed and has imported MuPDF
    is_ready: bool = False  # `ready` answered
    documents: set[str] = field(default_factory=set)
    documents_before: int = 0  # parsed in earlier runs (a parked actor claimed by this pool)
    in_flight: int = 0
    retired: bool = False  # takes no new calls
    killed: bool = False  # killed by the pool: a call that dies with it is not to blame
    dead: bool = False
    last_rss: int = 0
    running: str | None = None  # the document of the call it is running now
    node: str | None = None  # the Ray node it runs on, once `ready` answered
    replanned: bool = False  # taken out because the cluster changed (see `replan`)


class _ActorDied(Exception):
    """A call's actor died; `blamed` when it died under the call, not before or by the pool
    or with its node."""

    def __init__(self, blamed: bool, node_lost: bool = False, replanned: bool = False) -> None:
        super().__init__(blamed)
        self.blamed = blamed
        self.node_lost = node_lost
        self.replanned = replanned

    @property
    def reason(self) -> str:
        """Why its call is sent again, for the run's incidents."""
        if self.node_lost:
            return "node lost"
        return "re-planned" if self.replanned else "actor died"


class SupervisedPool:
    """Parser actors with time limits, replacement of dead actors and recycling.

    Args:
        phase: the phase named in errors (`fetch`, `render`, `analyze`).
        spawn: creates one actor (a `SupervisedActor`) with its resources and arguments.
        size: how many actors the pool keeps.
        document_of: the document a call's arguments belong to (recycling counts these).
        describe: what a call's arguments cover, for errors ("pages 5-8", "the document").
        claimed: parked actors this pool takes over, each with the documents it has parsed.
        incidents: where the run notes nodes lost and calls sent again.
    """

    def __init__(
        self,
        phase: str,
        spawn: Callable[[], Any],
        size: int,
        limits: ParserLimits,
        *,
        document_of: Callable[[tuple[Any, ...]], str],
        describe: Callable[[tuple[Any, ...]], str],
        claimed: Collection[tuple[Any, int]] = (),
        incidents: RunIncidents | None = None,
    ) -> None:
        self.phase = phase
        self.incidents = incidents or RunIncidents()
        self.limits = limits
        self.recycles: list[Recycle] = []
        self._started = 0
        self.replaced_after_death = 0
        self.replaced_after_timeout = 0
        self._spawn = spawn
        self._document_of = document_of
        self._describe = describe
        # Members that have started, one entry per call they may take; None wakes a caller
        # when an actor cannot start at all (`_start_error`).
        self._idle: asyncio.Queue[_Member | None] = asyncio.Queue()
        self._admissions: set[asyncio.Task[None]] = set()
        self._start_error: RunError | None = None
        self._members: list[_Member] = []
        self._watchers: list[asyncio.Future[None]] = []
        for handle, documents in list(claimed)[:size]:
            self._add_member(handle, documents)
        while len(self._members) < size:
            self._add_member()

    @property
    def actors(self) -> list[Any]:
        """Handles of the actors alive now, a retiring one included; after `release`, the
        parked ones."""
        return [m.handle for m in self._members if not m.dead]

    @property
    def started(self) -> int:
        """How many actors the pool has started, replacements included."""
        return self._started

    async def keep_started(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for every actor to start (warming up); kill the ones that
        have not (the cluster has no room for them now), so the pool keeps only actors
        that run."""
        if self._admissions:
            await asyncio.wait(set(self._admissions), timeout=timeout_s)
        for member in list(self._members):
            if not member.is_ready:
                self._kill(member)

    def replan(self, spawn: Callable[[], Any], size: int) -> None:
        """The cluster changed (a node was lost): `size` new actors made by `spawn` take the
        place of the ones the pool has. One running a call ends it first."""
        self._spawn = spawn
        for member in list(self._members):
            member.retired = member.replanned = True
            if member.in_flight == 0:
                self._kill(member)
        for _ in range(size):
            self._add_member()

    def rss_bytes(self) -> list[int]:
        """The RSS each live actor reported with its last result (0: no result yet)."""
        return [m.last_rss for m in self._members if not m.dead]

    def running(self, document: str) -> list[Any]:
        """Handles of the actors running a call for `document` now."""
        return [m.handle for m in self._members if m.running == document and not m.dead]

    async def running_on(self, document: str, *, besides: Collection[Any] = ()) -> Any:
        """The first actor, not in `besides`, seen running a call for `document`: what
        tests kill, as a crash or the OOM killer would."""
        while True:
            handles = [h for h in self.running(document) if h not in besides]
            if handles:
                return handles[0]
            changed = asyncio.get_running_loop().create_future()
            self._watchers.append(changed)
            await changed

    def _set_running(self, member: _Member, document: str | None) -> None:
        member.running = document
        for watcher in self._watchers:
            if not watcher.done():
                watcher.set_result(None)
        self._watchers.clear()

    async def call(self, method: str, *args: Any) -> Any:
        """Call `method` on a free actor; DocumentError when the call fails its document."""
        document = self._document_of(args)
        strikes = 0
        for _ in range(MAX_ATTEMPTS):
            member = await self._take(document)
            try:
                return await self._call_on(member, method, args)
            except _ActorDied as died:
                strikes += died.blamed
                if strikes >= STRIKES_TO_FAIL:
                    raise self._error(
                        args,
                        f"the {self.phase} actor died while on them, {strikes} times "
                        "(a crash, or the node's out-of-memory killer)",
                    ) from None
                self.incidents.redo(self.phase, document, self._describe(args), died.reason)
            finally:
                self._give_back(member)
        raise self._error(args, f"gave up after {MAX_ATTEMPTS} {self.phase} actors died")

    async def _take(self, document: str) -> _Member:
        """A started actor free to take a call for `document`; one that has not started
        (or cannot be placed for now) takes none."""
        while True:
            member = await self._next_idle()
            if member is None:
                self._idle.put_nowait(None)  # for the next caller too
                assert self._start_error is not None
                raise self._start_error
            if member.retired or member.dead:
                continue  # a slot of an actor that left
            if document not in member.documents and (
                len(member.documents) + member.documents_before >= self.limits.recycle_documents
            ):
                self._retire(member, "documents")
                continue
            member.documents.add(document)
            member.in_flight += 1
            return member

    async def _next_idle(self) -> _Member | None:
        """The next free slot. While no actor of the pool has started, wait at most
        START_TIMEOUT_S: a run must not wait forever for room on a cluster that has none."""
        if any(m.is_ready for m in self._members) or not self._idle.empty():
            return await self._idle.get()
        try:
            return await asyncio.wait_for(self._idle.get(), START_TIMEOUT_S)
        except TimeoutError:
            raise RunError(
                self.phase,
                f"no {self.phase} actor started in {START_TIMEOUT_S:.0f} s: the cluster has "
                "no room for one (its CPUs are held by other actors)",
            ) from None

    def _give_back(self, member: _Member) -> None:
        member.in_flight -= 1
        if not member.retired:
            self._idle.put_nowait(member)
        elif member.in_flight == 0:
            self._kill(member)

    async def _call_on(self, member: _Member, method: str, args: tuple[Any, ...]) -> Any:
        """The call on its idle actor, timed from now."""
        await self._wait_started(member)
        try:
            ref = member.handle.measured.remote(method, *args)
        except Exception:  # Ray refuses to submit to an actor it no longer knows (killed)
            raise self._died(member, blamed=False) from None
        self._set_running(member, self._document_of(args))
        try:
            value, rss = await asyncio.wait_for(as_future(ref), self.limits.timeout_s)
        except TimeoutError:
            self._replace(member, after="timeout")
            raise self._error(
                args,
                f"took longer than {self.limits.timeout_s:g} s "
                f"(INDEXER_PARSER_TIMEOUT_S); the {self.phase} actor was replaced",
            ) from None
        except RayActorError:
            raise self._died(member, blamed=True) from None
        except asyncio.CancelledError:
            # The run is going away; the actor may still be parsing (and writing) for it.
            member.retired = True
            self._kill(member)
            raise
        finally:
            self._set_running(member, None)
        member.last_rss = rss
        if rss > self.limits.recycle_rss_bytes and not member.retired:
            self._retire(member, "rss")
        return value

    async def _wait_started(self, member: _Member) -> None:
        """Wait until the actor has answered `ready` (started, MuPDF imported)."""
        if member.is_ready:
            return
        try:
            member.node = (await member.ready)["node"]
            member.is_ready = True
        except RayActorError as exc:
            if "creation task" not in str(exc):
                raise self._died(member, blamed=False) from None
            # The constructor raised: settings or environment, not the document's fault.
            member.killed = True
            if not member.dead:
                self._replace(member, after="death")
            raise RunError(self.phase, f"the {self.phase} actor cannot start: {exc}") from None

    def _died(self, member: _Member, *, blamed: bool) -> _ActorDied:
        """An actor the pool did not kill died: replace it. Its call may be to blame,
        unless its node died (Ray declared it dead: a machine lost, not the document's
        doing)."""
        if member.killed:
            return _ActorDied(blamed=False, replanned=member.replanned)
        node_lost = not node_is_alive(member.node)
        if not member.dead:
            self._replace(member, after="death")
        if node_lost:  # after the replacement: the run may plan every pool again now
            assert member.node is not None
            self.incidents.node_lost(member.node)
        return _ActorDied(blamed=blamed and not node_lost, node_lost=node_lost)

    def _replace(self, member: _Member, *, after: str) -> None:
        """Take an actor out now (it hangs or died) and start its replacement."""
        member.retired = True
        if after == "timeout":
            self.replaced_after_timeout += 1
            self._kill(member)
        else:
            self.replaced_after_death += 1
            member.dead = True
            self._members.remove(member)
            # An actor Ray only reported unreachable may still run: it must not linger.
            ray.kill(member.handle, no_restart=True)
        self._add_member()

    def _retire(self, member: _Member, reason: str) -> None:
        """Recycle: no new call; killed once its call in flight has ended."""
        member.retired = True
        self.recycles.append(Recycle(self.phase, reason, member.last_rss, len(member.documents)))
        self._add_member()
        if member.in_flight == 0:
            self._kill(member)

    def _kill(self, member: _Member) -> None:
        member.killed = member.retired = True  # a killed actor takes no call
        if not member.dead:
            member.dead = True
            ray.kill(member.handle, no_restart=True)
        if member in self._members:
            self._members.remove(member)

    def _add_member(self, handle: Any = None, documents_before: int = 0) -> None:
        """A new actor, or a claimed one when `handle` is given."""
        if handle is None:
            handle = self._spawn()
        self._started += 1
        member = _Member(
            handle=handle,
            ready=handle.ready.remote(),
            documents_before=documents_before,
        )
        self._members.append(member)
        admission = asyncio.ensure_future(self._admit(member))
        self._admissions.add(admission)
        admission.add_done_callback(self._admissions.discard)

    async def _admit(self, member: _Member) -> None:
        """Give the actor its one slot once it has started."""
        try:
            await self._wait_started(member)
        except _ActorDied:
            return  # replaced: the replacement is admitted in its turn
        except RunError as exc:  # the constructor raised: no actor of this pool can start
            self._start_error = exc
            self._idle.put_nowait(None)
            return
        if not member.retired:
            self._idle.put_nowait(member)

    async def release(self, *, park: bool) -> None:
        """The run is over: park the actors that are idle and healthy for the next run (when
        `park`), kill the others."""
        for admission in list(self._admissions):
            admission.cancel()
        parking = []
        for member in list(self._members):
            if park and self._can_park(member):
                documents = len(member.documents) + member.documents_before
                parking.append(as_future(member.handle.park.remote(documents)))
                member.retired = True  # alive, parked: this pool gives it no more calls
            else:
                self._kill(member)
        await asyncio.gather(*parking, return_exceptions=True)  # an actor gone meanwhile

    def _can_park(self, member: _Member) -> bool:
        """Not retiring, no call running, not grown. One still starting is parked too: its
        `park` call waits for the constructor, and fails harmlessly when that fails."""
        return (
            not member.retired
            and member.in_flight == 0
            and member.last_rss <= self.limits.recycle_rss_bytes
        )

    def _error(self, args: tuple[Any, ...], what: str) -> DocumentError:
        return DocumentError(self.phase, f"{self._describe(args)}: {what}")


def pages_label(page_nos: list[int]) -> str:
    """1-based page numbers as people say them: `page 3`, `pages 5-8`."""
    first, last = min(page_nos) + 1, max(page_nos) + 1
    return f"page {first}" if first == last else f"pages {first}-{last}"
