"""Several heads share rooms through a real redis-server: each event reaches each client once."""

from __future__ import annotations

import pytest

from core.publisher import HttpEventPublisher, make_publisher
from core.workspaces import create_workspace
from tests.conftest import unstamped

pytestmark = pytest.mark.asyncio


@pytest.fixture
def two_heads(redis_heads):
    return redis_heads(2)


async def test_events_cross_heads_exactly_once(two_heads, db, session_cookie, connect_client):
    first, second = two_heads
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=["bob"]))
    other_id = str(await create_workspace(db, name="O", owner_id="carol", member_ids=[]))
    alice = await connect_client(first.url, session_cookie("alice"))
    bob = await connect_client(second.url, session_cookie("bob"))
    carol = await connect_client(second.url, session_cookie("carol"))
    await alice.join(workspace_id)
    await bob.join(workspace_id)
    await carol.join(other_id)

    token = first.settings.effective_publish_token().reveal()
    through_first = HttpEventPublisher(first.url, token, timeout_s=5)
    through_second = HttpEventPublisher(second.url, token, timeout_s=5)
    straight_into_redis = make_publisher(first.settings)
    sources = [through_first, through_second, straight_into_redis]
    try:
        for pages_done, publisher in enumerate(sources):
            await publisher.publish(
                workspace_id,
                "index:progress",
                {
                    "phase": "render",
                    "docsDone": 0,
                    "docsTotal": 1,
                    "pagesDone": pages_done,
                    "pagesTotal": 3,
                },
            )
        await straight_into_redis.publish(workspace_id, "index:ready", {"pageCount": 3})
        await straight_into_redis.publish(other_id, "index:started", {})
    finally:
        for publisher in sources:
            await publisher.aclose()

    for client in (alice, bob):
        seen = [await client.next_event() for _ in range(4)]
        assert [name for name, _ in seen] == ["index:progress"] * 3 + ["index:ready"]
        assert [data["pagesDone"] for _, data in seen[:3]] == [0, 1, 2]
        # one numbering for the workspace, whichever head or Redis client published
        assert [data["seq"] for _, data in seen] == [1, 2, 3, 4]
        assert len({data["epoch"] for _, data in seen}) == 1
        # exactly once: the next thing each client hears is its own answer, not a duplicate
        await client.client.emit("workspace:join", {"workspaceId": workspace_id})
        assert (await client.next_event())[0] == "workspace:joined"
    # carol (other room, same head as bob) saw only her own room's event
    name, data = await carol.next_event()
    assert (name, unstamped(data)) == ("index:started", {})
