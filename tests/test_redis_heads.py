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


async def test_redis_outage_and_recovery(
    settings, start_head, redis_process, db, session_cookie, connect_client, expected_errors
) -> None:
    """Redis down: each head serves its own clients, readiness says so; Redis back: cross-head
    delivery resumes without restarting anything."""
    import httpx

    from core.settings import Secret
    from tests.conftest import free_port

    expected_errors.extend(["Cannot publish to redis", "Cannot receive from redis"])
    heads = []
    for _ in range(2):
        port = free_port()
        heads.append(
            start_head(
                settings.with_overrides(
                    redis_url=Secret(redis_process.url),
                    port=port,
                    head_url=f"http://127.0.0.1:{port}",
                )
            )
        )
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=["bob"]))
    alice = await connect_client(heads[0].url, session_cookie("alice"))
    bob = await connect_client(heads[1].url, session_cookie("bob"))
    await alice.join(workspace_id)
    await bob.join(workspace_id)
    token = heads[0].settings.effective_publish_token().reveal()
    through = [HttpEventPublisher(h.url, token, timeout_s=10) for h in heads]
    progress = {"phase": "render", "docsDone": 0, "docsTotal": 1, "pagesTotal": 9}
    try:
        redis_process.stop()
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"{heads[0].url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["redis"]
        # each head still delivers to its own clients
        await through[0].publish(workspace_id, "index:progress", {**progress, "pagesDone": 1})
        name, data = await alice.next_event()
        assert (name, data["pagesDone"]) == ("index:progress", 1)
        await through[1].publish(workspace_id, "index:progress", {**progress, "pagesDone": 2})
        name, data = await bob.next_event()
        assert (name, data["pagesDone"]) == ("index:progress", 2)

        redis_process.start()
        # cross-head delivery comes back by itself (the managers reconnect with backoff)
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                if (await http.get(f"{heads[1].url}/readyz")).status_code == 200:
                    break
        pages = 3
        while True:  # publish through head 0 until bob, on head 1, hears one
            await through[0].publish(
                workspace_id, "index:progress", {**progress, "pagesDone": pages}
            )
            name, data = await alice.next_event()
            assert data["pagesDone"] == pages
            try:
                name, data = await bob.next_event(timeout_s=1)
                assert name == "index:progress"
                break
            except TimeoutError:
                pages += 1
                assert pages < 60, "cross-head delivery did not resume"
    finally:
        for publisher in through:
            await publisher.aclose()


async def test_head_redis_pool_is_bounded(redis_process) -> None:
    """A burst of Redis calls (a reconnect storm's history lookups) waits for pooled
    connections instead of opening one per call."""
    import asyncio

    from head.app import REDIS_MAX_CONNECTIONS, bounded_redis

    client = bounded_redis(redis_process.url)
    watcher = bounded_redis(redis_process.url)
    try:
        await asyncio.gather(*(client.blpop([f"none-{i}"], timeout=0.2) for i in range(60)))
        connected = await watcher.client_list()
        # the watcher's own connection is listed too
        assert 1 < len(connected) <= REDIS_MAX_CONNECTIONS + 1
    finally:
        await client.aclose(close_connection_pool=True)
        await watcher.aclose(close_connection_pool=True)
