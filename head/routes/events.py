"""The publish endpoint: runs hand index events to a head, which broadcasts them to a room.

Authenticated with the publish token (see Settings.effective_publish_token), before the
body is read: a stranger's body is neither buffered nor parsed. The body is bounded by
`Settings.max_event_bytes` (413 above it; the app factory sets the bound). With Redis
configured, the emit goes through python-socketio's Redis manager, so every head delivers
the event to its own clients exactly once.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import ValidationError

from core.events import PublishRequest, validate_index_payload
from head.broadcast import broadcast
from head.deps import State, check_bearer


async def require_publish_token(request: Request, state: State) -> None:
    """Checked before the body is read, so strangers learn nothing about the schema."""
    check_bearer(request, state.settings.effective_publish_token())


router = APIRouter(
    prefix="/internal", tags=["internal"], dependencies=[Depends(require_publish_token)]
)

# The body is read in the handler (after the token check), so the schema is declared here.
_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PublishRequest.model_json_schema()}},
    }
}


@router.post("/events", status_code=status.HTTP_202_ACCEPTED, openapi_extra=_BODY_SCHEMA)
async def publish_event(request: Request, state: State) -> dict[str, str]:
    """Broadcast one `index:*` event to `workspace:{workspaceId}`."""
    body = _publish_request(await request.body())
    try:
        payload = validate_index_payload(body.event, body.payload)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    await broadcast(state, body.workspaceId, body.event, payload)
    if body.sentAt is not None:
        state.metrics.publish_latency.observe(max(0.0, time.time() - body.sentAt))
    return {"status": "accepted"}


def _publish_request(raw: bytes) -> PublishRequest:
    """The body as a PublishRequest; 422 listing what is wrong, without echoing the input."""
    try:
        return PublishRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = json.loads(exc.json(include_input=False, include_url=False))
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, errors) from None
