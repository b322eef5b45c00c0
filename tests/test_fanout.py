"""The fan-out fast path (head/fanout.py) against real heads, real clients, real Redis.

Websocket-first sessions are served by `DirectWebSocket` and get events as frames written
straight to their connection; polling clients, and sockets that upgraded from polling, keep
python-socketio's ordinary path. These tests check that both paths are taken where they
should be (and so would fail if a python-engineio, python-socketio or uvicorn upgrade
stopped routing through them), and that every client gets every event once, in order,
with authorization and exact resume intact.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import struct
import threading
from typing import Any

import pytest
import socketio
import uvicorn

from core.publisher import HttpEventPublisher, make_publisher
from core.workspaces import create_workspace
from head.fanout import DirectQueue
from head.server import uvicorn_options
from tests.conftest import EVENT_TIMEOUT_S, HeadServer
from tests.node_tools import ensure_node_modules
from tests.test_node_client import NODE_DIR, read_line

pytestmark = pytest.mark.asyncio

# the browser's library polling only, and upgrading from polling to a websocket
UPGRADING = "polling,websocket"
TRANSPORTS = ("polling", UPGRADING)
PROGRESS = {"phase": "embed", "docsDone": 0, "docsTotal": 1, "pagesTotal": 100}


async def make_workspace(db: Any, owner: str = "alice", members: tuple[str, ...] = ("bob",)) -> str:
    return str(await create_workspace(db, name="Docs", owner_id=owner, member_ids=list(members)))


async def publish(settings: Any, workspace_id: str, pages: range, *, at_once: bool = False) -> None:
    """Progress events with pagesDone in `pages`, one after the other or all at once."""
    publisher = make_publisher(settings)
    try:
        sends = [
            publisher.publish(workspace_id, "index:progress", {**PROGRESS, "pagesDone": done})
            for done in pages
        ]
        if at_once:
            await asyncio.gather(*sends)
        else:
            for send in sends:
                await send
    finally:
        await publisher.aclose()


async def node_client(
    url: str, cookie: str, workspace_id: str, transports: str
) -> asyncio.subprocess.Process:
    """The browser's library (tests/node/sio_client.mjs): connected and joined on return.
    "polling,websocket" upgrades from polling; "polling" stays there."""
    ensure_node_modules()
    process = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "sio_client.mjs"), url, cookie, workspace_id, transports,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    first = await read_line(process)
    assert first["event"] == "connect", first
    assert (await read_line(process))["event"] == "workspace:joined"
    return process


async def finish(processes: list[Any], settings: Any, workspace_id: str) -> None:
    """Send `index:ready` (a node client exits on it) and wait for the clients to exit."""
    publisher = make_publisher(settings)
    try:
        await publisher.publish(workspace_id, "index:ready", {"pageCount": 1})
    finally:
        await publisher.aclose()
    for process in processes:
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def eventually(condition: Any, what: str, timeout_s: float = EVENT_TIMEOUT_S) -> None:
    """Poll `condition` without blocking this event loop (the clients run on it)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def manager(head: Any) -> Any:
    return head.state.sio.manager


def eio_sid(client: Any) -> str:
    return str(client.client.eio.sid)


async def events(client: Any, count: int) -> list[tuple[str, Any]]:
    return [await client.next_event() for _ in range(count)]


