"""The publishing path: events reach the workspace's room, only it, through one head or many."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import IndexerError, PublishError
from core.publisher import HttpEventPublisher, make_publisher, undelivered_warning
from core.settings import Secret
from core.workspaces import create_workspace
from tests.conftest import free_port, unstamped

pytestmark = pytest.mark.asyncio

PROGRESS = {"phase": "render", "docsDone": 1, "docsTotal": 3, "pagesDone": 10, "pagesTotal": 50}


async def two_workspaces(db: Any) -> tuple[str, str]:
    first = await create_workspace(db, name="A", owner_id="alice", member_ids=["bob"])
    second = await create_workspace(db, name="B", owner_id="carol", member_ids=[])
    return str(first), str(second)


async def test_room_members_get_events_and_nobody_else(
    head, db, session_cookie, connect_client
) -> None:
    room_a, room_b = await two_workspaces(db)
    alice = await connect_client(head.url, session_cookie("alice"))
    bob = await connect_client(head.url, session_cookie("bob"))
    carol = await connect_client(head.url, session_cookie("carol"))
    await alice.join(room_a)
    await bob.join(room_a)
    await carol.join(room_b)
    publisher = make_publisher(head.settings)
    try:
        await publisher.publish(room_a, "index:started", {})
        await publisher.publish(room_a, "index:progress", PROGRESS)
        await publisher.publish(room_a, "index:ready", {"pageCount": 50})
        # marker for carol: had she received room A's events they would arrive before it
        await publisher.publish(room_b, "index:failed", {"error": "marker", "phase": "fetch"})
    finally:
        await publisher.aclose()
    for client in (alice, bob):
        received = [await client.next_event() for _ in range(3)]
        assert [(name, unstamped(data)) for name, data in received] == [
            ("index:started", {}),
            ("index:progress", PROGRESS),
            ("index:ready", {"pageCount": 50}),
        ]
        assert [data["seq"] for _, data in received] == [1, 2, 3]
        assert len({data["epoch"] for _, data in received}) == 1
    name, data = await carol.next_event()
    assert (name, unstamped(data)) == ("index:failed", {"error": "marker", "phase": "fetch"})
    assert data["seq"] == 1  # numbered per workspace


async def test_left_clients_stop_receiving(head, db, session_cookie, connect_client) -> None:
    room_a, _ = await two_workspaces(db)
    alice = await connect_client(head.url, session_cookie("alice"))
    await alice.join(room_a)
    await alice.client.emit("workspace:leave", {"workspaceId": room_a})
    await alice.expect("workspace:left")
    publisher = make_publisher(head.settings)
    try:
        await publisher.publish(room_a, "index:started", {})
    finally:
        await publisher.aclose()
    # ask the head something: its answer would queue after any stray event
    await alice.client.emit("workspace:join", "ping")
    assert (await alice.next_event())[0] == "error"


async def test_publisher_validates_at_the_source(head) -> None:
    publisher = make_publisher(head.settings)
    try:
        with pytest.raises(ValueError, match="index:progress"):
            await publisher.publish("a", "index:progress", {"phase": "render"})
        with pytest.raises(ValueError, match="unknown event"):
            await publisher.publish("a", "workspace:joined", {})
    finally:
        await publisher.aclose()


async def test_publisher_with_wrong_token_is_refused(head) -> None:
    publisher = HttpEventPublisher(head.url, "wrong", timeout_s=5)
    try:
        with pytest.raises(PublishError, match="403"):
            await publisher.publish("a", "index:started", {})
    finally:
        await publisher.aclose()


async def test_publisher_fails_fast_when_head_is_down(settings) -> None:
    down = settings.with_overrides(head_url=f"http://127.0.0.1:{free_port()}")
    publisher = make_publisher(down, timeout_s=1)
    try:
        with pytest.raises(PublishError, match="head unreachable"):
            await publisher.publish("a", "index:started", {})
    finally:
        await publisher.aclose()
    assert issubclass(PublishError, IndexerError)


async def test_redis_publisher_fails_when_redis_is_down(settings, expected_errors) -> None:
    expected_errors.append("Cannot publish to redis")
    down = settings.with_overrides(redis_url=Secret(f"redis://127.0.0.1:{free_port()}/0"))
    publisher = make_publisher(down, timeout_s=1)
    try:
        with pytest.raises(PublishError):
            await publisher.publish("a", "index:started", {})
    finally:
        await publisher.aclose()


async def failure_of(settings: Any) -> PublishError:
    publisher = make_publisher(settings, timeout_s=1)
    try:
        with pytest.raises(PublishError) as raised:
            await publisher.publish("a", "index:started", {})
        return raised.value
    finally:
        await publisher.aclose()


async def test_undelivered_warning_says_what_to_set(head, settings, expected_errors) -> None:
    """The run's one warning when its events reach no head names the setting to change
    for what happened, and no secret."""
    expected_errors.append("Cannot publish to redis")
    port = free_port()
    nobody = settings.with_overrides(head_url=f"http://user:pw@127.0.0.1:{port}")
    warning = undelivered_warning(nobody, await failure_of(nobody))
    assert f"HEAD_URL=http://127.0.0.1:{port} (head unreachable" in warning
    assert "Set HEAD_URL to the head's address" in warning
    # a head answered but refused: the token (from NEXTAUTH_SECRET) differs from the head's
    stranger = head.settings.with_overrides(nextauth_secret=Secret("another secret"))
    refused = undelivered_warning(stranger, await failure_of(stranger))
    assert "HTTP 403" in refused
    assert "NEXTAUTH_SECRET" in refused
    redis_url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    down = settings.with_overrides(redis_url=Secret(redis_url))
    redis_warning = undelivered_warning(down, await failure_of(down))
    assert "Check REDIS_URL" in redis_warning
    for text in (warning, refused, redis_warning):
        assert "pw@" not in text
        assert "hunter2" not in text
        assert "another secret" not in text
