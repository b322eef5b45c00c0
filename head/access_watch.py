"""Keeps authorization true while sockets stay open.

Every CHECK_INTERVAL_S this head looks at its own sockets: one whose session ended (past
`exp`; a database session whose `sessions` row is deleted or past its `expires`, read
again on each pass) gets `session:expired` and is disconnected; one in the room of a
workspace it is no longer a member of leaves that room and gets `error {message: "Access
denied"}`. Each head checks its own sockets, so with several heads a removed member is
kicked everywhere within one interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bson import ObjectId
from pymongo.errors import PyMongoError

from core.db import Document
from core.workspaces import role_of
from head.session_auth import database_session_live
from head.state import HeadState

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 2.0
SESSION_EXPIRED = "Session expired: sign in again"
ROOM_PREFIX = "workspace:"


class AccessWatcher:
    """The periodic check; `run` loops until cancelled, `check_once` is one pass."""

    def __init__(self, state: HeadState, namespace: Any) -> None:
        self._state = state
        self._namespace = namespace

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except (PyMongoError, OSError) as exc:  # storage hiccup: try again next time
                logger.warning("access check skipped: %s", type(exc).__name__)

    async def check_once(self) -> None:
        sessions = await self._sessions()
        rows = await self._database_sessions(sessions)
        now = time.time()
        live = {}
        for sid, session in sessions.items():
            if _session_ended(session, rows, now):
                await self._expire(sid)
            else:
                live[sid] = session
        await self._check_memberships(live)

    async def _database_sessions(self, sessions: dict[str, dict[str, Any]]) -> dict[Any, Document]:
        """The `sessions` rows of the database sessions among `sessions`, in one query, by
        `_id` (the socket keeps the row's id, never its token); a deleted row is absent."""
        ids = {s["databaseSession"] for s in sessions.values() if s.get("databaseSession")}
        if not ids:
            return {}
        cursor = self._state.db.sessions.find(
            {"_id": {"$in": list(ids)}}, {"userId": 1, "expires": 1}
        )
        return {row["_id"]: row async for row in cursor}

    async def _sessions(self) -> dict[str, dict[str, Any]]:
        connected = self._state.sio.manager.rooms.get("/", {}).get(None, {})
        sessions = {}
        for sid in list(connected):
            try:
                sessions[sid] = await self._state.sio.get_session(sid)
            except KeyError:  # it disconnected meanwhile
                continue
        return sessions

    async def _expire(self, sid: str) -> None:
        await self._state.sio.emit("session:expired", {"message": SESSION_EXPIRED}, to=sid)
        self._state.metrics.events_sent.labels("session:expired").inc()
        await self._state.sio.disconnect(sid)

    async def _check_memberships(self, sessions: dict[str, dict[str, Any]]) -> None:
        by_workspace: dict[str, list[str]] = {}
        for sid, session in sessions.items():
            for room in session.get("rooms", []):
                by_workspace.setdefault(room.removeprefix(ROOM_PREFIX), []).append(sid)
        if not by_workspace:
            return
        ids = [ObjectId(w) for w in by_workspace if ObjectId.is_valid(w)]
        cursor = self._state.db.workspaces.find({"_id": {"$in": ids}}, {"ownerId": 1, "members": 1})
        workspaces = {str(w["_id"]): w async for w in cursor}
        for workspace_id, sids in by_workspace.items():
            workspace = workspaces.get(workspace_id)
            for sid in sids:
                if workspace is None or role_of(workspace, sessions[sid]["userId"]) is None:
                    await self._namespace.revoke(sid, workspace_id)


def _session_ended(session: dict[str, Any], rows: dict[Any, Document], now: float) -> bool:
    """A JWT session ends at its `exp`; a database session when its row is deleted or its
    `expires` (which the web app may move forward) is past."""
    row_id = session.get("databaseSession")
    if row_id is not None:
        return not database_session_live(rows.get(row_id), now)
    expires_at = session.get("expiresAt")
    return expires_at is not None and expires_at <= now