async def test_websocket_sessions_take_the_direct_path(
    head, db, session_cookie, connect_client
) -> None:
    """Websocket sessions, begun as one or upgraded from polling (python-socketio's client
    and the browser's library), are served by DirectWebSocket (the engineio socket's queue
    replaced, its frame sink registered) and get events through it; polling ones do not."""
    workspace_id = await make_workspace(db)
    websocket = await connect_client(head.url, session_cookie("alice"))
    upgraded = socketio.AsyncClient(reconnection=False)
    received: asyncio.Queue[Any] = asyncio.Queue()
    upgraded.on("index:progress", received.put)
    await upgraded.connect(head.url, headers={"Cookie": session_cookie("alice")})
    try:
        assert upgraded.transport() == "websocket"
        await websocket.join(workspace_id)
        await upgraded.emit("workspace:join", {"workspaceId": workspace_id})
        polling = await node_client(head.url, session_cookie("bob"), workspace_id, "polling")
        node = await node_client(head.url, session_cookie("bob"), workspace_id, UPGRADING)
        wires = manager(head).wires
        await eventually(lambda: len(wires) == 3, "the upgrades")
        for client in (websocket.client, upgraded):
            assert wires.get(client.eio.sid) is not None
            assert isinstance(head.state.sio.eio.sockets[client.eio.sid].queue, DirectQueue)
        direct, ordinary = manager(head).direct_deliveries, manager(head).ordinary_deliveries
        await publish(head.settings, workspace_id, range(1, 4))
        assert [data["pagesDone"] for _, data in await events(websocket, 3)] == [1, 2, 3]
        assert [(await received.get())["pagesDone"] for _ in range(3)] == [1, 2, 3]
        for process in (polling, node):
            assert [(await read_line(process))["data"]["pagesDone"] for _ in range(3)] == [1, 2, 3]
        assert manager(head).direct_deliveries - direct == 3 * 3
        assert manager(head).ordinary_deliveries - ordinary == 3
        await finish([polling, node], head.settings, workspace_id)
    finally:
        await upgraded.disconnect()


async def test_every_transport_gets_every_event_once_in_order(
    head, db, session_cookie, connect_client
) -> None:
    """Websocket, polling, and polling upgraded to websocket, in one room: events published
    at once reach each exactly once, all in the order of their `seq`."""
    workspace_id = await make_workspace(db)
    websocket = await connect_client(head.url, session_cookie("alice"))
    await websocket.join(workspace_id)
    cookie = session_cookie("bob")
    nodes = [await node_client(head.url, cookie, workspace_id, t) for t in TRANSPORTS]
    count = 40
    await publish(head.settings, workspace_id, range(1, count + 1), at_once=True)
    publisher = make_publisher(head.settings)
    try:
        await publisher.publish(workspace_id, "index:ready", {"pageCount": count})
    finally:
        await publisher.aclose()
    seen = await events(websocket, count + 1)
    assert [name for name, _ in seen] == ["index:progress"] * count + ["index:ready"]
    assert [data["seq"] for _, data in seen] == list(range(1, count + 2))
    for process in nodes:
        lines = [await read_line(process) for _ in range(count + 1)]
        assert [line["data"]["seq"] for line in lines] == list(range(1, count + 2))
        assert lines[-1]["event"] == "index:ready"
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_left_and_revoked_sockets_get_nothing_on_the_direct_path(
    head, db, session_cookie, connect_client
) -> None:
    workspace_id = await make_workspace(db, members=("bob", "carol"))
    alice = await connect_client(head.url, session_cookie("alice"))
    bob = await connect_client(head.url, session_cookie("bob"))
    carol = await connect_client(head.url, session_cookie("carol"))
    for client in (alice, bob, carol):
        await client.join(workspace_id)
        assert manager(head).wires.get(eio_sid(client)) is not None
    await carol.client.emit("workspace:leave", {"workspaceId": workspace_id})
    await carol.expect("workspace:left")
    await db.workspaces.update_one({}, {"$set": {"members": [{"userId": "carol"}]}})
    assert await bob.next_event() == (
        "error",
        {"message": "Access denied", "workspaceId": workspace_id},
    )
    await publish(head.settings, workspace_id, range(1, 3))
    assert [data["pagesDone"] for _, data in await events(alice, 2)] == [1, 2]
    # a round trip after the publish: a stray event would arrive before its answer
    for client in (bob, carol):
        await client.client.emit("workspace:join", "ping")
        assert (await client.next_event())[0] == "error"


