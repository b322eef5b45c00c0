"""Real services for the tests: a MongoDB-protocol server, heads on uvicorn, Redis, clients.

MongoDB: the embedded SecantusDB (in-memory) per test session, or a real `mongod` when
MONGODB_URI is set; each test gets a database of its own. Heads run the real app with its
lifespan in uvicorn, in a thread with its own event loop (as httpx's own tests do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
import uvicorn
from pymongo import AsyncMongoClient

from cluster.local_runtime import LocalRayRuntime
from cluster.process_tree import children, end_session
from core.db import Document, open_client
from core.embedded_mongo import EmbeddedMongo
from core.settings import Secret, Settings
from head.app import create_app
from head.nextauth import encode_session_token
from head.server import uvicorn_options

WEB_APP_URL = "http://web.example.test"
SERVICE_TIMEOUT_S = 20.0
EVENT_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll a condition until it holds; fail naming `what` when it never does."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def expected_errors() -> list[str]:
    """Substrings of error log lines a test provokes on purpose (it appends to this list)."""
    return []


@pytest.fixture(autouse=True)
def no_errors_logged(
    caplog: pytest.LogCaptureFixture, expected_errors: list[str]
) -> Iterator[None]:
    """Client input must never put an error or a traceback in a server's log."""
    caplog.set_level(logging.WARNING)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    errors = [
        r
        for r in records
        if (r.levelno >= logging.ERROR or r.exc_info)
        and not any(expected in r.getMessage() for expected in expected_errors)
    ]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("MONGODB_URI")
    if external:
        yield external
        return
    with EmbeddedMongo(tmp_path_factory.mktemp("mongo"), in_memory=True) as server:
        yield server.uri


@pytest.fixture
def settings(mongo_uri: str, tmp_path: Path) -> Settings:
    """Settings of one test: its own database, NextAuth secret and data directory. Heads
    start no Ray of their own until a test starts a run (INDEXER_WARM off)."""
    port = free_port()
    return Settings(
        data_dir=tmp_path / "data",
        warm=False,
        mongodb_uri=Secret(mongo_uri),
        mongodb_db=f"t_{uuid.uuid4().hex[:12]}",
        nextauth_secret=Secret(secrets.token_urlsafe(32)),
        web_app_url=WEB_APP_URL,
        port=port,
        head_url=f"http://127.0.0.1:{port}",
    )


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Any]:
    client: AsyncMongoClient[Document] = open_client(settings.mongodb_uri.reveal())  # type: ignore[union-attr]
    try:
        yield client[settings.mongodb_db]
        await client.drop_database(settings.mongodb_db)
    finally:
        await client.close()


class HeadServer:
    """One head (the real app, with its lifespan) served by uvicorn in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.port}"
        self.app = create_app(settings)
        self.state = self.app.app.other_asgi_app.state.head
        options = uvicorn_options(host="127.0.0.1", port=settings.port, log_level="warning")
        config = uvicorn.Config(self.app, **options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> HeadServer:
        self._thread.start()
        wait_until(
            lambda: self._server.started or not self._thread.is_alive(),
            SERVICE_TIMEOUT_S,
            "the head to start",
        )
        if not self._server.started:
            raise RuntimeError("the head failed to start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(SERVICE_TIMEOUT_S)


@pytest.fixture
def start_head() -> Iterator[Callable[[Settings], HeadServer]]:
    started: list[HeadServer] = []

    def start(settings: Settings) -> HeadServer:
        head = HeadServer(settings).start()
        started.append(head)
        return head

    yield start
    for head in started:
        head.stop()


@pytest.fixture
def head(settings: Settings, start_head: Callable[[Settings], HeadServer]) -> HeadServer:
    return start_head(settings)


@pytest.fixture
def redis_heads(
    settings: Settings,
    start_head: Callable[[Settings], HeadServer],
    redis_server: Callable[[], str],
) -> Callable[[int], list[HeadServer]]:
    """Start `n` heads sharing rooms through one fresh redis-server."""

    def start(n: int) -> list[HeadServer]:
        redis_url = Secret(redis_server())
        heads = []
        for _ in range(n):
            port = free_port()
            heads.append(
                start_head(
                    settings.with_overrides(
                        redis_url=redis_url, port=port, head_url=f"http://127.0.0.1:{port}"
                    )
                )
            )
        return heads

    return start


@pytest.fixture
def session_cookie(settings: Settings) -> Callable[..., str]:
    """Mint a next-auth v4 session cookie header value for a user id."""

    def mint(
        user_id: str | None,
        *,
        expires_in_s: int = 3600,
        cookie_name: str = "next-auth.session-token",
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iat": now, "exp": now + expires_in_s, "jti": uuid.uuid4().hex}
        if user_id is not None:
            claims["sub"] = user_id
        secret = settings.nextauth_secret.reveal()  # type: ignore[union-attr]
        token = encode_session_token(claims, secret, cookie_name=cookie_name)
        return f"{cookie_name}={token}"

    return mint


def unstamped(data: Any) -> Any:
    """An event payload without its history stamp (`epoch`, `seq`)."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k not in ("epoch", "seq")}
    return data


