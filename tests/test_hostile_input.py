"""Property-based tests over client input: Socket.IO payloads and REST inputs.

Nothing may crash the head, log an error, leak another workspace's data, or echo a secret.
Each example talks to a real head over the network; the autouse `no_errors_logged` fixture
fails the test on any error in the head's log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.settings import Secret
from core.workspaces import create_workspace

ADMIN_TOKEN = "hostile-admin-token-0123456789abcdef"
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
room_payloads = st.one_of(
    json_values,
    st.fixed_dictionaries({"workspaceId": json_values}),
    st.fixed_dictionaries({"workspaceId": st.text(max_size=80), "since": json_values}),
)


@pytest.fixture
def hostile_head(settings, start_head, db):
    head = start_head(settings.with_overrides(admin_token=Secret(ADMIN_TOKEN)))
    loop = asyncio.new_event_loop()
    try:
        ids = loop.run_until_complete(_workspaces(settings))
    finally:
        loop.close()
    return head, ids


async def _workspaces(settings: Any) -> dict[str, str]:
    from core.db import open_client

    client = open_client(settings.mongodb_uri.reveal())
    try:
        db = client[settings.mongodb_db]
        mine = await create_workspace(db, name="mine", owner_id="alice", member_ids=[])
        theirs = await create_workspace(
            db, name="theirs-secret-name", owner_id="bob", member_ids=[]
        )
        return {"mine": str(mine), "theirs": str(theirs)}
    finally:
        await client.close()


async def _exchange(url: str, cookie: str, event: str, payload: Any, mine: str) -> list[Any]:
    """Send one hostile event, then a valid join; return everything heard until its answer."""
    client = socketio.AsyncClient(reconnection=False)
    heard: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    @client.on("*")
    async def on_any(name: str, data: Any = None) -> None:
        await heard.put((name, data))

    await client.connect(url, headers={"Cookie": cookie}, transports=["websocket"])
    try:
        await client.emit(event, payload)
        await client.emit("workspace:join", {"workspaceId": mine})
        received = []
        while True:
            name, data = await asyncio.wait_for(heard.get(), 10)
            received.append((name, data))
            if name == "workspace:joined" and data["workspaceId"] == mine:
                return received
    finally:
        await client.disconnect()


@PROPERTY_SETTINGS
@given(
    event=st.sampled_from(["workspace:join", "workspace:leave"]) | st.text(max_size=30),
    payload=room_payloads,
)
def test_socket_payloads_never_break_the_head(hostile_head, session_cookie, event, payload):
    head, ids = hostile_head
    if isinstance(payload, dict) and payload.get("workspaceId") == "THEIRS":
        payload["workspaceId"] = ids["theirs"]
    received = asyncio.run(
        _exchange(head.url, session_cookie("alice"), event, payload, ids["mine"])
    )
    for name, data in received:
        assert name in ("error", "workspace:joined", "workspace:left"), (name, data)
        assert "theirs-secret-name" not in json.dumps(data)
        if name == "workspace:joined":
            assert data["workspaceId"] == ids["mine"]


def test_someone_elses_workspace_is_denied_with_any_since(hostile_head, session_cookie):
    head, ids = hostile_head
    payload = {"workspaceId": ids["theirs"], "since": {"epoch": "x", "seq": 0}}
    received = asyncio.run(
        _exchange(head.url, session_cookie("alice"), "workspace:join", payload, ids["mine"])
    )
    assert received[0] == ("error", {"message": "Access denied"})


path_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/?#%"),
    min_size=1,
    max_size=60,
)


@PROPERTY_SETTINGS
@given(
    segment=path_text,
    query=st.text(max_size=600),
    number=st.integers(-(10**6), 10**6),
    body=json_values,
)
def test_rest_inputs_never_500_or_leak(hostile_head, session_cookie, segment, query, number, body):
    head, ids = hostile_head
    cookie = {"Cookie": session_cookie("alice")}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    publish = {"Authorization": f"Bearer {head.settings.effective_publish_token().reveal()}"}
    with httpx.Client(base_url=head.url, timeout=30) as http:
        responses = [
            http.get(f"/api/workspaces/{segment}", headers=cookie),
            http.get(f"/api/workspaces/{ids['theirs']}", headers=cookie),
            http.get(
                f"/api/workspaces/{ids['mine']}/search",
                params={"q": query, "k": number},
                headers=cookie,
            ),
            http.get(
                f"/api/workspaces/{segment}/documents/{segment}/pages/{number}/image",
                headers=cookie,
            ),
            http.get("/admin/jobs", params={"page": number, "status": query[:20]}, headers=admin),
            http.get(f"/admin/jobs/{segment}", headers=admin),
            http.post("/internal/events", json=body, headers=publish),
            http.post("/internal/events", content=query.encode(), headers=publish),
        ]
    for response in responses:
        assert response.status_code < 500, (response.request.url, response.text)
        for secret in (ADMIN_TOKEN, head.settings.nextauth_secret.reveal(), "theirs-secret-name"):
            assert secret not in response.text
    assert responses[1].status_code == 403


def test_no_secret_or_token_in_logs(hostile_head, session_cookie, caplog):
    head, ids = hostile_head
    caplog.set_level(logging.DEBUG)
    cookie = session_cookie("alice")
    token = cookie.split("=", 1)[1]
    with httpx.Client(base_url=head.url) as http:
        http.get(f"/api/workspaces/{ids['mine']}", headers={"Cookie": cookie})
        http.get(f"/api/workspaces/{ids['mine']}", headers={"Cookie": cookie[:-5] + "AAAAA"})
        http.get("/admin/jobs", headers={"Authorization": "Bearer wrong-" + ADMIN_TOKEN})
        http.post("/internal/events", json={}, headers={"Authorization": "Bearer nope"})
    asyncio.run(_exchange(head.url, cookie, "workspace:join", {"workspaceId": 1}, ids["mine"]))
    secrets = [
        ADMIN_TOKEN,
        head.settings.nextauth_secret.reveal(),
        token,
        head.settings.effective_publish_token().reveal(),
    ]
    for record in caplog.records:
        text = record.getMessage()
        assert not any(secret in text for secret in secrets), record.name
