"""What one head process holds while it runs; filled in by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis
import socketio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from core.db import Document
from core.history import EventHistory, MemoryEventHistory
from core.settings import Settings
from head.keyed_lock import KeyedLock
from head.metrics import HeadMetrics
from head.session_auth import SessionAuthenticator


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
    authenticator_: SessionAuthenticator | None = field(default=None, repr=False)

    @property
    def db(self) -> AsyncDatabase[Document]:
        if self.mongo is None:
            raise RuntimeError("the head's lifespan has not started")
        return self.mongo[self.settings.mongodb_db]

    @property
    def authenticator(self) -> SessionAuthenticator:
        if self.authenticator_ is None:
            raise RuntimeError("the head's lifespan has not started")
        return self.authenticator_