@dataclass
class RecordingClient:
    """A python-socketio AsyncClient that records every event it receives, in order."""

    client: socketio.AsyncClient
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    connect_errors: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    async def next_event(self, timeout_s: float = EVENT_TIMEOUT_S) -> tuple[str, Any]:
        return await asyncio.wait_for(self.queue.get(), timeout_s)

    async def expect(self, event: str, timeout_s: float = EVENT_TIMEOUT_S) -> Any:
        name, data = await self.next_event(timeout_s)
        assert name == event, f"expected {event}, got {name} {data!r}"
        return data

    async def join(self, workspace_id: str) -> Any:
        await self.client.emit("workspace:join", {"workspaceId": workspace_id})
        return await self.expect("workspace:joined")


@pytest.fixture
async def connect_client() -> AsyncIterator[Callable[..., Any]]:
    """Connect recording clients with a cookie; all are disconnected at teardown."""
    clients: list[socketio.AsyncClient] = []

    async def connect(
        url: str, cookie: str | None, *, transport: str = "websocket"
    ) -> RecordingClient:
        client = socketio.AsyncClient(reconnection=False)
        recording = RecordingClient(client)

        @client.on("*")
        async def any_event(event: str, data: Any = None) -> None:
            await recording.queue.put((event, data))

        @client.event
        async def connect_error(data: Any) -> None:
            await recording.connect_errors.put(data)

        headers = {"Cookie": cookie} if cookie else {}
        clients.append(client)
        # a refused connection is reported through `connect_errors`
        with contextlib.suppress(socketio.exceptions.ConnectionError):
            await client.connect(
                url, headers=headers, transports=[transport], wait_timeout=EVENT_TIMEOUT_S
            )
        return recording

    yield connect
    for client in clients:
        if client.connected:
            await client.disconnect()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """Start real redis-server processes on free ports; returns a factory of URLs."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (the README's test command installs it)")
    processes: list[RedisProcess] = []

    def start() -> str:
        process = RedisProcess(tmp_path_factory.mktemp("redis")).start()
        processes.append(process)
        return process.url

    yield start
    for process in processes:
        process.stop()


class RedisProcess:
    """One redis-server on a fixed port that a test can stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        binary = shutil.which("redis-server") or "redis-server"
        self._process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _tcp_open(self.port), SERVICE_TIMEOUT_S, "redis-server")
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(SERVICE_TIMEOUT_S)
            self._process = None


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path).start()
    yield process
    process.stop()


def _tcp_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class HeadProcess:
    """`python -m cli.main head --port P`, as an operator runs it: killable for real."""

    def __init__(self, settings: Settings, log_path: Path, **extra_env: str) -> None:
        self.settings = settings
        self.extra_env = extra_env
        self.url = f"http://127.0.0.1:{settings.port}"
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.orphans: list[int] = []

    def start(self) -> HeadProcess:
        # a fresh shell's environment: no RAY_AUTH_* either (a local `ray.init()` in this
        # test process put RAY_AUTH_MODE into its own)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        for name in ("REDIS_URL", "RAY_ADDRESS", "HEAD_URL", "MONGODB_URI"):
            env.pop(name, None)
        if self.settings.mongodb_uri is not None:  # else the head starts its embedded one
            env["MONGODB_URI"] = self.settings.mongodb_uri.reveal()
        env.update(
            MONGODB_DB=self.settings.mongodb_db,
            NEXTAUTH_SECRET=self.settings.require_nextauth_secret().reveal(),
            WEB_APP_URL=self.settings.web_app_url,
            PORT=str(self.settings.port),
            INDEXER_DATA_DIR=str(self.settings.data_dir),
            INDEXER_WARM="1" if self.settings.warm else "0",
            HF_HUB_OFFLINE="1",
            **self.extra_env,
        )
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "head", "--port", str(self.settings.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process = self.process
        wait_until(
            lambda: process.poll() is not None or self._ready(),
            SERVICE_TIMEOUT_S * 3,
            "the head process to answer /readyz",
        )
        assert process.poll() is None, f"the head exited: {self._log_path.read_text()[-3000:]}"
        return self

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: what the head started (its run driver, its Ray) lives on, orphaned."""
        assert self.process is not None
        self.orphans = children(self.process.pid)
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(SERVICE_TIMEOUT_S)

    def end_orphans(self) -> None:
        """End what a killed head left: its driver (a session of its own) and its Ray."""
        for pid in self.orphans:
            end_session(pid, grace_s=5)
        runtime = LocalRayRuntime(self.settings.data_dir)
        if runtime.attach() is not None:
            runtime.release()  # the last user ends it

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(SERVICE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def head_processes(tmp_path: Path) -> Iterator[Any]:
    started: list[HeadProcess] = []

    def start(settings: Settings, **extra_env: str) -> HeadProcess:
        log = tmp_path / f"head-{len(started)}.log"
        head = HeadProcess(settings, log, **extra_env).start()
        started.append(head)
        return head

    yield start
    for head in started:
        head.stop()
        head.end_orphans()
