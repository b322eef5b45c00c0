"""Running one index from a terminal: Ray connection, progress bar, summary."""

from __future__ import annotations

import asyncio
from typing import Any

from cluster.driver import RunActors, RunSummary, run_index
from cluster.progress_bar import show_progress
from cluster.ray_runtime import ray_for_runs
from core.settings import Settings


def format_summary(summary: RunSummary) -> str:
    lines = [
        f"run {summary.job_id}: {summary.status} in {summary.seconds:.1f}s",
        f"  documents {summary.documents} (skipped unchanged {summary.skipped_documents}, "
        f"failed {len(summary.failed_documents)})",
        f"  pages {summary.pages}, chunks {summary.chunks}, concepts {summary.concepts}",
    ]
    for document_id, error in summary.failed_documents.items():
        lines.append(f"  failed {document_id}: {error}")
    pages = summary.pages
    for phase, seconds in summary.phase_seconds.items():
        rate = (
            f", {pages / seconds:.1f} pages/s"
            if seconds > 0 and phase in ("render", "analyze", "embed")
            else ""
        )
        lines.append(f"  {phase:<8} busy {seconds:.1f}s{rate}")
    if summary.error:
        lines.append(f"  error: {summary.error}")
    return "\n".join(lines)


def summary_of_job(job: dict[str, Any]) -> RunSummary:
    """The summary a `jobs` document records (a run followed from MongoDB)."""
    counts = job.get("counts") or {}
    return RunSummary(
        job_id=str(job["_id"]),
        status=str(job.get("status")),
        documents=int(counts.get("documents", 0)),
        failed_documents={f["documentId"]: f["error"] for f in job.get("failedDocuments", [])},
        skipped_documents=int(counts.get("skipped", 0)),
        pages=int(counts.get("pages", 0)),
        chunks=int(counts.get("chunks", 0)),
        concepts=int(counts.get("concepts", 0)),
        seconds=float(job.get("seconds") or 0.0),
        phase_seconds=dict(job.get("phaseSeconds") or {}),
        error=job.get("error"),
    )


def index_with_progress(
    settings: Settings, workspace_id: str, job_id: str | None = None
) -> RunSummary:
    """Connect Ray, run the index with a progress bar on stderr, print the summary."""
    with ray_for_runs(settings):
        summary = asyncio.run(_run_with_bar(settings, workspace_id, job_id))
    print(format_summary(summary))
    return summary


async def _run_with_bar(settings: Settings, workspace_id: str, job_id: str | None) -> RunSummary:
    watchers: list[asyncio.Task[None]] = []

    def on_start(actors: RunActors) -> None:
        watchers.append(asyncio.create_task(show_progress(actors.aggregator)))

    try:
        return await run_index(settings, workspace_id, job_id=job_id, on_start=on_start)
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
