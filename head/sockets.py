"""The Socket.IO namespace browsers talk to: authentication, workspace rooms.

Contract (spec 05): a connection without a valid NextAuth session is refused with
`Authentication required` (or `Authentication failed` when the check itself broke);
`workspace:join {workspaceId}` answers `workspace:joined {workspaceId, role}` or
`error {message: "Access denied"}`; `workspace:leave` answers `workspace:left`.
Client input never raises out of a handler: bad payloads get an `error` event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from pydantic import ValidationError
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from core.db import Document
from core.errors import AuthError
from core.events import RoomRequest, workspace_room
from core.history import Replay
from core.workspaces import find_workspace, public_state, role_of
from head.state import HeadState

logger = logging.getLogger(__name__)

ACCESS_DENIED = "Access denied"
INVALID_REQUEST = "Invalid request: expected {workspaceId: string}"
TOO_MANY_ROOMS = "Too many rooms: leave a workspace before joining another"
UNAVAILABLE = "Temporarily unavailable, try again"

Handler = Callable[[str, Any], Awaitable[None]]


class WorkspaceNamespace(socketio.AsyncNamespace):
    """Handlers of the default namespace; services come from the head's state."""

    def __init__(self, state: HeadState) -> None:
        super().__init__("/")
        self._state = state
        # Event names contain ':' so they cannot be `on_<event>` methods.
        self._handlers: dict[str, Handler] = {
            "workspace:join": self._join,
            "workspace:leave": self._leave,
        }

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """python-socketio's seam for dispatch rules of one's own (its docstring says to
        override it). As its own dispatch does, a handler cancelled under way (its client
        gone) answers nothing rather than failing the server's task."""
        try:
            return await self._dispatch(event, *args)
        except asyncio.CancelledError:
            return None

    async def _dispatch(self, event: str, *args: Any) -> Any:
        if event == "connect":
            return await self._connect(*args[:2])
        if event == "disconnect":
            return await self._disconnect(args[0])
        handler = self._handlers.get(event)
        if handler is None or not args:
            return None
        sid, data = args[0], (args[1] if len(args) > 1 else None)
        return await handler(sid, data)

    async def _connect(self, sid: str, environ: dict[str, Any]) -> None:
        try:
            identity = await self._state.authenticator.authenticate(environ.get("HTTP_COOKIE", ""))
        except AuthError as exc:
            logger.info("connection refused: %s", exc.reason)
            self._state.metrics.auth_failures.labels(exc.reason).inc()
            raise socketio.exceptions.ConnectionRefusedError(exc.message) from None
        await self.save_session(
            sid,
            {
                "userId": identity.user_id,
                "expiresAt": identity.expires_at,
                "databaseSession": identity.database_session,
                "rooms": [],
            },
        )
        self._state.metrics.sockets_connected.inc()

    async def _disconnect(self, sid: str) -> None:
        session = await self.get_session(sid)
        self._state.metrics.sockets_connected.dec()
        self._state.metrics.rooms_joined.dec(len(session.get("rooms", [])))

    async def _send(self, sid: str, event: str, data: dict[str, Any]) -> None:
        self._state.metrics.events_sent.labels(event).inc()
        await self.emit(event, data, to=sid)

    async def _join(self, sid: str, data: Any) -> None:
        request = _room_request(data)
        if request is None:
            await self._send(sid, "error", {"message": INVALID_REQUEST})
            return
        session = await self.get_session(sid)
        rooms: list[str] = session["rooms"]
        room = workspace_room(request.workspaceId)
        if self._rooms_full(rooms, room):  # before the lookup: a full socket costs no query
            await self._send(sid, "error", {"message": TOO_MANY_ROOMS})
            return
        try:
            workspace = await find_workspace(self._state.db, request.workspaceId)
        except PyMongoError as exc:
            logger.warning("workspace lookup failed: %s", type(exc).__name__)
            await self._send(sid, "error", {"message": UNAVAILABLE})
            return
        role = role_of(workspace, session["userId"]) if workspace else None
        if role is None:
            await self._send(sid, "error", {"message": ACCESS_DENIED})
            return
        # Checked again and taken with no await in between: events of one socket run one at
        # a time (async_handlers=False), but polling requests of one session may overlap.
        if self._rooms_full(rooms, room):
            await self._send(sid, "error", {"message": TOO_MANY_ROOMS})
            return
        if room not in rooms:
            rooms.append(room)
            self._state.metrics.rooms_joined.inc()
            await self.save_session(sid, session)
        await self.enter_room(sid, room)
        joined: dict[str, Any] = {"workspaceId": request.workspaceId, "role": role}
        joined.update(await self._resume(request, workspace, role))
        await self._send(sid, "workspace:joined", joined)

    def _rooms_full(self, rooms: list[str], room: str) -> bool:
        """Whether joining `room` would take a socket past INDEXER_MAX_ROOMS_PER_SOCKET."""
        return room not in rooms and len(rooms) >= self._state.settings.max_rooms_per_socket

    async def _resume(self, request: RoomRequest, workspace: Document, role: str) -> dict[str, Any]:
        """The snapshot from MongoDB, and the events after `since` (or a refetch flag).

        Called after the socket entered the room, so nothing falls between the replay and
        the live events; a client drops events whose `seq` it has already applied.
        """
        since = request.since
        try:
            replay = await self._state.history.since(
                request.workspaceId, since.epoch if since else None, since.seq if since else None
            )
        except (RedisError, OSError) as exc:
            logger.warning("event history unavailable: %s", type(exc).__name__)
            replay = Replay([], refetch=since is not None, epoch="", seq=0)
        return {
            "snapshot": public_state(workspace, role),
            "epoch": replay.epoch,
            "seq": replay.seq,
            "refetch": replay.refetch,
            "missed": [{"event": event, "data": data} for event, data in replay.events],
        }

    async def revoke(self, sid: str, workspace_id: str) -> None:
        """Take a socket out of a workspace it lost access to, and tell it so."""
        room = workspace_room(workspace_id)
        await self.leave_room(sid, room)
        try:
            session = await self.get_session(sid)
        except KeyError:
            return
        if room in session["rooms"]:
            session["rooms"].remove(room)
            await self.save_session(sid, session)
            self._state.metrics.rooms_joined.dec()
        await self._send(sid, "error", {"message": ACCESS_DENIED, "workspaceId": workspace_id})

    async def _leave(self, sid: str, data: Any) -> None:
        request = _room_request(data)
        if request is None:
            await self._send(sid, "error", {"message": INVALID_REQUEST})
            return
        room = workspace_room(request.workspaceId)
        await self.leave_room(sid, room)
        session = await self.get_session(sid)
        if room in session["rooms"]:
            session["rooms"].remove(room)
            await self.save_session(sid, session)
            self._state.metrics.rooms_joined.dec()
        await self._send(sid, "workspace:left", {"workspaceId": request.workspaceId})


def _room_request(data: Any) -> RoomRequest | None:
    if not isinstance(data, dict):
        return None
    try:
        return RoomRequest.model_validate(data)
    except ValidationError:
        return None
