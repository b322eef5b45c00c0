"""The app factory: FastAPI for REST, wrapped by the Socket.IO ASGI app, one lifespan.

`create_app(settings)` builds everything; the lifespan opens the MongoDB client (and the
Redis client when REDIS_URL is set) on the server's event loop and closes them on exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import socketio
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError

from core.db import HEAD_SERVER_SELECTION_TIMEOUT_MS, ensure_indexes, open_client, require_uri
from core.errors import ClusterError, ExtraMissingError, StorageError
from core.history import RedisEventHistory
from core.settings import Settings
from head.access_watch import AccessWatcher
from head.cross_site import CrossSiteGuardMiddleware, own_origin
from head.fanout import FanoutManager, FanoutRedisManager, Wires, install_direct_websockets
from head.packet_guard import PacketGuardMiddleware
from head.routes import admin, events, health, pages, workspaces
from head.runs import RunLauncher
from head.search import Searcher
from head.session_auth import SessionAuthenticator
from head.sockets import WorkspaceNamespace
from head.state import HeadState

logger = logging.getLogger(__name__)

# A Socket.IO message larger than this closes the connection (engine.io's own limit).
MAX_SOCKET_MESSAGE_BYTES = 64 * 1024
# A REST body other than a published event (413 above it); none of those routes needs one.
MAX_REQUEST_BODY_BYTES = 4 * 1024
REDIS_MAX_CONNECTIONS = 16
REDIS_POOL_TIMEOUT_S = 5.0


def bounded_redis(url: str) -> aioredis.Redis:
    """The head's Redis client (event history). redis-py's default pool keeps every
    connection it ever opened, so a reconnect storm of browsers would leave one per join in
    flight; a blocking pool caps them and makes the excess wait for a free one."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=REDIS_MAX_CONNECTIONS, timeout=REDIS_POOL_TIMEOUT_S
    )
    return aioredis.Redis(connection_pool=pool)


def create_sio(settings: Settings) -> socketio.AsyncServer:
    """The Socket.IO server; shares rooms through Redis when REDIS_URL is set. Events reach
    websocket clients through `head.fanout` (one frame per room, written to each socket
    without a task of its own), polling clients through python-socketio's ordinary path."""
    wires = Wires()
    manager: FanoutManager
    if settings.redis_url is not None:
        manager = FanoutRedisManager(settings.redis_url.reveal(), wires=wires)
    else:
        manager = FanoutManager(wires)

    def allowed_origin(origin: str | None, environ: dict[str, Any]) -> bool:
        # the web app, and the head's own progress page (same origin as the request)
        own = own_origin(environ.get("wsgi.url_scheme", "http"), environ.get("HTTP_HOST", ""))
        return origin in (settings.web_app_url, own)

    # async_handlers=False: each socket's events are handled one at a time, in the order
    # sent (a join then a leave must end outside the room, and the room limit must hold for
    # joins sent at once). python-engineio reads a socket's next packet only after the
    # handler returns; every websocket (and every polling request) is its own ASGI task, so
    # other sockets are not held up.
    sio = socketio.AsyncServer(
        async_mode="asgi",
        async_handlers=False,
        client_manager=manager,
        cors_allowed_origins=allowed_origin,
        cors_credentials=True,
        max_http_buffer_size=MAX_SOCKET_MESSAGE_BYTES,
        logger=False,
        engineio_logger=False,
    )
    install_direct_websockets(sio.eio, wires)
    return sio


def create_app(settings: Settings) -> PacketGuardMiddleware:
    """Build the head's ASGI app. Fails fast when a required setting is missing.

    The app is the packet guard, around python-socketio's ASGI app (`.app`), around FastAPI
    (`.app.other_asgi_app`, whose `state.head` is the head's state).
    """
    secret = settings.require_nextauth_secret()
    uri = require_uri(settings)
    sio = create_sio(settings)
    state = HeadState(settings=settings, sio=sio)
    namespace = WorkspaceNamespace(state)
    sio.register_namespace(namespace)
    watcher = AccessWatcher(state, namespace)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.mongo = open_client(uri, server_selection_timeout_ms=HEAD_SERVER_SELECTION_TIMEOUT_MS)
        db = state.db
        await ensure_indexes(db)
        state.authenticator = SessionAuthenticator(secret, db.sessions)
        if settings.redis_url is not None:
            state.redis = bounded_redis(settings.redis_url.reveal())
            state.history = RedisEventHistory(state.redis)
        watching = asyncio.create_task(watcher.run())
        runs.open()
        # What start-up allocated (modules, the app, its schemas) lives as long as the
        # process: frozen, a full collection no longer walks it. Every socket's events wait
        # behind a full collection; with 500 sockets one takes 100 ms, 25-45 ms frozen.
        gc.freeze()
        try:
            yield
        finally:
            watching.cancel()
            await runs.aclose()
            if state.redis is not None:
                await state.redis.aclose(close_connection_pool=True)
            await state.mongo.close()

    # Browsers and admins send small bodies or none; the publish path gets the event bound.
    api = FastAPI(title="indexer head", lifespan=lifespan, max_body_size=MAX_REQUEST_BODY_BYTES)
    api.state.head = state
    runs = RunLauncher(state)
    state.runs = runs
    state.searcher = Searcher(runs.embed_query)
    # added first, so CORS wraps it: the web app can read the reason of a refusal
    api.add_middleware(CrossSiteGuardMiddleware, web_app_url=settings.web_app_url)
    api.add_middleware(
        CORSMiddleware,
        allow_origins=[settings.web_app_url],
        allow_credentials=True,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Authorization"],
    )
    api.add_exception_handler(StorageError, _storage_unavailable)
    api.add_exception_handler(PyMongoError, _storage_unavailable)
    api.add_exception_handler(ExtraMissingError, _extra_missing)
    api.add_exception_handler(ClusterError, _cluster_unavailable)
    for module in (health, workspaces, admin, pages):
        api.include_router(module.router)
    api.include_router(events.router, max_body_size=settings.max_event_bytes)
    engineio_app = socketio.ASGIApp(sio, other_asgi_app=api)
    return PacketGuardMiddleware(engineio_app, max_message_bytes=MAX_SOCKET_MESSAGE_BYTES)


async def _storage_unavailable(_: Request, exc: Exception) -> JSONResponse:
    logger.warning("storage unavailable: %s", type(exc).__name__)
    return JSONResponse({"detail": "Storage unavailable"}, status_code=503)


async def _extra_missing(_: Request, exc: Exception) -> JSONResponse:
    """A feature this install cannot serve (a head without the pipeline extra): 503 with
    the extra to install, since the same request succeeds on a head that has it."""
    return JSONResponse({"detail": str(exc)}, status_code=503)


async def _cluster_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """What needs the cluster (a search query's vector) cannot have it now: 503 saying so;
    the message is the head's own, with no detail of the cluster."""
    return JSONResponse({"detail": str(exc)}, status_code=503)