async def test_resume_after_reconnect_is_exact(head, db, session_cookie, connect_client) -> None:
    workspace_id = await make_workspace(db)
    browser = await connect_client(head.url, session_cookie("alice"))
    await browser.join(workspace_id)
    await publish(head.settings, workspace_id, range(1, 4))
    last = (await events(browser, 3))[-1][1]
    await browser.client.disconnect()
    await publish(head.settings, workspace_id, range(4, 7))
    back = await connect_client(head.url, session_cookie("alice"))
    assert manager(head).wires.get(eio_sid(back)) is not None
    since = {"epoch": last["epoch"], "seq": last["seq"]}
    await back.client.emit("workspace:join", {"workspaceId": workspace_id, "since": since})
    joined = await back.expect("workspace:joined")
    assert (joined["refetch"], joined["seq"]) == (False, 6)
    assert [m["data"]["pagesDone"] for m in joined["missed"]] == [4, 5, 6]
    await publish(head.settings, workspace_id, range(7, 8))
    name, data = await back.next_event()
    assert (name, data["seq"], data["pagesDone"]) == ("index:progress", 7, 7)


async def test_closed_sessions_leave_the_wires(head, db, session_cookie, connect_client) -> None:
    workspace_id = await make_workspace(db)
    client = await connect_client(head.url, session_cookie("alice"))
    await client.join(workspace_id)
    sid = eio_sid(client)
    await client.client.disconnect()
    await eventually(lambda: manager(head).wires.get(sid) is None, "the session to end")
    await eventually(lambda: sid not in head.state.sio.eio.sockets, "engineio to forget it")
    assert head.state.sio.manager.rooms.get("/", {}).get(workspace_id) is None


async def test_redis_heads_deliver_locally_on_the_direct_path(
    redis_heads, db, session_cookie, connect_client
) -> None:
    """FanoutRedisManager: an event published into Redis reaches each head's websockets
    through FanoutManager.emit (python-socketio's pub/sub manager delivers locally through
    `super()`, which must resolve to it)."""
    heads = redis_heads(2)
    workspace_id = await make_workspace(db)
    clients = [await connect_client(h.url, session_cookie("alice")) for h in heads]
    for client in clients:
        await client.join(workspace_id)
    before = [manager(h).direct_deliveries for h in heads]
    await publish(heads[0].settings, workspace_id, range(1, 3))
    for client in clients:
        assert [data["seq"] for _, data in await events(client, 2)] == [1, 2]
    assert [manager(h).direct_deliveries - b for h, b in zip(heads, before, strict=True)] == [2, 2]


# -- a client that stops reading ---------------------------------------------------------


