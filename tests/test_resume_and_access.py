"""Exact resume ({epoch, seq} replay or refetch) and live authorization on real heads."""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.history import MemoryEventHistory
from core.publisher import make_publisher
from core.workspaces import create_workspace

pytestmark = pytest.mark.asyncio

PROGRESS = {"phase": "render", "docsDone": 0, "docsTotal": 1, "pagesTotal": 30}


async def publish_progress(settings: Any, workspace_id: str, pages: range) -> None:
    publisher = make_publisher(settings)
    try:
        for done in pages:
            await publisher.publish(workspace_id, "index:progress", {**PROGRESS, "pagesDone": done})
    finally:
        await publisher.aclose()


async def join_since(client: Any, workspace_id: str, since: Any) -> Any:
    await client.client.emit("workspace:join", {"workspaceId": workspace_id, "since": since})
    return await client.expect("workspace:joined")


async def test_rejoin_replays_exactly_the_missed_events(
    head, db, session_cookie, connect_client
) -> None:
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    watcher = await connect_client(head.url, session_cookie("alice"))
    await watcher.join(workspace_id)
    await publish_progress(head.settings, workspace_id, range(1, 4))
    seen = [await watcher.next_event() for _ in range(3)]
    epoch = seen[0][1]["epoch"]
    # a browser that saw only the first event comes back
    returning = await connect_client(head.url, session_cookie("alice"))
    joined = await join_since(returning, workspace_id, {"epoch": epoch, "seq": 1})
    assert joined["refetch"] is False
    assert joined["seq"] == 3
    assert [m["data"]["seq"] for m in joined["missed"]] == [2, 3]
    assert [m["data"]["pagesDone"] for m in joined["missed"]] == [2, 3]
    assert [m["data"] for m in joined["missed"]] == [data for _, data in seen[1:]]
    # up to date: nothing to replay
    current = await join_since(returning, workspace_id, {"epoch": epoch, "seq": 3})
    assert (current["missed"], current["refetch"]) == ([], False)


@pytest.mark.parametrize(
    "since",
    [{"epoch": "another-epoch", "seq": 1}, "EPOCH-seq-99"],
)
async def test_unknown_position_asks_for_a_refetch(
    head, db, session_cookie, connect_client, since
) -> None:
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    await publish_progress(head.settings, workspace_id, range(1, 3))
    client = await connect_client(head.url, session_cookie("alice"))
    if since == "EPOCH-seq-99":  # the right epoch, a seq from the future
        first = await client.join(workspace_id)
        since = {"epoch": first["epoch"], "seq": 99}
    joined = await join_since(client, workspace_id, since)
    assert joined["refetch"] is True
    assert joined["missed"] == []
    assert joined["snapshot"]["id"] == workspace_id


async def test_trimmed_history_is_a_refetch_never_partial() -> None:
    history = MemoryEventHistory(length=3)
    for done in range(5):
        await history.record("w", "index:progress", {"pagesDone": done})
    assert (await history.since("w", history.epoch, 1)).refetch is True  # seq 2 was trimmed
    replay = await history.since("w", history.epoch, 2)
    assert replay.refetch is False
    assert [data["seq"] for _, data in replay.events] == [3, 4, 5]


async def test_malformed_since_is_an_invalid_request(head, db, session_cookie, connect_client):
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    client = await connect_client(head.url, session_cookie("alice"))
    for since in ({"epoch": 5, "seq": "x"}, {"seq": -1, "epoch": "e"}, [1, 2]):
        await client.client.emit("workspace:join", {"workspaceId": workspace_id, "since": since})
        name, data = await client.next_event()
        assert name == "error"
        assert data["message"].startswith("Invalid request")


async def test_replay_across_heads_through_redis(
    redis_heads, db, session_cookie, connect_client
) -> None:
    heads = redis_heads(2)
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    first = await connect_client(heads[0].url, session_cookie("alice"))
    await first.join(workspace_id)
    await publish_progress(heads[0].settings, workspace_id, range(1, 6))
    seen = [await first.next_event() for _ in range(5)]
    epoch = seen[0][1]["epoch"]
    # the browser reconnects to the other head after seq 2
    second = await connect_client(heads[1].url, session_cookie("alice"))
    joined = await join_since(second, workspace_id, {"epoch": epoch, "seq": 2})
    assert joined["refetch"] is False
    assert [m["data"]["seq"] for m in joined["missed"]] == [3, 4, 5]
    assert [m["data"] for m in joined["missed"]] == [d for _, d in seen[2:]]


async def test_expired_session_is_disconnected(head, db, session_cookie, connect_client) -> None:
    client = await connect_client(head.url, session_cookie("alice", expires_in_s=2))
    assert client.client.connected
    started = time.time()
    name, data = await client.next_event(timeout_s=20)
    assert name == "session:expired"
    assert data["message"].startswith("Session expired")
    await client.client.wait()  # the head closed the connection
    assert time.time() - started <= 2 + 15


async def test_removed_member_is_kicked_on_every_head(
    redis_heads, db, session_cookie, connect_client
) -> None:
    heads = redis_heads(2)
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=["bob"]))
    bob_first = await connect_client(heads[0].url, session_cookie("bob"))
    bob_second = await connect_client(heads[1].url, session_cookie("bob"))
    alice = await connect_client(heads[1].url, session_cookie("alice"))
    for client in (bob_first, bob_second, alice):
        await client.join(workspace_id)
    removed_at = time.monotonic()
    await db.workspaces.update_one({}, {"$set": {"members": []}})
    for client in (bob_first, bob_second):
        name, data = await client.next_event(timeout_s=10)
        assert (name, data["message"]) == ("error", "Access denied")
        assert time.monotonic() - removed_at < 5
    # events no longer reach bob; alice still gets them
    await publish_progress(heads[0].settings, workspace_id, range(1, 2))
    assert (await alice.next_event())[0] == "index:progress"
    await bob_second.client.emit("workspace:join", {"workspaceId": workspace_id})
    assert await bob_second.next_event() == ("error", {"message": "Access denied"})
