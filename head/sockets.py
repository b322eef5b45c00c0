"""The Socket.IO namespace browsers talk to: authentication, workspace rooms.

Contract (spec 05): a connection without a valid NextAuth session is refused with
`Authentication required` (or `Authentication failed` when the check itself broke);
`workspace:join {workspaceId}` answers `workspace:joined {workspaceId, role}` or
`error {message: "Access denied"}`; `workspace:leave` answers `workspace:left`.
Client input never raises out of a handler: bad payloads get an `error` event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from core.errors import AuthError
from core.events import RoomRequest, workspace_room
from core.workspaces import find_workspace, role_of
from head.nextauth import parse_cookie_header
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
        if event == "connect":
            return await self._connect(*args[:2])
        if event == "disconnect":
            return None
        handler = self._handlers.get(event)
        if handler is None or not args:
            return None
        sid, data = args[0], (args[1] if len(args) > 1 else None)
        return await handler(sid, data)

    async def _connect(self, sid: str, environ: dict[str, Any]) -> None:
        cookies = parse_cookie_header(environ.get("HTTP_COOKIE", ""))
        try:
            identity = await self._state.authenticator.authenticate(cookies)
        except AuthError as exc:
            logger.info("connection refused: %s", exc.reason)
            raise socketio.exceptions.ConnectionRefusedError(exc.message) from None
        await self.save_session(
            sid, {"userId": identity.user_id, "expiresAt": identity.expires_at, "rooms": []}
        )

    async def _join(self, sid: str, data: Any) -> None:
        request = _room_request(data)
        if request is None:
            await self.emit("error", {"message": INVALID_REQUEST}, to=sid)
            return
        session = await self.get_session(sid)
        rooms: list[str] = session["rooms"]
        room = workspace_room(request.workspaceId)
        if room not in rooms and len(rooms) >= self._state.settings.max_rooms_per_socket:
            await self.emit("error", {"message": TOO_MANY_ROOMS}, to=sid)
            return
        try:
            workspace = await find_workspace(self._state.db, request.workspaceId)
        except PyMongoError as exc:
            logger.warning("workspace lookup failed: %s", type(exc).__name__)
            await self.emit("error", {"message": UNAVAILABLE}, to=sid)
            return
        role = role_of(workspace, session["userId"]) if workspace else None
        if role is None:
            await self.emit("error", {"message": ACCESS_DENIED}, to=sid)
            return
        await self.enter_room(sid, room)
        if room not in rooms:
            rooms.append(room)
            await self.save_session(sid, session)
        await self.emit(
            "workspace:joined", {"workspaceId": request.workspaceId, "role": role}, to=sid
        )

    async def _leave(self, sid: str, data: Any) -> None:
        request = _room_request(data)
        if request is None:
            await self.emit("error", {"message": INVALID_REQUEST}, to=sid)
            return
        room = workspace_room(request.workspaceId)
        await self.leave_room(sid, room)
        session = await self.get_session(sid)
        if room in session["rooms"]:
            session["rooms"].remove(room)
            await self.save_session(sid, session)
        await self.emit("workspace:left", {"workspaceId": request.workspaceId}, to=sid)


def _room_request(data: Any) -> RoomRequest | None:
    if not isinstance(data, dict):
        return None
    try:
        return RoomRequest.model_validate(data)
    except ValidationError:
        return None
