"""The Redis transport of the publishing path (see `core.publisher`): events go into the
replay history, then onto the python-socketio channel every head listens to, through the
write-only manager python-socketio documents for emitting from outside a server."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import socketio
from redis.exceptions import RedisError

from core.errors import PublishError
from core.events import validate_index_payload, workspace_room
from core.history import RedisEventHistory


class RedisEventPublisher:
    """Publishes onto the Socket.IO Redis channel that every head subscribes to.

    Redis unreachable fails the history write first: PublishError, as for a head that
    cannot be reached. The manager retries a failed emit once, then logs and drops it; the
    event is in the history by then, so a client rejoining with `since` still gets it."""

    def __init__(self, redis_url: str, *, timeout_s: float) -> None:
        options = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        self._manager = socketio.AsyncRedisManager(
            redis_url, write_only=True, redis_options=options
        )
        self._redis = aioredis.from_url(redis_url, **options)
        self._history = RedisEventHistory(self._redis)

    async def publish(self, workspace_id: str, event: str, payload: dict[str, Any]) -> None:
        data = validate_index_payload(event, payload)
        try:
            data = await self._history.record(workspace_id, event, data)
        except (RedisError, OSError) as exc:
            raise PublishError(f"redis history failed: {type(exc).__name__}") from exc
        await self._manager.emit(event, data, namespace="/", room=workspace_room(workspace_id))

    async def aclose(self) -> None:
        await self._redis.aclose()
        if self._manager.redis is not None:
            await self._manager.redis.aclose()
