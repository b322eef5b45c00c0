"""The Socket.IO contract of spec 05 against a real head, real MongoDB and real clients."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from core.events import workspace_room
from core.workspaces import create_workspace

pytestmark = pytest.mark.asyncio


async def make_workspace(db: Any, owner: str = "alice", members: tuple[str, ...] = ("bob",)) -> str:
    return str(await create_workspace(db, name="Docs", owner_id=owner, member_ids=list(members)))


async def test_owner_joins_with_role_owner(head, db, session_cookie, connect_client) -> None:
    workspace_id = await make_workspace(db)
    client = await connect_client(head.url, session_cookie("alice"))
    assert client.client.connected
    joined = await client.join(workspace_id)
    assert (joined["workspaceId"], joined["role"]) == (workspace_id, "owner")
    # the snapshot from MongoDB comes with it, so a page is never blank
    assert joined["snapshot"]["indexStatus"] == "idle"
    assert joined["snapshot"]["id"] == workspace_id
    assert (joined["seq"], joined["refetch"], joined["missed"]) == (0, False, [])


async def test_member_joins_as_viewer(head, db, session_cookie, connect_client) -> None:
    workspace_id = await make_workspace(db)
    client = await connect_client(head.url, session_cookie("bob"))
    joined = await client.join(workspace_id)
    assert (joined["workspaceId"], joined["role"]) == (workspace_id, "viewer")


async def test_object_id_owner_compared_as_string(head, db, session_cookie, connect_client) -> None:
    """NextAuth's adapter stores ObjectIds; the spec compares `ownerId.toString()`."""
    from bson import ObjectId

    owner = ObjectId()
    result = await db.workspaces.insert_one(
        {"name": "x", "ownerId": owner, "members": [{"userId": ObjectId()}]}
    )
    client = await connect_client(head.url, session_cookie(str(owner)))
    joined = await client.join(str(result.inserted_id))
    assert joined["role"] == "owner"


@pytest.mark.parametrize(
    "cookie",
    [None, "next-auth.session-token=garbage", "unrelated=1", "next-auth.session-token="],
)
async def test_refused_without_valid_session(head, connect_client, cookie) -> None:
    client = await connect_client(head.url, cookie)
    assert not client.client.connected
    error = await asyncio.wait_for(client.connect_errors.get(), 10)
    assert error == {"message": "Authentication required"}


async def test_expired_and_subless_tokens_refused(head, session_cookie, connect_client) -> None:
    for cookie in (session_cookie("alice", expires_in_s=-60), session_cookie(None)):
        client = await connect_client(head.url, cookie)
        assert not client.client.connected
        assert await asyncio.wait_for(client.connect_errors.get(), 10) == {
            "message": "Authentication required"
        }


async def test_wrong_secret_refused(head, settings, connect_client) -> None:
    from head.nextauth import encode_session_token

    token = encode_session_token({"sub": "alice", "exp": 2**31}, "not-the-secret")
    client = await connect_client(head.url, f"next-auth.session-token={token}")
    assert await asyncio.wait_for(client.connect_errors.get(), 10) == {
        "message": "Authentication required"
    }


async def test_database_session_strategy(head, db, connect_client) -> None:
    """A non-JWE cookie is a database session token from the NextAuth MongoDB adapter."""
    from datetime import UTC, datetime, timedelta

    workspace_id = await make_workspace(db)
    await db.sessions.insert_one(
        {
            "sessionToken": "db-token-1",
            "userId": "alice",
            "expires": datetime.now(UTC) + timedelta(hours=1),
        }
    )
    await db.sessions.insert_one(
        {
            "sessionToken": "db-token-old",
            "userId": "alice",
            "expires": datetime.now(UTC) - timedelta(hours=1),
        }
    )
    good = await connect_client(head.url, "next-auth.session-token=db-token-1")
    assert (await good.join(workspace_id))["role"] == "owner"
    for token in ("db-token-old", "db-token-unknown"):
        bad = await connect_client(head.url, f"next-auth.session-token={token}")
        assert await asyncio.wait_for(bad.connect_errors.get(), 10) == {
            "message": "Authentication required"
        }


