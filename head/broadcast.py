"""Sending an `index:*` event to a workspace room from this head: numbered, then emitted."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from core.events import workspace_room
from head.state import HeadState

logger = logging.getLogger(__name__)


async def broadcast(
    state: HeadState, workspace_id: str, event: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Record the event in the workspace's history (which adds `epoch`, `seq`) and emit it.

    One workspace's events are numbered and emitted one at a time: the Redis history
    numbers an event while other publishes may run, and an event emitted after a later
    one would be dropped by a client that already applied the later `seq` (the spec's
    rule for replays). With Redis, the emit returns once the event is on the channel, so
    other heads get them in that order too.

    With the history's Redis down the event still goes out, unnumbered: clients see no
    epoch they know and refetch the state, so nothing is lost, only replay is.
    """
    async with state.broadcasts.hold(workspace_id):
        try:
            stamped = await state.history.record(workspace_id, event, payload)
        except (RedisError, OSError) as exc:
            logger.warning("event history unavailable, sending unnumbered: %s", type(exc).__name__)
            stamped = payload
        await state.sio.emit(event, stamped, room=workspace_room(workspace_id))
    state.metrics.events_sent.labels(event).inc()
    return stamped
