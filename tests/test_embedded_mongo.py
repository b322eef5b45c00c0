"""The embedded SecantusDB server: lifetime, reuse across processes, durability, and a
compatibility smoke test of the MongoDB operations the indexer relies on.

These tests always run against SecantusDB (not MONGODB_URI): they are about it.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from gridfs import AsyncGridFSBucket
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, MongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from core.embedded_mongo import LOG_FILE, STATE_FILE, EmbeddedMongo
from core.errors import StorageError

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 20.0

Doc = dict[str, Any]

# A second process asking for the same directory: prints what it got, holds the server
# until its stdin closes, then stops (which only stops a server it started itself).
CHILD = """
import json, sys
from pathlib import Path
from core.embedded_mongo import EmbeddedMongo
server = EmbeddedMongo(Path(sys.argv[1]))
server.start()
print(json.dumps({"uri": server.uri, "started_here": server.started_here}), flush=True)
sys.stdin.read()
server.stop()
"""


def client(uri: str) -> AsyncMongoClient[Doc]:
    return AsyncMongoClient(uri, serverSelectionTimeoutMS=5_000)


def answers(uri: str) -> bool:
    """A real round trip with a short timeout, straight to this server."""
    try:
        with MongoClient(uri, directConnection=True, serverSelectionTimeoutMS=500) as sync:
            sync.admin.command("ping")
    except PyMongoError:
        return False
    return True


def wait_until_gone(uri: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while answers(uri):
        assert time.monotonic() < deadline, f"{uri} still answers"
        time.sleep(0.05)


def state(data_dir: Path) -> dict[str, Any]:
    return json.loads((data_dir / STATE_FILE).read_text())


def spawn_child(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_child(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"child exited with {proc.wait(timeout=TIMEOUT_S)} before reporting"
    return json.loads(line)


def release_child(proc: subprocess.Popen[str]) -> None:
    proc.communicate(input="", timeout=TIMEOUT_S)
    assert proc.returncode == 0


# -- lifetime --------------------------------------------------------------------------


async def test_start_write_stop_restart_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "mongo"
    with EmbeddedMongo(data_dir) as server:
        assert server.started_here
        assert server.uri.startswith("mongodb://127.0.0.1:")
        assert server.uri == f"mongodb://127.0.0.1:{server.port}/"
        assert state(data_dir)["port"] == server.port
        async with client(server.uri) as mongo:
            assert (await mongo.admin.command("ping"))["ok"] == 1
            await mongo.app.docs.insert_one({"_id": 1, "name": "kept"})
            assert await mongo.app.docs.find_one({"_id": 1}) == {"_id": 1, "name": "kept"}
        uri = server.uri
    assert not (data_dir / STATE_FILE).exists()
    assert not answers(uri)
    assert (data_dir / LOG_FILE).is_file()

    with EmbeddedMongo(data_dir) as server:
        assert server.started_here
        async with client(server.uri) as mongo:
            assert await mongo.app.docs.find_one({"_id": 1}) == {"_id": 1, "name": "kept"}


def test_uri_before_start_and_stop_twice(tmp_path: Path) -> None:
    server = EmbeddedMongo(tmp_path / "mongo", in_memory=True)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.uri
    server.stop()
    uri = server.start()
    assert server.start() == uri
    server.stop()
    server.stop()
    assert not server.started_here
    assert not answers(uri)


def test_second_instance_reuses_and_leaves_server_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "mongo"
    with EmbeddedMongo(data_dir) as owner:
        uri = owner.uri
        other = EmbeddedMongo(data_dir)
        assert other.start() == uri
        assert not other.started_here
        other.stop()
        assert answers(uri)
        assert state(data_dir)["port"] == owner.port
    assert not answers(uri)


def test_processes_starting_at_once_share_one_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "mongo"
    children = [spawn_child(data_dir), spawn_child(data_dir)]
    try:
        reports = [read_child(child) for child in children]
        assert reports[0]["uri"] == reports[1]["uri"]
        assert sorted(r["started_here"] for r in reports) == [False, True]
        uri = reports[0]["uri"]
        owner, reuser = children if reports[0]["started_here"] else (children[1], children[0])
        release_child(reuser)
        assert answers(uri)
        release_child(owner)
        assert not answers(uri)
        assert not (data_dir / STATE_FILE).exists()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


async def test_orphaned_server_is_reused_and_a_crash_loses_no_write(tmp_path: Path) -> None:
    """The starting process dies: the server lives on and is reused. Then the server
    itself is SIGKILLed: the next start sees a stale state file, and acknowledged writes
    are there (--sync-on-commit)."""
    data_dir = tmp_path / "mongo"
    starter = spawn_child(data_dir)
    try:
        uri = read_child(starter)["uri"]
    finally:
        starter.kill()
        starter.wait()
    assert answers(uri)

    with EmbeddedMongo(data_dir) as reuser:
        assert reuser.uri == uri
        assert not reuser.started_here
        async with client(uri) as mongo:
            await mongo.app.docs.insert_many([{"_id": n} for n in range(100)])

    server_pid = state(data_dir)["pid"]
    os.kill(server_pid, signal.SIGKILL)
    wait_until_gone(uri)

    with EmbeddedMongo(data_dir) as server:
        assert server.started_here
        assert state(data_dir)["pid"] != server_pid
        async with client(server.uri) as mongo:
            assert await mongo.app.docs.count_documents({}) == 100


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "stale",
    [
        pytest.param(lambda: json.dumps({"pid": _dead_pid(), "port": 1}), id="dead-pid"),
        pytest.param(
            lambda: json.dumps({"pid": os.getpid(), "port": _unused_port()}),
            id="live-pid-no-server",
        ),
        pytest.param(lambda: "{not json", id="garbage"),
    ],
)
def test_stale_state_file_is_replaced(tmp_path: Path, stale: Any) -> None:
    data_dir = tmp_path / "mongo"
    data_dir.mkdir()
    (data_dir / STATE_FILE).write_text(stale())
    with EmbeddedMongo(data_dir) as server:
        assert server.started_here
        assert answers(server.uri)
        assert state(data_dir)["pid"] != os.getpid()
    assert not (data_dir / STATE_FILE).exists()


async def test_in_memory_mode(tmp_path: Path) -> None:
    data_dir = tmp_path / "mongo"
    with (
        EmbeddedMongo(data_dir, in_memory=True) as first,
        EmbeddedMongo(data_dir, in_memory=True) as second,
    ):
        assert first.started_here
        assert second.started_here
        assert first.uri != second.uri
        async with client(first.uri) as mongo:
            await mongo.app.docs.insert_one({"_id": "x"})
            assert await mongo.app.docs.count_documents({}) == 1
        assert not (data_dir / STATE_FILE).exists()
        assert not (data_dir / "wiredtiger").exists()
        assert len(list(data_dir.glob("secantusd-memory-*.log"))) == 2

    with EmbeddedMongo(data_dir, in_memory=True) as server:
        async with client(server.uri) as mongo:
            assert await mongo.app.docs.count_documents({}) == 0


def test_missing_executable_raises_storage_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secantusd"
    server = EmbeddedMongo(tmp_path / "mongo", executable=str(missing))
    with pytest.raises(StorageError, match=r"cannot run the embedded MongoDB server .*no-such"):
        server.start()
    assert not server.started_here
    assert not (tmp_path / "mongo" / STATE_FILE).exists()


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / f"fake-{uuid.uuid4().hex[:6]}"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_server_exiting_at_start_raises_storage_error_with_its_log(tmp_path: Path) -> None:
    fake = _script(tmp_path, 'echo "boom: WiredTiger said no" >&2\nexit 3')
    with pytest.raises(StorageError, match=r"(?s)exited with code 3.*boom: WiredTiger said no"):
        EmbeddedMongo(tmp_path / "mongo", executable=fake).start()


def test_server_never_ready_raises_storage_error_and_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "fake.pid"
    fake = _script(tmp_path, f'echo $$ > "{pid_file}"\nexec sleep 60')
    with pytest.raises(StorageError, match=r"did not answer within 0\.5s"):
        EmbeddedMongo(tmp_path / "mongo", executable=fake, startup_timeout_s=0.5).start()
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- compatibility smoke test: the operations the indexer relies on ----------------------


@pytest.fixture(scope="module")
def secantus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """On-disk mode, as in production."""
    with EmbeddedMongo(tmp_path_factory.mktemp("compat")) as server:
        yield server.uri


@pytest.fixture
async def db(secantus_uri: str) -> AsyncIterator[AsyncDatabase[Doc]]:
    async with client(secantus_uri) as mongo:
        name = f"c_{uuid.uuid4().hex[:12]}"
        yield mongo[name]
        await mongo.drop_database(name)


async def test_ping_command(db: AsyncDatabase[Doc]) -> None:
    assert (await db.command("ping"))["ok"] == 1


async def test_unique_compound_index(db: AsyncDatabase[Doc]) -> None:
    name = await db.docs.create_index(
        [("workspaceId", ASCENDING), ("source", ASCENDING)], unique=True
    )
    assert (
        await db.docs.create_index([("workspaceId", ASCENDING), ("source", ASCENDING)], unique=True)
        == name
    )  # idempotent
    info = await db.docs.index_information()
    assert info[name]["unique"] is True
    assert info[name]["key"] == [("workspaceId", 1), ("source", 1)]

    await db.docs.insert_one({"workspaceId": "w1", "source": "a.pdf"})
    await db.docs.insert_one({"workspaceId": "w1", "source": "b.pdf"})
    await db.docs.insert_one({"workspaceId": "w2", "source": "a.pdf"})
    with pytest.raises(DuplicateKeyError):
        await db.docs.insert_one({"workspaceId": "w1", "source": "a.pdf"})


async def test_update_one_upsert(db: AsyncDatabase[Doc]) -> None:
    update = {"$set": {"status": "queued"}, "$setOnInsert": {"created": 1}, "$inc": {"n": 1}}
    first = await db.docs.update_one({"_id": "d1"}, update, upsert=True)
    assert first.upserted_id == "d1"
    assert first.matched_count == 0
    second = await db.docs.update_one({"_id": "d1"}, update, upsert=True)
    assert second.upserted_id is None
    assert second.matched_count == 1
    assert second.modified_count == 1
    assert await db.docs.find_one({"_id": "d1"}) == {
        "_id": "d1",
        "status": "queued",
        "created": 1,
        "n": 2,
    }


async def test_bulk_write_upserts(db: AsyncDatabase[Doc]) -> None:
    await db.pages.create_index([("documentId", ASCENDING), ("pageNo", ASCENDING)], unique=True)
    ops = [
        UpdateOne(
            {"documentId": "d1", "pageNo": n},
            {"$set": {"text": f"page {n}"}},
            upsert=True,
        )
        for n in range(5)
    ]
    result = await db.pages.bulk_write(ops, ordered=False)
    assert result.upserted_count == 5
    assert len(result.upserted_ids) == 5
    again = await db.pages.bulk_write(
        [
            *ops[:2],
            UpdateOne({"documentId": "d1", "pageNo": 9}, {"$set": {"text": "x"}}, upsert=True),
        ],
        ordered=False,
    )
    assert again.matched_count == 2
    assert again.modified_count == 0
    assert again.upserted_count == 1
    assert await db.pages.count_documents({"documentId": "d1"}) == 6


async def test_aggregate_group(db: AsyncDatabase[Doc]) -> None:
    await db.chunks.insert_many([{"documentId": f"d{n % 3}", "tokens": n} for n in range(9)])
    pipeline = [
        {"$match": {"tokens": {"$gte": 0}}},
        {"$group": {"_id": "$documentId", "chunks": {"$sum": 1}, "tokens": {"$sum": "$tokens"}}},
        {"$sort": {"_id": 1}},
    ]
    rows = await (await db.chunks.aggregate(pipeline)).to_list()
    assert rows == [
        {"_id": "d0", "chunks": 3, "tokens": 0 + 3 + 6},
        {"_id": "d1", "chunks": 3, "tokens": 1 + 4 + 7},
        {"_id": "d2", "chunks": 3, "tokens": 2 + 5 + 8},
    ]


async def test_find_sort_limit_and_count(db: AsyncDatabase[Doc]) -> None:
    await db.jobs.insert_many(
        [
            {"workspaceId": "w", "startedAt": n, "status": "done" if n % 2 else "failed"}
            for n in range(10)
        ]
    )
    await db.jobs.insert_one({"workspaceId": "other", "startedAt": 99, "status": "done"})
    latest = (
        await db.jobs.find({"workspaceId": "w"}, {"_id": 0, "startedAt": 1})
        .sort("startedAt", DESCENDING)
        .limit(3)
        .to_list()
    )
    assert latest == [{"startedAt": 9}, {"startedAt": 8}, {"startedAt": 7}]
    assert await db.jobs.count_documents({"workspaceId": "w"}) == 10
    assert await db.jobs.count_documents({"workspaceId": "w", "status": "done"}) == 5
    assert await db.jobs.count_documents({"workspaceId": "nobody"}) == 0


async def test_find_one_and_update(db: AsyncDatabase[Doc]) -> None:
    doc = await db.jobs.find_one_and_update(
        {"_id": "j1"},
        {"$set": {"status": "running"}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    assert doc == {"_id": "j1", "status": "running"}


async def test_gridfs_upload_download(db: AsyncDatabase[Doc]) -> None:
    bucket = AsyncGridFSBucket(db)
    payload = os.urandom(600_000)  # three chunks at the default 255 KiB
    file_id = await bucket.upload_from_stream("doc.pdf", payload, metadata={"workspaceId": "w"})

    stream = await bucket.open_download_stream(file_id)
    assert await stream.read() == payload
    assert stream.filename == "doc.pdf"
    assert stream.metadata == {"workspaceId": "w"}

    sink = io.BytesIO()
    await bucket.download_to_stream(file_id, sink)
    assert sink.getvalue() == payload
    assert await db["fs.chunks"].count_documents({"files_id": file_id}) == 3

    await bucket.delete(file_id)
    assert await db["fs.files"].count_documents({}) == 0
    assert await db["fs.chunks"].count_documents({}) == 0
