"""Ray Jobs: submitting an indexing run to a cluster and following it.

The run's driver is `indexer index WORKSPACE --job-id ID` on the cluster. Its runtime env
carries only settings that are not secret; NEXTAUTH_SECRET (or INDEXER_PUBLISH_TOKEN),
REDIS_URL and a MONGODB_URI with credentials come from the cluster nodes' own environment,
because a job's runtime env is shown in the Ray dashboard. The Ray auth token (Ray 2.60
turns token authentication on by default) is found by Ray's own client in RAY_AUTH_TOKEN or
~/.ray/auth_token.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import urlsplit

from cluster.ray_auth import auth_token
from core.settings import Settings

RAY_TO_JOB_STATUS = {
    "PENDING": "pending",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "STOPPED": "stopped",
}
FOLLOW_INTERVAL_S = 1.0
# Ray's Jobs API answers this while no node's agent can take a job yet (right after
# `ray start`); it is worth asking again for a while.
AGENT_NOT_READY = "No available agent to submit job"
SUBMIT_PATIENCE_S = 60.0
SUBMIT_RETRY_S = 1.0


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

    Ray's own client sends its token only in token mode; `indexer submit` sends the one it
    finds (`cluster.ray_auth.auth_token`) whatever the mode.
    """
    token = auth_token(os.environ)
    return {"Authorization": f"Bearer {token}"} if token else {}


def jobs_client(address: str) -> Any:
    """A JobSubmissionClient for `address` that authenticates when the cluster needs it."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address, headers=ray_auth_headers())


def submit_ray_job(
    settings: Settings,
    workspace_id: str,
    job_id: str,
    address: str,
    *,
    patience_s: float = SUBMIT_PATIENCE_S,
) -> str:
    """Submit the run's driver as a Ray Job; returns the Ray job id. Blocking (HTTP).

    A cluster whose agents are not up yet is asked again for `patience_s`: Ray creates
    nothing when it answers so, and the submission id is ours, so a second try cannot
    start a second run.
    """
    client = jobs_client(address)
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return str(
                client.submit_job(
                    entrypoint=f"python -m cli.main index {workspace_id} --job-id {job_id}",
                    submission_id=ray_job_id_for(job_id),
                    runtime_env={"env_vars": job_env(settings)},
                    metadata={"workspaceId": workspace_id, "jobId": job_id},
                )
            )
        except RuntimeError as exc:
            if AGENT_NOT_READY not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(SUBMIT_RETRY_S)


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
