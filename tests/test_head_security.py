"""Findings of the outside security review (issue 22), each against a real head.

Every test here drives the head the way the attack does (raw HTTP, raw websocket frames,
real Socket.IO clients) and checks the clear refusal the head gives now.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import httpx
import pytest
from bson import ObjectId

from core.events import workspace_room
from core.jobs import create_job
from core.publisher import make_publisher
from core.settings import Secret
from core.workspaces import create_workspace
from tests.conftest import WEB_APP_URL
from tests.test_node_client import read_line, start_node_client

pytestmark = pytest.mark.asyncio


async def make_workspace(db: Any, owner: str = "alice", members: tuple[str, ...] = ("bob",)) -> str:
    return str(await create_workspace(db, name="Docs", owner_id=owner, member_ids=list(members)))


def publish_headers(head: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {head.settings.effective_publish_token().reveal()}"}


# 1. No cross-site state changes


async def test_cross_site_form_post_does_not_start_a_run(head, db, session_cookie) -> None:
    workspace_id = await make_workspace(db)
    # a run is going, so a request that got through would get 409, and start nothing
    await create_job(db, workspace_id, mode="local", requested_by="alice")
    cookie = {"Cookie": session_cookie("alice")}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    attempts = [
        {"Origin": "http://evil.test", **form},
        {"Origin": "http://evil.test", "Content-Type": "application/json"},
        {"Origin": "null", **form},
        {"Sec-Fetch-Site": "cross-site", **form},
        {"Sec-Fetch-Site": "same-site", "Content-Type": "application/json"},
    ]
    async with httpx.AsyncClient(base_url=head.url) as http:
        for headers in attempts:
            response = await http.post(
                f"/api/workspaces/{workspace_id}/index",
                content=b"a=1",
                headers={**cookie, **headers},
            )
            assert response.status_code == 403, headers
            assert response.json() == {"detail": "Cross-site request refused"}
    assert await db.jobs.count_documents({}) == 1


async def test_state_changes_accept_json_only(head, db, session_cookie) -> None:
    workspace_id = await make_workspace(db)
    await create_job(db, workspace_id, mode="local", requested_by="alice")
    path = f"/api/workspaces/{workspace_id}/index"
    cookie = {"Cookie": session_cookie("alice")}
    async with httpx.AsyncClient(base_url=head.url) as http:
        for content_type in (
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data",
        ):
            response = await http.post(
                path,
                content=b"a=1",
                headers={**cookie, "Origin": WEB_APP_URL, "Content-Type": content_type},
            )
            assert response.status_code == 415, content_type
            assert response.json() == {"detail": "Content-Type must be application/json"}
        untyped = await http.post(path, content=b"{}", headers={**cookie, "Origin": WEB_APP_URL})
        assert untyped.status_code == 415
        # what passes reaches the route: 409, a run is going
        for headers in (
            {"Origin": WEB_APP_URL},
            {"Origin": head.url},
            {"Sec-Fetch-Site": "same-origin"},
            {},
        ):
            response = await http.post(path, json={}, headers={**cookie, **headers})
            assert response.status_code == 409, headers


async def test_bearer_clients_without_origin_keep_working(settings, start_head, db) -> None:
    head = start_head(settings.with_overrides(admin_token=Secret("admin-token-for-csrf")))
    workspace_id = await make_workspace(db)
    admin = {"Authorization": "Bearer admin-token-for-csrf"}
    async with httpx.AsyncClient(base_url=head.url) as http:
        # `curl -H "$H" -X POST .../cancel`: no body, no Content-Type, no Origin
        cancel = await http.post(f"/admin/jobs/{ObjectId()}/cancel", headers=admin)
        retry = await http.post(f"/admin/workspaces/{workspace_id}/retry-failed", headers=admin)
        published = await http.post(
            "/internal/events",
            json={"workspaceId": workspace_id, "event": "index:started", "payload": {}},
            headers=publish_headers(head),
        )
        evil = await http.post(
            f"/admin/workspaces/{workspace_id}/retry-failed",
            headers={**admin, "Origin": "http://evil.test"},
        )
    assert cancel.status_code == 404
    assert retry.json() == {"retried": 0, "jobId": None}
    assert published.status_code == 202
    assert evil.status_code == 403


# 2. The room limit holds for joins sent at once


async def test_joins_sent_at_once_stop_at_the_room_limit(
    head, db, session_cookie, connect_client
) -> None:
    limit = head.settings.max_rooms_per_socket
    ids = [await make_workspace(db) for _ in range(limit + 8)]
    client = await connect_client(head.url, session_cookie("alice"))
    for workspace_id in ids:  # without waiting for answers
        await client.client.emit("workspace:join", {"workspaceId": workspace_id})
    answers = [await client.next_event() for _ in ids]
    joined = [data["workspaceId"] for name, data in answers if name == "workspace:joined"]
    refused = [data["message"] for name, data in answers if name == "error"]
    assert joined == ids[:limit]  # answered in the order sent, too
    assert len(refused) == 8
    assert all(message.startswith("Too many rooms") for message in refused)
    sid = client.client.get_sid()
    assert len(head_rooms(head, sid)) == limit + 1  # and its own room


# 3. A leave right after a join is not lost


async def test_leave_right_after_join_takes_effect(
    head, db, session_cookie, connect_client
) -> None:
    workspace_id = await make_workspace(db)
    client = await connect_client(head.url, session_cookie("alice"))
    await client.client.emit("workspace:join", {"workspaceId": workspace_id})
    await client.client.emit("workspace:leave", {"workspaceId": workspace_id})
    assert (await client.expect("workspace:joined"))["workspaceId"] == workspace_id
    assert await client.expect("workspace:left") == {"workspaceId": workspace_id}
    publisher = make_publisher(head.settings)
    try:
        await publisher.publish(workspace_id, "index:started", {})
    finally:
        await publisher.aclose()
    # a round trip after the publish: a stray event would arrive before its answer
    await client.client.emit("workspace:join", "ping")
    assert (await client.next_event())[0] == "error"
    assert workspace_room(workspace_id) not in head_rooms(head, client.client.get_sid())


# 4. One Cookie header, one identity


@pytest.mark.parametrize("chunked", [False, True])
async def test_two_session_cookies_are_refused_on_both_paths(
    head, db, session_cookie, chunked
) -> None:
    workspace_id = await make_workspace(db, owner="alice", members=("mallory",))
    alice, mallory = session_cookie("alice"), session_cookie("mallory")
    if chunked:  # the same name twice among chunks: `.0` of alice, `.0` of mallory
        alice = alice.replace("=", ".0=", 1)
        mallory = mallory.replace("=", ".0=", 1)
    header = f"{alice}; {mallory}"
    async with httpx.AsyncClient(base_url=head.url) as http:
        rest = await http.get(f"/api/workspaces/{workspace_id}", headers={"Cookie": header})
    assert rest.status_code == 401
    assert rest.json() == {"detail": "Authentication required"}
    # the browser's library sends the header as is (python-engineio's client would fold it
    # into a cookie jar, keeping one copy)
    node = await start_node_client(head.url, header, workspace_id)
    assert await read_line(node) == {
        "event": "connect_error",
        "data": {"message": "Authentication required"},
    }
    await node.wait()


# 5. The publish path authenticates first; every body is bounded


async def test_publish_authenticates_before_reading_the_body(head) -> None:
    async with httpx.AsyncClient(base_url=head.url) as http:
        malformed = await http.post(
            "/internal/events",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        wrong = await http.post(
            "/internal/events",
            content=b"{not json",
            headers={"Content-Type": "application/json", "Authorization": "Bearer wrong"},
        )
    assert malformed.status_code == 401
    assert wrong.status_code == 403


async def test_huge_unauthenticated_body_is_answered_without_being_read(head) -> None:
    """60 MB announced, 1 KB sent: the answer comes without waiting for the rest."""
    status = await status_after_partial_body(head, "/internal/events", 60 * 1024 * 1024)
    assert status == 413


async def test_publish_body_is_bounded_by_max_event_bytes(head, db) -> None:
    workspace_id = await make_workspace(db)
    bound = head.settings.max_event_bytes
    event = {"workspaceId": workspace_id, "event": "index:failed", "payload": {}}
    event["payload"] = {"error": "x", "phase": "fetch"}
    fits = json.dumps({**event, "payload": {**event["payload"], "pad": ""}}).encode()
    fits = fits.replace(b'"pad": ""', b'"pad": "' + b"x" * (bound - len(fits)) + b'"')
    assert len(fits) == bound
    over = fits.replace(b'"pad": "', b'"pad": "x')

    async def chunks(body: bytes) -> Any:  # no Content-Length: the bound counts what arrives
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    async with httpx.AsyncClient(base_url=head.url, headers=publish_headers(head)) as http:
        json_type = {"Content-Type": "application/json"}
        accepted = await http.post("/internal/events", content=fits, headers=json_type)
        too_large = await http.post("/internal/events", content=over, headers=json_type)
        streamed = await http.post("/internal/events", content=chunks(over), headers=json_type)
    assert accepted.status_code == 202
    assert too_large.status_code == 413
    assert streamed.status_code == 413


async def test_other_routes_take_small_bodies_only(head, db, session_cookie) -> None:
    workspace_id = await make_workspace(db, owner="bob", members=("alice",))
    async with httpx.AsyncClient(base_url=head.url) as http:
        response = await http.post(
            f"/api/workspaces/{workspace_id}/index",
            json={"pad": "x" * 100_000},
            headers={"Cookie": session_cookie("alice")},
        )
    assert response.status_code == 413
    status = await status_after_partial_body(head, f"/api/workspaces/{workspace_id}/index", 10**9)
    assert status == 413


async def status_after_partial_body(head: Any, path: str, announced: int) -> int:
    """POST announcing `announced` body bytes, send 1 KB of them, return the status line's
    code; times out when the head waits for the rest of the body."""
    host, port = head.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {announced}\r\n\r\n".encode()
            + b"{" * 1024
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(status_line.split()[1])


async def test_publish_refuses_a_megabyte_payload_field(head, db) -> None:
    workspace_id = await make_workspace(db)
    body = {
        "workspaceId": workspace_id,
        "event": "index:failed",
        "payload": {"error": "x", "phase": "fetch", "detail": "x" * 1_000_000},
    }
    async with httpx.AsyncClient(base_url=head.url) as http:
        response = await http.post("/internal/events", json=body, headers=publish_headers(head))
    assert response.status_code == 413


# 6. Revoked database sessions are disconnected


@pytest.mark.parametrize("revoke", ["delete", "expire"])
async def test_revoked_database_session_is_disconnected(head, db, connect_client, revoke) -> None:
    workspace_id = await make_workspace(db)
    token = "db-session-" + ObjectId().binary.hex()
    await db.sessions.insert_one(
        {
            "sessionToken": token,
            "userId": "alice",
            "expires": datetime.now(UTC) + timedelta(hours=1),
        }
    )
    client = await connect_client(head.url, f"next-auth.session-token={token}")
    await client.join(workspace_id)
    if revoke == "delete":  # signing out with the NextAuth adapter deletes the row
        await db.sessions.delete_one({"sessionToken": token})
    else:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await db.sessions.update_one({"sessionToken": token}, {"$set": {"expires": past}})
    name, data = await client.next_event(timeout_s=10)  # two 2 s passes, and then some
    assert name == "session:expired"
    assert data["message"].startswith("Session expired")
    await client.client.wait()  # the head closed the connection


async def test_extended_database_session_stays_connected(
    head, db, session_cookie, connect_client
) -> None:
    """The web app moves `expires` forward; the socket follows the row, not its first read."""
    workspace_id = await make_workspace(db)
    soon = datetime.now(UTC) + timedelta(seconds=3)
    row = {"sessionToken": "db-extended", "userId": "alice", "expires": soon}
    await db.sessions.insert_one(row)
    client = await connect_client(head.url, "next-auth.session-token=db-extended")
    await client.join(workspace_id)
    later = datetime.now(UTC) + timedelta(hours=1)
    await db.sessions.update_one({"sessionToken": "db-extended"}, {"$set": {"expires": later}})
    # A JWT socket that ends two passes after the row's first `expires`: the watcher handles
    # sockets in the order they connected, so by the time this one is told, the first one
    # would have been told too.
    witness = await connect_client(head.url, session_cookie("carol", expires_in_s=3 + 4))
    assert (await witness.next_event(timeout_s=20))[0] == "session:expired"
    await client.client.emit("workspace:join", "ping")  # a stray session:expired comes first
    assert (await client.next_event())[0] == "error"
    assert client.client.connected


# 7. Malformed packets close the connection; they never reach the log

MALFORMED_FRAMES: list[str | bytes] = [
    "",  # empty
    "x",  # not an Engine.IO packet type
    "9",
    "0",  # OPEN comes from the server only
    "b!!",  # base64 binary
    b"\x00\x01",  # binary frame
    "4",  # message without a Socket.IO packet
    "4x",
    '42["a"',  # broken JSON
    "42{}",  # event without a name
    "42[]",
    "42[1]",
    "42" + "1" * 120 + '["a"]',  # id too long
    "44{}",  # CONNECT_ERROR comes from the server only
    "47",
    "43[]",  # ack: the head asks for none
    '451-["a",{"_placeholder":true,"num":0}]',  # binary event
    "42" + "[" * 5000 + "]" * 5000,  # nesting deeper than the JSON parser goes
]


@pytest.mark.parametrize("frame", MALFORMED_FRAMES, ids=lambda frame: repr(frame)[:24])
async def test_malformed_websocket_frame_closes_the_connection(head, caplog, frame) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(websocket_url(head)) as ws:
        opened = await ws.receive_str(timeout=10)
        assert opened.startswith("0{")  # Engine.IO OPEN; no Socket.IO CONNECT is ever sent
        for _ in range(200):  # a flood: only the first frame is ever looked at
            await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
        closed = await ws.receive(timeout=10)
    assert closed.type == aiohttp.WSMsgType.CLOSE
    assert closed.data == 1002
    assert not [r for r in caplog.records if r.name.startswith(("engineio", "socketio"))]
    await still_serving(head)


async def test_malformed_polling_packets_get_400(head, caplog) -> None:
    async with httpx.AsyncClient(base_url=head.url) as http:
        handshake = await http.get("/socket.io/?EIO=4&transport=polling")
        sid = json.loads(handshake.text[1:])["sid"]
        url = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        for body in [b"4", b'42["a"', b"\xff\xfe", "\x1e".join(["3"] * 17).encode(), b"d=42"]:
            response = await http.post(url, content=body)
            assert response.status_code == 400, body
        assert (await http.post(url, content=b"40")).status_code == 200  # a well-formed one
    assert not [r for r in caplog.records if r.name.startswith(("engineio", "socketio"))]
    await still_serving(head)


def websocket_url(head: Any) -> str:
    return head.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"


async def still_serving(head: Any) -> None:
    async with httpx.AsyncClient(base_url=head.url) as http:
        assert (await http.get("/healthz")).status_code == 200


# 8. Validate at the edge


async def test_huge_page_number_is_a_client_error(head, db, session_cookie) -> None:
    workspace_id = await make_workspace(db)
    path = f"/api/workspaces/{workspace_id}/documents/{ObjectId()}/pages/{2**63 + 1}/image"
    async with httpx.AsyncClient(base_url=head.url) as http:
        response = await http.get(path, headers={"Cookie": session_cookie("alice")})
        negative = await http.get(
            path.replace(str(2**63 + 1), "-1"), headers={"Cookie": session_cookie("alice")}
        )
    assert response.status_code == 422
    assert negative.status_code == 422


async def test_sub_none_does_not_match_a_member_without_user_id(
    head, db, session_cookie, connect_client
) -> None:
    result = await db.workspaces.insert_one(
        {"name": "x", "ownerId": "alice", "members": [{"addedAt": 1}, {"userId": None}]}
    )
    workspace_id = str(result.inserted_id)
    client = await connect_client(head.url, session_cookie("None"))
    await client.client.emit("workspace:join", {"workspaceId": workspace_id})
    assert await client.next_event() == ("error", {"message": "Access denied"})
    async with httpx.AsyncClient(base_url=head.url) as http:
        rest = await http.get(
            f"/api/workspaces/{workspace_id}", headers={"Cookie": session_cookie("None")}
        )
    assert rest.status_code == 403


async def test_upper_case_workspace_id_is_refused_at_join(
    head, db, session_cookie, connect_client
) -> None:
    workspace_id = await make_workspace(db)
    client = await connect_client(head.url, session_cookie("alice"))
    await client.client.emit("workspace:join", {"workspaceId": workspace_id.upper()})
    assert await client.next_event() == ("error", {"message": "Access denied"})
    assert head_rooms(head, client.client.get_sid()) == [client.client.get_sid()]
    async with httpx.AsyncClient(base_url=head.url) as http:
        rest = await http.get(
            f"/api/workspaces/{workspace_id.upper()}", headers={"Cookie": session_cookie("alice")}
        )
    assert rest.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"workspaceId": "a", "event": "index:started", "payload": {}},
        {"workspaceId": "0" * 24 + " ", "event": "index:started", "payload": {}},
        {"workspaceId": "A" * 24, "event": "index:started", "payload": {}},
    ],
)
async def test_publish_refuses_a_workspace_id_that_is_not_an_object_id(head, body) -> None:
    async with httpx.AsyncClient(base_url=head.url) as http:
        response = await http.post("/internal/events", json=body, headers=publish_headers(head))
    assert response.status_code == 422
    assert "workspaceId" in response.text


# 9. Headers and polls are bounded too


async def test_huge_header_is_refused_before_it_is_read(head) -> None:
    total = 20 * 1024 * 1024
    host, port = head.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Big: ".encode())
    sent = 0
    try:
        while sent < total:
            writer.write(b"a" * 65536)
            await asyncio.wait_for(writer.drain(), 10)
            sent += 65536
    except (ConnectionResetError, BrokenPipeError):
        pass  # the head answered 400 and closed the connection
    finally:
        writer.close()
    assert sent < total / 2, "the head kept reading the header"
    await still_serving(head)


async def test_oversized_poll_is_answered_413(head, caplog) -> None:
    five_mb = b"4" + b'2["workspace:join",' + b" " * (5 * 1024 * 1024) + b'"x"]'

    async def streamed() -> Any:
        yield five_mb

    async with httpx.AsyncClient(base_url=head.url, timeout=10) as http:
        handshake = await http.get("/socket.io/?EIO=4&transport=polling")
        sid = json.loads(handshake.text[1:])["sid"]
        url = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        assert (await http.post(url, content=five_mb)).status_code == 413
        assert (await http.post(url, content=streamed())).status_code == 413  # chunked
        assert (await http.post(url, content=b"40")).status_code == 200  # the session lives
    assert not [r for r in caplog.records if r.name.startswith(("engineio", "socketio"))]


def head_rooms(head: Any, sid: str) -> list[str]:
    """Rooms a client's socket is in, read from the head's own Socket.IO server."""
    return list(head.state.sio.rooms(sid, "/"))