class RawWebSocket:
    """A websocket client at the byte level with a tiny receive buffer, so that a test can
    stop reading and the head's side of the connection fills up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, url: str, cookie: str) -> RawWebSocket:
        host, port = url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def send(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        self.writer.write(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)
        await self.writer.drain()

    async def receive(self) -> str:
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 10)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        assert first == 0x81, first
        return (await self.reader.readexactly(size)).decode()


async def test_a_client_that_stops_reading_is_dropped(
    head, db, session_cookie, connect_client, monkeypatch, caplog
) -> None:
    """Its unsent frames are bounded (here 256 KiB): past that its connection is aborted,
    while the others in the room keep getting every event."""
    monkeypatch.setattr("head.ws_transport.MAX_BUFFERED_BYTES", 256 * 1024)
    workspace_id = await make_workspace(db)
    reader = await connect_client(head.url, session_cookie("bob"))
    await reader.join(workspace_id)
    stalled = await RawWebSocket.connect(head.url, session_cookie("alice"))
    stalled_sid = json.loads((await stalled.receive())[1:])["sid"]
    await stalled.send("40")
    assert (await stalled.receive()).startswith("40")
    await stalled.send("42" + json.dumps(["workspace:join", {"workspaceId": workspace_id}]))
    assert (await stalled.receive()).startswith('42["workspace:joined"')
    token = head.settings.effective_publish_token().reveal()
    publisher = HttpEventPublisher(head.url, token, timeout_s=10)
    padding = "x" * 12_000
    sent = 0
    try:
        while manager(head).wires.get(stalled_sid) is not None:
            assert sent < 400, "the stalled client was never dropped"
            sent += 1
            payload = {**PROGRESS, "pagesDone": sent, "padding": padding}
            await publisher.publish(workspace_id, "index:progress", payload)
    finally:
        await publisher.aclose()
        stalled.writer.close()
    assert "dropping a websocket that does not read its messages" in caplog.text
    seen = await events(reader, sent)
    assert [data["pagesDone"] for _, data in seen] == list(range(1, sent + 1))


async def test_events_published_at_once_keep_seq_order_across_redis_heads(
    redis_heads, db, session_cookie, connect_client
) -> None:
    """Concurrent publishes through one head: the history numbers them in Redis (awaited),
    and each head must still deliver them in that order, or a client that drops what it
    has seen (the spec's rule) would drop an event."""
    heads = redis_heads(2)
    workspace_id = await make_workspace(db)
    clients = [await connect_client(h.url, session_cookie("alice")) for h in heads]
    for client in clients:
        await client.join(workspace_id)
    token = heads[0].settings.effective_publish_token().reveal()
    publisher = HttpEventPublisher(heads[0].url, token, timeout_s=10)
    count = 60
    try:
        await asyncio.gather(
            *(
                publisher.publish(workspace_id, "index:progress", {**PROGRESS, "pagesDone": n})
                for n in range(count)
            )
        )
    finally:
        await publisher.aclose()
    assert len(heads[0].state.broadcasts) == 0  # no lock kept for a workspace at rest
    for client in clients:
        assert [data["seq"] for _, data in await events(client, count)] == list(range(1, count + 1))


async def test_keepalive_pings_flow_over_a_direct_session(
    head, db, session_cookie, connect_client, caplog
) -> None:
    """python-engineio pings each socket and expects its pong; on a DirectWebSocket session
    both go through the session (the ping a frame written when sent, the pong read by its
    loop), so a client stays connected across ping cycles (python-socketio's client gives
    up after pingInterval + pingTimeout without a ping, the head after pingTimeout without
    a pong)."""
    caplog.set_level(logging.INFO, logger="engineio.server")  # it logs each packet it gets
    eio = head.state.sio.eio
    eio.ping_interval, eio.ping_timeout = 1, 1  # seconds; the client learns them at OPEN
    workspace_id = await make_workspace(db)
    client = await connect_client(head.url, session_cookie("alice"))
    await client.join(workspace_id)
    sid = eio_sid(client)

    def pongs() -> int:
        return sum(
            1 for r in caplog.records if r.getMessage().startswith(f"{sid}: Received packet PONG")
        )

    await eventually(lambda: pongs() >= 3, "three ping cycles", timeout_s=20)
    assert client.client.connected
    assert not eio.sockets[sid].closed
    await publish(head.settings, workspace_id, range(1, 2))
    assert (await client.next_event())[1]["pagesDone"] == 1


class DeflateHead(HeadServer):
    """A head served with per-message deflate on (the head's own options turn it off)."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        options = uvicorn_options(host="127.0.0.1", port=settings.port, log_level="warning")
        config = uvicorn.Config(self.app, **{**options, "ws_per_message_deflate": True})
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)


async def test_compressed_websockets_take_the_ordinary_path(settings, db, session_cookie) -> None:
    """A websocket that negotiated per-message deflate (the browser's library offers it;
    here it upgrades to one) cannot take ready-made frames: python-engineio serves it as it
    would without the fast path, and it gets every event."""
    head = DeflateHead(settings).start()
    try:
        workspace_id = await make_workspace(db)
        node = await node_client(head.url, session_cookie("alice"), workspace_id, UPGRADING)
        assert len(manager(head).wires) == 0
        await publish(head.settings, workspace_id, range(1, 4))
        assert [(await read_line(node))["data"]["pagesDone"] for _ in range(3)] == [1, 2, 3]
        assert manager(head).direct_deliveries == 0
        await finish([node], head.settings, workspace_id)
    finally:
        head.stop()
