"""MongoDB access: one AsyncMongoClient per event loop, collections and their indexes.

MongoDB is the source of truth; everything a browser sees through an event must be
readable here a moment later. Indexes are created at start-up and creation is
idempotent (same spec twice is a no-op).

Outages: an operation waits up to the server selection timeout for a reachable server, and
writes and reads are retried once after a network error: by PyMongo (retryable writes and
reads), and by `retried_once` for the idempotent operations PyMongo does not retry. Runs
wait 30 s, long enough to ride out a restart of the server (a crash and its supervisor's
restart, a failover); the head waits 5 s, so a browser gets an answer (503) quickly. A
`serverSelectionTimeoutMS` in MONGODB_URI wins over both: it is the operator's knob.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect, PyMongoError, ServerSelectionTimeoutError

from core.errors import StorageError
from core.settings import Settings

Document = dict[str, Any]
# An ObjectId as `str(ObjectId)` spells it; the only form clients may use.
OBJECT_ID_PATTERN = re.compile(r"[0-9a-f]{24}")
T = TypeVar("T")

# PyMongo's own default: a run rides out a server restart instead of failing.
SERVER_SELECTION_TIMEOUT_MS = 30_000
# The head answers browsers and probes; it must not keep them waiting on a dead server.
HEAD_SERVER_SELECTION_TIMEOUT_MS = 5_000

# GridFS buckets: the PDFs' bytes, and the page previews.
DOCUMENTS_BUCKET = "documents"
PAGES_BUCKET = "pages"
GRIDFS_FILES_INDEX = IndexModel([("filename", ASCENDING), ("uploadDate", ASCENDING)])
GRIDFS_CHUNKS_INDEX = IndexModel([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)

INDEXES: dict[str, list[IndexModel]] = {
    "workspaces": [
        IndexModel([("ownerId", ASCENDING)]),
        IndexModel([("members.userId", ASCENDING)]),
    ],
    "documents": [
        IndexModel([("workspaceId", ASCENDING), ("source", ASCENDING)], unique=True),
        IndexModel([("workspaceId", ASCENDING), ("status", ASCENDING)]),
    ],
    # Pages are read by document (a run's resume, the preview route), never by workspace
    # alone: each index is a cost on every page stored.
    "pages": [
        IndexModel([("documentId", ASCENDING), ("pageNo", ASCENDING)], unique=True),
    ],
    "chunks": [
        IndexModel([("documentId", ASCENDING), ("chunkNo", ASCENDING)], unique=True),
        IndexModel([("workspaceId", ASCENDING)]),
    ],
    "concepts": [
        IndexModel([("workspaceId", ASCENDING), ("conceptId", ASCENDING)], unique=True),
    ],
    # The GridFS spec's indexes, which PyMongo's uploads create on their own but the render
    # actor's bulk writes (`core.gridfs_batch`) do not.
    f"{DOCUMENTS_BUCKET}.files": [GRIDFS_FILES_INDEX],
    f"{DOCUMENTS_BUCKET}.chunks": [GRIDFS_CHUNKS_INDEX],
    f"{PAGES_BUCKET}.files": [GRIDFS_FILES_INDEX],
    f"{PAGES_BUCKET}.chunks": [GRIDFS_CHUNKS_INDEX],
    "jobs": [
        IndexModel([("workspaceId", ASCENDING), ("queuedAt", DESCENDING)]),
        IndexModel([("status", ASCENDING)]),
        IndexModel(
            [("workspaceId", ASCENDING)],
            name="one_active_run_per_workspace",
            unique=True,
            partialFilterExpression={"active": True},
        ),
    ],
}


def open_client(
    uri: str,
    *,
    server_selection_timeout_ms: int = SERVER_SELECTION_TIMEOUT_MS,
    retry_writes: bool = True,
) -> AsyncMongoClient[Document]:
    """A client bound to the running event loop; call it inside that loop, close it there.

    `server_selection_timeout_ms` applies unless the URI sets `serverSelectionTimeoutMS`;
    `retry_writes=False` unless it sets `retryWrites` (see `LazyClient`).
    """
    options: dict[str, Any] = {}
    if not _uri_sets(uri, "serverSelectionTimeoutMS"):
        options["serverSelectionTimeoutMS"] = server_selection_timeout_ms
    if not retry_writes and not _uri_sets(uri, "retryWrites"):
        options["retryWrites"] = False
    return AsyncMongoClient(uri, tz_aware=True, appname="indexer", **options)


def _uri_sets(uri: str, option: str) -> bool:
    """Whether the connection string's query sets `option` (names are case-insensitive)."""
    query = urlsplit(uri).query
    return any(name.lower() == option.lower() for name, _ in parse_qsl(query))


