"""Sending an `index:*` event to a workspace room from this head: numbered, then emitted."""

from __future__ import annotations

from typing import Any

from core.events import workspace_room
from head.state import HeadState


async def broadcast(
    state: HeadState, workspace_id: str, event: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Record the event in the workspace's history (which adds `epoch`, `seq`) and emit it."""
    stamped = await state.history.record(workspace_id, event, payload)
    await state.sio.emit(event, stamped, room=workspace_room(workspace_id))
    state.metrics.events_sent.labels(event).inc()
    return stamped
