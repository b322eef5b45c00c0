"""Typed payloads of every Socket.IO event and of the publish path (spec 05).

Server → browser: `index:started {}`, `index:progress`, `index:ready {pageCount}`,
`index:failed {error, phase}`, `workspace:joined`, `workspace:left`, `error {message}`.
Browser → server: `workspace:join {workspaceId}`, `workspace:leave {workspaceId}`.
Extra fields are allowed on index events; the spec's fields keep their names and meaning.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError

from core.db import OBJECT_ID_PATTERN

PHASES: tuple[str, ...] = ("fetch", "render", "analyze", "embed", "ontology", "finalize")
Phase = Literal["fetch", "render", "analyze", "embed", "ontology", "finalize"]
IndexEventName = Literal["index:started", "index:progress", "index:ready", "index:failed"]
INDEX_EVENT_NAMES: tuple[str, ...] = (
    "index:started",
    "index:progress",
    "index:ready",
    "index:failed",
)
MAX_ID_LENGTH = 64


def workspace_room(workspace_id: str) -> str:
    """The Socket.IO room of a workspace, as the spec names it."""
    return f"workspace:{workspace_id}"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class IndexStarted(_Payload):
    pass


class IndexProgress(_Payload):
    phase: Phase
    docsDone: NonNegativeInt
    docsTotal: NonNegativeInt
    pagesDone: NonNegativeInt
    pagesTotal: NonNegativeInt
    documentId: str | None = None


class IndexReady(_Payload):
    pageCount: NonNegativeInt


class IndexFailed(_Payload):
    error: str = Field(max_length=2000)
    phase: str = Field(max_length=32)


INDEX_EVENT_MODELS: dict[str, type[_Payload]] = {
    "index:started": IndexStarted,
    "index:progress": IndexProgress,
    "index:ready": IndexReady,
    "index:failed": IndexFailed,
}


class PublishRequest(BaseModel):
    """What a run sends to a head's publish endpoint: one index event for one room."""

    model_config = ConfigDict(extra="forbid")

    # rooms and history key on the id's text: only the canonical spelling names a room
    workspaceId: str = Field(pattern=f"^{OBJECT_ID_PATTERN.pattern}$")
    event: IndexEventName
    payload: dict[str, Any] = Field(default_factory=dict)
    sentAt: float | None = None  # the publisher's clock (epoch s), for the latency metric


def validate_index_payload(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Check an index event's payload against the spec; return it as JSON-ready data.

    Raises:
        ValueError: the event is unknown or its payload breaks the spec.
    """
    model = INDEX_EVENT_MODELS.get(event)
    if model is None:
        raise ValueError(f"unknown event {event!r}")
    try:
        return model.model_validate(payload).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        raise ValueError(f"invalid {event} payload: {exc.errors(include_input=False)}") from None


class ResumePoint(BaseModel):
    """The last event a client applied: `{epoch, seq}` from an earlier `index:*` event."""

    epoch: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    seq: int = Field(ge=0)


class RoomRequest(BaseModel):
    """`workspace:join` / `workspace:leave` from a browser; `since` asks for a replay."""

    model_config = ConfigDict(extra="ignore")

    workspaceId: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    since: ResumePoint | None = None
