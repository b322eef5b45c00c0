"""The publishing path: how any process (a Ray actor, the CLI, a head) sends `index:*` events.

Two transports, chosen by settings:
- Redis (REDIS_URL set, `core.redis_publisher`): a write-only python-socketio Redis manager
  publishes straight onto the channel every head listens to; each head delivers to its own
  clients once.
- HTTP (otherwise): POST to HEAD_URL/internal/events with the publish token.

Payloads are validated here too, so a bad event fails at its source with a clear error.
Publishing never waits long: a head that is down costs at most `timeout_s` per event.
"""

from __future__ import annotations

import time
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from core.errors import PublishError, PublishRefusedError
from core.events import validate_index_payload
from core.settings import Settings

DEFAULT_PUBLISH_TIMEOUT_S = 2.0


class EventPublisher(Protocol):
    async def publish(self, workspace_id: str, event: str, payload: dict[str, Any]) -> None: ...

    async def aclose(self) -> None: ...


class HttpEventPublisher:
    """Publishes through a head's authenticated `/internal/events` endpoint."""

    def __init__(self, head_url: str, token: str, *, timeout_s: float) -> None:
        self._client = httpx.AsyncClient(
            base_url=head_url,
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def publish(self, workspace_id: str, event: str, payload: dict[str, Any]) -> None:
        body = {
            "workspaceId": workspace_id,
            "event": event,
            "payload": validate_index_payload(event, payload),
            "sentAt": time.time(),
        }
        try:
            response = await self._client.post("/internal/events", json=body)
        except httpx.HTTPError as exc:
            raise PublishError(f"head unreachable: {type(exc).__name__}") from exc
        if response.status_code != 202:
            raise PublishRefusedError(f"head refused the event: HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()


def make_publisher(
    settings: Settings, *, timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S
) -> EventPublisher:
    """The publisher this deployment uses: Redis when configured, the head's HTTP path otherwise.

    The Redis one is imported only when configured: every run's aggregator starts a process
    that calls this, and python-socketio, engineio, aiohttp and redis would be most of that
    process's imports.
    """
    if settings.redis_url is not None:
        from core.redis_publisher import RedisEventPublisher

        return RedisEventPublisher(settings.redis_url.reveal(), timeout_s=timeout_s)
    token = settings.effective_publish_token().reveal()
    return HttpEventPublisher(settings.head_url, token, timeout_s=timeout_s)


def undelivered_warning(settings: Settings, error: PublishError) -> str:
    """The one line a run writes when its events reach no head: where it publishes, why
    that failed, and what to set. Browsers then see nothing move while MongoDB, the source
    of truth, still gets every update. Names settings, never their secret values."""
    outcome = "browsers watching the workspace will not see it move; the run goes on"
    if settings.redis_url is not None:
        return (
            f"this run's events reach no head: publishing to Redis failed ({error}); "
            f"{outcome}. Check REDIS_URL: it must be the heads' Redis."
        )
    where = f"HEAD_URL={_without_userinfo(settings.head_url)}"
    if isinstance(error, PublishRefusedError):
        fix = (
            "Give the run the head's NEXTAUTH_SECRET (or INDEXER_PUBLISH_TOKEN), and HEAD_URL "
            "the head's address"
        )
    else:
        fix = (
            "Set HEAD_URL to the head's address (for `indexer head --port 4100`: "
            "HEAD_URL=http://127.0.0.1:4100)"
        )
    return f"this run's events reach no head at {where} ({error}); {outcome}. {fix}."


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))
