"""Reconnect replay time: how long `workspace:join` with `since` takes to answer with the
missed events, for 10, 100 and 499 missed events (history holds 500), in-memory history.

One head (the real app) in this process's uvicorn thread, an in-memory SecantusDB, and a
python-socketio client. Run: .venv/bin/python bench/replay.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import socketio
import uvicorn

from core.db import ensure_indexes, open_client
from core.embedded_mongo import EmbeddedMongo
from core.publisher import make_publisher
from core.settings import Secret, Settings
from core.workspaces import create_workspace
from head.app import create_app
from head.nextauth import encode_session_token

EVENTS = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(settings: Settings) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), port=settings.port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("head did not start")
        time.sleep(0.05)
    return server


async def measure(settings: Settings, workspace_id: str, repeats: int) -> None:
    cookie = "next-auth.session-token=" + encode_session_token(
        {"sub": "alice", "exp": int(time.time()) + 3600}, settings.nextauth_secret.reveal()
    )
    client = socketio.AsyncClient()
    answers: asyncio.Queue[dict] = asyncio.Queue()
    client.on("workspace:joined", answers.put)
    await client.connect(settings.head_url, headers={"Cookie": cookie}, transports=["websocket"])
    await client.emit("workspace:join", {"workspaceId": workspace_id})
    epoch = (await answers.get())["epoch"]
    for missed in (10, 100, EVENTS - 1):
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            since = {"epoch": epoch, "seq": EVENTS - missed}
            await client.emit("workspace:join", {"workspaceId": workspace_id, "since": since})
            joined = await answers.get()
            timings.append(time.perf_counter() - started)
            assert len(joined["missed"]) == missed
        print(
            f"replay of {missed:>3} missed events: p50 {statistics.median(timings) * 1000:6.1f} ms"
            f"  max {max(timings) * 1000:6.1f} ms  ({repeats} joins)"
        )
    await client.disconnect()


async def prepare(settings: Settings) -> str:
    client = open_client(settings.mongodb_uri.reveal())
    db = client[settings.mongodb_db]
    await ensure_indexes(db)
    workspace_id = str(await create_workspace(db, name="W", owner_id="alice", member_ids=[]))
    await client.close()
    publisher = make_publisher(settings)
    for done in range(EVENTS):
        await publisher.publish(
            workspace_id,
            "index:progress",
            {
                "phase": "embed",
                "docsDone": 0,
                "docsTotal": 1,
                "pagesDone": done,
                "pagesTotal": EVENTS,
            },
        )
    await publisher.aclose()
    return workspace_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    repeats = parser.parse_args().repeats
    with (
        tempfile.TemporaryDirectory() as folder,
        EmbeddedMongo(Path(folder), in_memory=True) as mongo,
    ):
        port = free_port()
        settings = Settings(
            mongodb_uri=Secret(mongo.uri),
            mongodb_db="bench",
            nextauth_secret=Secret(secrets.token_hex(16)),
            port=port,
            head_url=f"http://127.0.0.1:{port}",
        )
        server = serve(settings)
        try:
            workspace_id = asyncio.run(prepare(settings))
            asyncio.run(measure(settings, workspace_id, repeats))
        finally:
            server.should_exit = True


if __name__ == "__main__":
    main()
