"""The browser's own library (npm socket.io-client@4) against the head, cookie in the handshake."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from core.publisher import make_publisher
from core.workspaces import create_workspace
from tests.node_tools import ensure_node_modules

pytestmark = pytest.mark.asyncio

NODE_DIR = Path(__file__).parent / "node"


async def start_node_client(url: str, cookie: str, workspace_id: str) -> asyncio.subprocess.Process:
    ensure_node_modules()
    return await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / "sio_client.mjs"),
        url,
        cookie,
        workspace_id,
        stdout=asyncio.subprocess.PIPE,
    )


async def read_line(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line, "the node client exited early"
    return json.loads(line)


async def test_node_client_joins_and_receives(head, db, session_cookie) -> None:
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    process = await start_node_client(head.url, session_cookie("alice"), workspace_id)
    assert (await read_line(process))["event"] == "connect"
    joined = await read_line(process)
    assert joined["event"] == "workspace:joined"
    assert (joined["data"]["workspaceId"], joined["data"]["role"]) == (workspace_id, "owner")
    publisher = make_publisher(head.settings)
    try:
        await publisher.publish(workspace_id, "index:started", {})
        await publisher.publish(workspace_id, "index:ready", {"pageCount": 7})
    finally:
        await publisher.aclose()
    started = await read_line(process)
    ready = await read_line(process)
    assert (started["event"], started["data"]["seq"]) == ("index:started", 1)
    assert (ready["event"], ready["data"]["pageCount"], ready["data"]["seq"]) == (
        "index:ready",
        7,
        2,
    )
    assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_node_client_sees_spec_errors(head, db, session_cookie) -> None:
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    anonymous = await start_node_client(head.url, "", workspace_id)
    assert await read_line(anonymous) == {
        "event": "connect_error",
        "data": {"message": "Authentication required"},
    }
    stranger = await start_node_client(head.url, session_cookie("mallory"), workspace_id)
    assert (await read_line(stranger))["event"] == "connect"
    assert await read_line(stranger) == {"event": "error", "data": {"message": "Access denied"}}
    for process in (anonymous, stranger):
        await asyncio.wait_for(process.wait(), 30)
