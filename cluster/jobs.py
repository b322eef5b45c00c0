"""Ray Jobs: submitting an indexing run to a cluster and following it.

The run's driver is `indexer index WORKSPACE --job-id ID` on the cluster. Its runtime env
carries only settings that are not secret; NEXTAUTH_SECRET (or INDEXER_PUBLISH_TOKEN),
REDIS_URL and a MONGODB_URI with credentials come from the cluster nodes' own environment,
because a job's runtime env is shown in the Ray dashboard. The Ray auth token (Ray 2.60
turns token authentication on by default) is found by Ray's own client in RAY_AUTH_TOKEN or
~/.ray/auth_token.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.settings import Settings

RAY_TO_JOB_STATUS = {
    "PENDING": "pending",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "STOPPED": "stopped",
}
FOLLOW_INTERVAL_S = 1.0


@dataclass(frozen=True)
class SubmittedRun:
    job_id: str
    ray_job_id: str


def ray_job_id_for(job_id: str) -> str:
    """We pick the Ray job id ourselves, so a retried submission cannot start a second run."""
    return f"indexer-{job_id}"


def job_env(settings: Settings) -> dict[str, str]:
    """The non-secret settings a run needs on the cluster."""
    env = {
        "MONGODB_DB": settings.mongodb_db,
        "HEAD_URL": settings.head_url,
        "EMBED_MODEL": settings.embed_model,
        "INDEXER_RENDER_DPI": str(settings.render_dpi),
        "INDEXER_MAX_DOCUMENT_BYTES": str(settings.max_document_bytes),
    }  # offline model loading comes from the driver's own runtime env (ray_runtime.py)
    if settings.mongodb_uri is not None and not urlsplit(settings.mongodb_uri.reveal()).password:
        env["MONGODB_URI"] = settings.mongodb_uri.reveal()
    return env


def ray_auth_headers() -> dict[str, str]:
    """The cluster's token as a bearer header, when one is configured or on disk.

    Ray's own client only sends its token when RAY_AUTH_MODE=token is set in this process;
    a CLI on an operator's machine usually has just the token (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), so we send it ourselves.
    """
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "") or Path.home() / ".ray/auth_token")
        with contextlib.suppress(OSError):
            token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def jobs_client(address: str) -> Any:
    """A JobSubmissionClient for `address` that authenticates when the cluster needs it."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address, headers=ray_auth_headers())


def submit_ray_job(settings: Settings, workspace_id: str, job_id: str, address: str) -> str:
    """Submit the run's driver as a Ray Job; returns the Ray job id. Blocking (HTTP)."""
    client = jobs_client(address)
    return str(
        client.submit_job(
            entrypoint=f"python -m cluster.cli index {workspace_id} --job-id {job_id}",
            submission_id=ray_job_id_for(job_id),
            runtime_env={"env_vars": job_env(settings)},
            metadata={"workspaceId": workspace_id, "jobId": job_id},
        )
    )


def stop_ray_job(address: str, ray_job_id: str, *, timeout_s: float = 60.0) -> str:
    """Stop a Ray job and wait (bounded) until Ray reports it ended; returns its status."""
    client = jobs_client(address)
    client.stop_job(ray_job_id)
    deadline = time.monotonic() + timeout_s
    status = str(client.get_job_status(ray_job_id))
    while status in ("PENDING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.2)
        status = str(client.get_job_status(ray_job_id))
    return status