@pytest.mark.parametrize("workspace_id", ["not-an-id", "0" * 24, "zz" * 12, "' || 1==1", "a" * 64])
async def test_bad_or_unknown_ids_are_access_denied(
    head, db, session_cookie, connect_client, workspace_id
) -> None:
    client = await connect_client(head.url, session_cookie("alice"))
    await client.client.emit("workspace:join", {"workspaceId": workspace_id})
    assert await client.next_event() == ("error", {"message": "Access denied"})


async def test_stranger_is_denied(head, db, session_cookie, connect_client) -> None:
    workspace_id = await make_workspace(db)
    client = await connect_client(head.url, session_cookie("mallory"))
    await client.client.emit("workspace:join", {"workspaceId": workspace_id})
    assert await client.next_event() == ("error", {"message": "Access denied"})


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "abc",
        42,
        [1, 2],
        {},
        {"workspaceId": 12},
        {"workspaceId": None},
        {"workspaceId": ["x"]},
        {"workspaceId": ""},
        {"workspaceId": "x" * 10_000},
    ],
)
async def test_malformed_join_payloads_get_clear_error(
    head, db, session_cookie, connect_client, payload
) -> None:
    workspace_id = await make_workspace(db)
    client = await connect_client(head.url, session_cookie("alice"))
    await client.client.emit("workspace:join", payload)
    name, data = await client.next_event()
    assert name == "error"
    assert data["message"].startswith("Invalid request")
    # the connection still works afterwards
    assert (await client.join(workspace_id))["role"] == "owner"


async def test_leave_answers_left(head, db, session_cookie, connect_client) -> None:
    workspace_id = await make_workspace(db)
    client = await connect_client(head.url, session_cookie("alice"))
    await client.join(workspace_id)
    await client.client.emit("workspace:leave", {"workspaceId": workspace_id})
    assert await client.next_event() == ("workspace:left", {"workspaceId": workspace_id})
    await client.client.emit("workspace:leave", "junk")
    assert (await client.next_event())[0] == "error"


async def test_rooms_per_socket_are_bounded(head, db, session_cookie, connect_client) -> None:
    limit = head.settings.max_rooms_per_socket
    ids = [await make_workspace(db) for _ in range(limit + 1)]
    client = await connect_client(head.url, session_cookie("alice"))
    for workspace_id in ids[:limit]:
        await client.join(workspace_id)
    await client.client.emit("workspace:join", {"workspaceId": ids[limit]})
    name, data = await client.next_event()
    assert name == "error"
    assert data["message"].startswith("Too many rooms")
    # rejoining a room already joined is still fine, and leaving frees a slot
    assert (await client.join(ids[0]))["workspaceId"] == ids[0]
    await client.client.emit("workspace:leave", {"workspaceId": ids[0]})
    await client.expect("workspace:left")
    assert (await client.join(ids[limit]))["workspaceId"] == ids[limit]


async def test_join_flood_leaves_head_serving(head, db, session_cookie, connect_client) -> None:
    workspace_id = await make_workspace(db)
    client = await connect_client(head.url, session_cookie("alice"))
    flood = 300
    for _ in range(flood):
        await client.client.emit("workspace:join", {"workspaceId": workspace_id})
    answers = [await client.next_event() for _ in range(flood)]
    assert {name for name, _ in answers} == {"workspace:joined"}
    sid = client.client.get_sid()
    rooms = head_rooms(head, sid)
    assert rooms.count(workspace_room(workspace_id)) == 1
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{head.url}/healthz")).status_code == 200


async def test_unknown_events_and_oversized_messages(
    head, db, session_cookie, connect_client
) -> None:
    workspace_id = await make_workspace(db)
    client = await connect_client(head.url, session_cookie("alice"))
    await client.client.emit("index:progress", {"phase": "fetch"})  # clients cannot publish
    await client.client.emit("no-such-event", {"x": 1})
    assert (await client.join(workspace_id))["role"] == "owner"
    big = await connect_client(head.url, session_cookie("alice"))
    await big.client.emit("workspace:join", {"workspaceId": "x" * 200_000})
    await big.client.wait()  # the head closes a connection that sends an oversized message
    assert not big.client.connected
    assert (await client.join(workspace_id))["role"] == "owner"


def head_rooms(head: Any, sid: str) -> list[str]:
    """Rooms a client's socket is in, read from the head's own Socket.IO server."""
    return list(head.state.sio.rooms(sid, "/"))