async def retried_once(operation: Callable[[], Awaitable[T]]) -> T:
    """Run `operation` once more after a network error, as PyMongo does for retryable writes
    and reads but will not do for these: multi-document updates and deletes (`update_many`,
    a bulk write holding a `DeleteMany`) and cursors read past their first batch. Ours are
    idempotent (keyed upserts, range deletes, reads), so a run rides over a restart of the
    server in the middle of one as it does in the middle of any other write. The second
    attempt waits for the server like any operation; a server that was not found in time
    (ServerSelectionTimeoutError) is not asked again."""
    try:
        return await operation()
    except AutoReconnect as exc:
        if isinstance(exc, ServerSelectionTimeoutError):
            raise
        return await operation()


def require_uri(settings: Settings) -> str:
    """The MongoDB URI; the CLI fills it in with the embedded server when MONGODB_URI is unset."""
    if settings.mongodb_uri is None:
        raise StorageError("no MongoDB URI: set MONGODB_URI or start the embedded server first")
    return settings.mongodb_uri.reveal()


async def ensure_indexes(db: AsyncDatabase[Document]) -> None:
    """Create every collection's indexes; safe to run on every start."""
    try:
        for name, models in INDEXES.items():
            await db[name].create_indexes(models)
    except PyMongoError as exc:
        raise StorageError(f"cannot create MongoDB indexes: {type(exc).__name__}") from exc


async def ping(db: AsyncDatabase[Document]) -> None:
    """Round-trip to the server; raises StorageError when it does not answer."""
    try:
        await db.command("ping")
    except PyMongoError as exc:
        raise StorageError(f"MongoDB did not answer: {type(exc).__name__}") from exc


def parse_object_id(value: object) -> ObjectId | None:
    """An ObjectId from a client-supplied id, or None when it is not one (never raises).

    Only the canonical spelling (24 lower-case hex digits, as `str(ObjectId)` writes it) is
    one: room names and the event history key on the id's text, so `ABC...` and `abc...`
    would name two rooms of one workspace, and events only ever go to the lower-case one.
    """
    if isinstance(value, str) and OBJECT_ID_PATTERN.fullmatch(value):
        return ObjectId(value)
    return None


class LazyClient:
    """A client for a Ray actor: opened on first use, inside the actor's own event loop (an
    AsyncMongoClient belongs to the loop that first uses it).

    Without retryable writes: every write an actor makes is idempotent (keyed upserts,
    range deletes, inserts whose duplicates are the answer) and goes through `retried_once`,
    which does what PyMongo's one retry would. A server keeps a record of every retryable
    write for a while, and the embedded one scans them on each write, so a write of a long
    run would cost more than the first (docs/BENCHMARKS.md, "The embedded MongoDB server's
    CPU per write").
    """

    def __init__(self, uri: str) -> None:
        self._uri = uri
        self._client: AsyncMongoClient[Document] | None = None

    def database(self, name: str) -> AsyncDatabase[Document]:
        if self._client is None:
            self._client = open_client(self._uri, retry_writes=False)
        return self._client[name]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


class LazyDatabase:
    """One database of a `LazyClient`: what an actor that serves a single run holds."""

    def __init__(self, uri: str, name: str) -> None:
        self._client = LazyClient(uri)
        self._name = name

    def get(self) -> AsyncDatabase[Document]:
        return self._client.database(self._name)

    async def close(self) -> None:
        await self._client.close()
