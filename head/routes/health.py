"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from core.db import ping
from core.errors import StorageError
from head.deps import State

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/metrics", response_class=Response)
async def metrics(state: State) -> Response:
    """Prometheus text format: sockets, rooms, events by type, publish latency, auth failures."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    """Every dependency answers: MongoDB always, Redis when configured. 503 names the
    failing dependency. `runs` says where local runs stand: `warming` (the head's Ray and
    run driver are starting or loading models; the status is `warming` too), `ready`,
    `cold` (they start with the first run), or `unavailable: why`.
    """
    checks: dict[str, str] = {}
    try:
        await ping(state.db)
        checks["mongodb"] = "ok"
    except StorageError:
        checks["mongodb"] = "unavailable"
    if state.redis is not None:
        try:
            await state.redis.ping()
            checks["redis"] = "ok"
        except (RedisError, OSError):
            checks["redis"] = "unavailable"
    failing = [name for name, result in checks.items() if result != "ok"]
    # Runs are reported, not required: a head without them still serves every browser.
    runs = state.runs.status
    status = "unavailable" if failing else "warming" if runs in ("starting", "warming") else "ready"
    body: dict[str, Any] = {"status": status, "checks": checks, "runs": runs}
    if failing:
        body["failing"] = failing
    return JSONResponse(body, status_code=503 if failing else 200)
