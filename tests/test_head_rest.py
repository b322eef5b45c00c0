"""REST of the head: probes, workspace state, CORS, the publish endpoint's auth."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core.workspaces import create_workspace
from tests.conftest import WEB_APP_URL

pytestmark = pytest.mark.asyncio


async def test_healthz_and_readyz(head) -> None:
    async with httpx.AsyncClient(base_url=head.url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"mongodb": "ok"}


async def test_readyz_names_failing_redis(settings, start_head, redis_server) -> None:
    """Redis configured but unreachable: 503 naming redis, while MongoDB is fine."""
    from core.settings import Secret
    from tests.conftest import free_port

    dead = settings.with_overrides(redis_url=Secret(f"redis://127.0.0.1:{free_port()}/0"))
    head = start_head(dead)
    async with httpx.AsyncClient(base_url=head.url, timeout=30) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["redis"]
    assert ready.json()["checks"]["mongodb"] == "ok"


async def test_readyz_with_live_redis(settings, start_head, redis_server) -> None:
    from core.settings import Secret

    head = start_head(settings.with_overrides(redis_url=Secret(redis_server())))
    async with httpx.AsyncClient(base_url=head.url) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"mongodb": "ok", "redis": "ok"}


async def test_workspace_state_statuses(head, db, session_cookie) -> None:
    workspace_id = str(
        await create_workspace(db, name="Docs", owner_id="alice", member_ids=["bob"])
    )
    async with httpx.AsyncClient(base_url=head.url) as http:

        def get(path: str, cookie: str | None) -> Any:
            return http.get(path, headers={"Cookie": cookie} if cookie else {})

        path = f"/api/workspaces/{workspace_id}"
        owner = await get(path, session_cookie("alice"))
        viewer = await get(path, session_cookie("bob"))
        stranger = await get(path, session_cookie("mallory"))
        anonymous = await get(path, None)
        expired = await get(path, session_cookie("alice", expires_in_s=-120))
        missing = await get(f"/api/workspaces/{'0' * 24}", session_cookie("alice"))
        malformed = await get("/api/workspaces/not-an-id", session_cookie("alice"))
    assert owner.status_code == 200
    body = owner.json()
    assert body["role"] == "owner"
    assert body["name"] == "Docs"
    assert body["indexStatus"] == "idle"
    assert body["pageCount"] == 0
    assert body["indexProgress"]["pagesDone"] == 0
    assert viewer.json()["role"] == "viewer"
    assert stranger.status_code == 403
    assert stranger.json() == {"detail": "Access denied"}
    assert anonymous.status_code == 401
    assert anonymous.json() == {"detail": "Authentication required"}
    assert expired.status_code == 401
    assert missing.status_code == 404
    assert malformed.status_code == 404


async def test_cors_allows_exactly_the_web_app(head, expected_errors) -> None:
    expected_errors.append("http://evil.test is not an accepted origin")
    async with httpx.AsyncClient(base_url=head.url) as http:
        good = await http.options(
            "/api/workspaces/x",
            headers={"Origin": WEB_APP_URL, "Access-Control-Request-Method": "GET"},
        )
        evil = await http.options(
            "/api/workspaces/x",
            headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "GET"},
        )
        sio_good = await http.get(
            "/socket.io/?EIO=4&transport=polling", headers={"Origin": WEB_APP_URL}
        )
        sio_evil = await http.get(
            "/socket.io/?EIO=4&transport=polling", headers={"Origin": "http://evil.test"}
        )
    assert good.headers["access-control-allow-origin"] == WEB_APP_URL
    assert good.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in evil.headers
    assert sio_good.status_code == 200
    assert sio_good.headers["access-control-allow-origin"] == WEB_APP_URL
    assert sio_good.headers["access-control-allow-credentials"] == "true"
    assert sio_evil.status_code == 400


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Basic abc", 401), ("Bearer wrong", 403), ("Bearer", 401)],
)
async def test_publish_endpoint_requires_token(head, authorization, status) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(base_url=head.url) as http:
        response = await http.post(
            "/internal/events",
            json={"workspaceId": "a", "event": "index:started", "payload": {}},
            headers=headers,
        )
    assert response.status_code == status


async def test_publish_endpoint_rejects_bad_events(head) -> None:
    token = head.settings.effective_publish_token().reveal()
    bad_bodies = [
        {"workspaceId": "a", "event": "workspace:joined", "payload": {}},
        {"workspaceId": "a", "event": "index:progress", "payload": {"phase": "nope"}},
        {"workspaceId": "a", "event": "index:ready", "payload": {"pageCount": -1}},
        {"workspaceId": "", "event": "index:started", "payload": {}},
        ["not", "an", "object"],
    ]
    async with httpx.AsyncClient(base_url=head.url) as http:
        for body in bad_bodies:
            response = await http.post(
                "/internal/events", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 422, body
            assert token not in response.text


async def test_64kb_cookie_is_refused_and_head_keeps_serving(head, connect_client) -> None:
    big = "next-auth.session-token=" + "A" * 65_536
    async with httpx.AsyncClient(base_url=head.url) as http:
        try:
            response = await http.get("/api/workspaces/x", headers={"Cookie": big})
            outcome = response.status_code
        except httpx.RemoteProtocolError:  # the server may close an oversized request
            outcome = "closed"
        assert outcome in (400, 401, 431, "closed")
        client = await connect_client(head.url, big)
        assert not client.client.connected
        assert (await http.get("/healthz")).status_code == 200
