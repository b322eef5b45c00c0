"""The publish endpoint: runs hand index events to a head, which broadcasts them to a room.

Authenticated with the publish token (see Settings.effective_publish_token). With Redis
configured, the emit goes through python-socketio's Redis manager, so every head delivers
the event to its own clients exactly once.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, HTTPException, Request, status

from core.events import PublishRequest, validate_index_payload
from head.broadcast import broadcast
from head.deps import State, check_bearer


def require_publish_token(request: Request, state: State) -> None:
    """Checked before the body is parsed, so strangers learn nothing about the schema."""
    check_bearer(request, state.settings.effective_publish_token())


router = APIRouter(
    prefix="/internal", tags=["internal"], dependencies=[Depends(require_publish_token)]
)


@router.post("/events", status_code=status.HTTP_202_ACCEPTED)
async def publish_event(body: PublishRequest, state: State) -> dict[str, str]:
    """Broadcast one `index:*` event to `workspace:{workspaceId}`."""
    try:
        payload = validate_index_payload(body.event, body.payload)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    await broadcast(state, body.workspaceId, body.event, payload)
    if body.sentAt is not None:
        state.metrics.publish_latency.observe(max(0.0, time.time() - body.sentAt))
    return {"status": "accepted"}
