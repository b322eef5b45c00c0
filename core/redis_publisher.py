"""The Redis transport of the publishing path (see `core.publisher`): events go straight onto
the python-socketio channel every head listens to, and into the replay history."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import socketio
from redis.exceptions import RedisError

from core.errors import PublishError
from core.events import validate_index_payload, workspace_room
from core.history import RedisEventHistory


class _CheckedRedisManager(socketio.AsyncRedisManager):
    """python-socketio's manager logs and drops a failed publish; we want to know."""

    async def _publish(self, data: Any) -> Any:
        receivers = await super()._publish(data)
        if receivers is None:
            raise PublishError("redis publish failed")
        return receivers


class RedisEventPublisher:
    """Publishes onto the Socket.IO Redis channel that every head subscribes to."""

    def __init__(self, redis_url: str, *, timeout_s: float) -> None:
        options = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        self._manager = _CheckedRedisManager(redis_url, write_only=True, redis_options=options)
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
