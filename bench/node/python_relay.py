"""The stock python-socketio peer of relay.js, for bench/node_peer.py: the same least work,
on python-socketio's and uvicorn's defaults.

    PORT=0 python bench/node/python_relay.py      prints "listening <port>" once it accepts

`workspace:join {workspaceId}` enters the room `workspace:<id>` and answers
`workspace:joined {workspaceId, role: "owner"}`; `POST /internal/events {workspaceId, event,
payload}` emits `payload` to the room (202); `GET /readyz` answers 200. No auth, no
database, no history: what the head adds to this is part of what the benchmark compares.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from typing import Any

import socketio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app() -> socketio.ASGIApp:
    sio = socketio.AsyncServer(async_mode="asgi")

    @sio.on("workspace:join")
    async def join(sid: str, data: Any) -> None:
        workspace_id = data.get("workspaceId") if isinstance(data, dict) else None
        if not isinstance(workspace_id, str) or not workspace_id:
            await sio.emit("error", {"message": "Invalid request"}, to=sid)
            return
        await sio.enter_room(sid, f"workspace:{workspace_id}")
        await sio.emit("workspace:joined", {"workspaceId": workspace_id, "role": "owner"}, to=sid)

    async def publish(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
            room, event = f"workspace:{body['workspaceId']}", body["event"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"detail": "expected {workspaceId, event, payload}"}, 422)
        await sio.emit(event, body.get("payload") or {}, room=room)
        return JSONResponse({"status": "accepted"}, 202)

    async def ready(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    api = Starlette(
        routes=[
            Route("/internal/events", publish, methods=["POST"]),
            Route("/readyz", ready, methods=["GET"]),
        ]
    )
    return socketio.ASGIApp(sio, other_asgi_app=api)


async def serve(port: int) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    config = uvicorn.Config(create_app(), log_level="warning")
    server = uvicorn.Server(config)
    print(f"listening {listener.getsockname()[1]}", flush=True)
    await server.serve(sockets=[listener])


if __name__ == "__main__":
    try:
        asyncio.run(serve(int(os.environ.get("PORT", "0"))))
    except KeyboardInterrupt:
        sys.exit(0)
