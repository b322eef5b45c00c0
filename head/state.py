"""What one head process holds while it runs; filled in by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
import socketio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from core.db import Document
from core.history import EventHistory, MemoryEventHistory
from core.settings import Settings
from head.keyed_lock import KeyedLock
from head.metrics import HeadMetrics
from head.search import Searcher
from head.session_auth import SessionAuthenticator

T = TypeVar("T")


class RunControl(Protocol):
    """What the routes ask of the head's runs (`head.runs.RunLauncher`, which holds this
    state in turn)."""

    status: str

    async def start(self, workspace_id: str, requested_by: str) -> dict[str, str]: ...

    async def cancel(self, job_id: str) -> dict[str, Any] | None: ...


@dataclass
class HeadState:
    """Clients and services of one head, owned by its lifespan (one event loop)."""

    settings: Settings
    sio: socketio.AsyncServer
    metrics: HeadMetrics = field(default_factory=HeadMetrics)
    mongo: AsyncMongoClient[Document] | None = None
    redis: aioredis.Redis | None = None
    history: EventHistory = field(default_factory=MemoryEventHistory)
    # one broadcast at a time per workspace (head.broadcast)
    broadcasts: KeyedLock = field(default_factory=KeyedLock)
    # Set once, by the app factory (runs, searcher) and the lifespan (authenticator); read
    # through the properties below, which say so when one is missing.
    _runs: RunControl | None = field(default=None, init=False, repr=False)
    _searcher: Searcher | None = field(default=None, init=False, repr=False)
    _authenticator: SessionAuthenticator | None = field(default=None, init=False, repr=False)

    @property
    def db(self) -> AsyncDatabase[Document]:
        if self.mongo is None:
            raise RuntimeError("the head's lifespan has not started")
        return self.mongo[self.settings.mongodb_db]

    @property
    def authenticator(self) -> SessionAuthenticator:
        return _required(self._authenticator, "the head's lifespan has not started")

    @authenticator.setter
    def authenticator(self, authenticator: SessionAuthenticator) -> None:
        self._authenticator = authenticator

    @property
    def runs(self) -> RunControl:
        return _required(self._runs, "the app factory has not set the run launcher")

    @runs.setter
    def runs(self, runs: RunControl) -> None:
        self._runs = runs

    @property
    def searcher(self) -> Searcher:
        return _required(self._searcher, "the app factory has not set the searcher")

    @searcher.setter
    def searcher(self, searcher: Searcher) -> None:
        self._searcher = searcher


def _required(value: T | None, missing: str) -> T:
    if value is None:
        raise RuntimeError(missing)
    return value
