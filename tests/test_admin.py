"""Admin endpoints: bearer ADMIN_TOKEN on every route, listing, sockets, metrics."""

from __future__ import annotations

import httpx
import pytest

from core.jobs import create_job, update_job
from core.settings import Secret
from core.workspaces import create_workspace

pytestmark = pytest.mark.asyncio

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
ROUTES = [
    ("GET", "/admin/jobs"),
    ("GET", "/admin/jobs/000000000000000000000000"),
    ("POST", "/admin/jobs/000000000000000000000000/cancel"),
    ("POST", "/admin/workspaces/000000000000000000000000/retry-failed"),
    ("GET", "/admin/sockets"),
]


@pytest.fixture
def admin_head(settings, start_head):
    return start_head(settings.with_overrides(admin_token=Secret(ADMIN_TOKEN)))


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_admin_route_refuses_missing_or_wrong_token(admin_head, method, path) -> None:
    async with httpx.AsyncClient(base_url=admin_head.url) as http:
        missing = await http.request(method, path)
        wrong = await http.request(method, path, headers={"Authorization": "Bearer nope"})
        right = await http.request(method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert missing.status_code == 401
    assert wrong.status_code == 403
    assert right.status_code not in (401, 403)
    for response in (missing, wrong, right):
        assert ADMIN_TOKEN not in response.text


async def test_admin_disabled_without_token(head) -> None:
    async with httpx.AsyncClient(base_url=head.url) as http:
        response = await http.get("/admin/jobs", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403


async def test_jobs_listing_filters_and_pages(admin_head, db) -> None:
    ids = []
    for name in ("a", "b"):
        workspace_id = str(await create_workspace(db, name=name, owner_id="o", member_ids=[]))
        job_id = await create_job(db, workspace_id, mode="local", requested_by="t")
        ids.append((workspace_id, job_id))
    await update_job(db, ids[0][1], status="succeeded", phaseSeconds={"render": 1.5})
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=admin_head.url, headers=headers) as http:
        everything = (await http.get("/admin/jobs")).json()
        done = (await http.get("/admin/jobs", params={"status": "succeeded"})).json()
        by_ws = (await http.get("/admin/jobs", params={"workspaceId": ids[1][0]})).json()
        page2 = (await http.get("/admin/jobs", params={"pageSize": 1, "page": 2})).json()
        one = (await http.get(f"/admin/jobs/{ids[0][1]}")).json()
        bad = await http.get("/admin/jobs/not-an-id")
        too_big = await http.get("/admin/jobs", params={"pageSize": 10_000})
        openapi = (await http.get("/openapi.json")).json()
    assert everything["total"] == 2
    assert [j["id"] for j in done["jobs"]] == [ids[0][1]]
    assert [j["id"] for j in by_ws["jobs"]] == [ids[1][1]]
    assert len(page2["jobs"]) == 1
    assert one["phaseSeconds"] == {"render": 1.5}
    assert bad.status_code == 404
    assert too_big.status_code == 422
    for path in (
        "/admin/jobs",
        "/admin/jobs/{job_id}/cancel",
        "/admin/sockets",
        "/admin/workspaces/{workspace_id}/retry-failed",
    ):
        assert path in openapi["paths"]


async def test_second_active_run_is_refused(db) -> None:
    from core.db import ensure_indexes
    from core.jobs import RunAlreadyActiveError

    await ensure_indexes(db)
    await create_job(db, "w1", mode="local", requested_by="t")
    with pytest.raises(RunAlreadyActiveError):
        await create_job(db, "w1", mode="local", requested_by="t")
    other = await create_job(db, "w2", mode="local", requested_by="t")
    await update_job(db, other, status="failed")
    await create_job(db, "w2", mode="local", requested_by="t")  # the ended one frees it


async def test_sockets_and_metrics(admin_head, db, session_cookie, connect_client) -> None:
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    client = await connect_client(admin_head.url, session_cookie("alice"))
    await client.join(workspace_id)
    await connect_client(admin_head.url, "next-auth.session-token=garbage")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=admin_head.url, headers=headers) as http:
        sockets = (await http.get("/admin/sockets")).json()
        metrics = (await http.get("/metrics")).text
    assert sockets["connections"] == 1
    assert sockets["rooms"] == {f"workspace:{workspace_id}": 1}
    assert "indexer_head_sockets_connected 1.0" in metrics
    assert "indexer_head_room_memberships 1.0" in metrics
    assert 'indexer_head_events_sent_total{event="workspace:joined"} 1.0' in metrics
    assert 'indexer_head_auth_failures_total{reason="unknown_session"} 1.0' in metrics
