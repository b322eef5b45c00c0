"""`core.db.retried_once`: the operations PyMongo does not retry, run again after the
connection is cut under them.

The cut is real: a TCP proxy between the client and the MongoDB server forwards the
command, then closes the client's connection instead of relaying the reply, as a server
that dies after executing it would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from pymongo.errors import AutoReconnect

from core.db import open_client, retried_once
from core.settings import Settings

DELETE_COMMAND = b"\x02delete\x00"  # the command's name, the first key of its BSON body


class CuttingProxy:
    """Relays TCP to the server; cuts the next `cuts` connections that send `marker`."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._server: asyncio.Server | None = None
        self.marker = b""
        self.cuts = 0
        self.cut = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        replies = asyncio.create_task(self._relay(up_reader, writer))
        try:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                if self.cuts and self.marker in data:
                    self.cuts -= 1
                    self.cut += 1
                    break  # the command went out; its reply never comes back
        finally:
            replies.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replies
            for stream in (writer, up_writer):
                stream.transport.abort()

    @staticmethod
    async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


@pytest.fixture
async def proxied(mongo_uri: str, settings: Settings) -> AsyncIterator[tuple[CuttingProxy, Any]]:
    """A collection reached through a cutting proxy, and the proxy."""
    server = urlsplit(mongo_uri)
    if server.scheme != "mongodb" or server.port is None or "," in server.netloc:
        pytest.skip("needs a single MongoDB server at host:port")
    async with CuttingProxy(server.hostname or "127.0.0.1", server.port) as proxy:
        uri = f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true"
        client = open_client(uri, server_selection_timeout_ms=5_000)
        try:
            yield proxy, client[settings.mongodb_db]["retried"]
            await client.drop_database(settings.mongodb_db)
        finally:
            await client.close()


async def test_a_delete_many_cut_off_is_run_again(proxied: tuple[CuttingProxy, Any]) -> None:
    proxy, collection = proxied
    await collection.insert_many([{"k": k} for k in range(10)])
    proxy.marker, proxy.cuts = DELETE_COMMAND, 1

    # PyMongo itself gives up: a multi-document delete is not a retryable write.
    with pytest.raises(AutoReconnect):
        await collection.delete_many({"k": {"$lt": 5}})
    assert proxy.cut == 1

    proxy.cuts = 1
    await retried_once(lambda: collection.delete_many({"k": {"$gte": 5}}))

    assert proxy.cut == 2
    assert await collection.count_documents({}) == 0  # both deletes took effect


async def test_a_second_cut_is_not_retried(proxied: tuple[CuttingProxy, Any]) -> None:
    """Once more, not forever: a connection cut twice fails the operation."""
    proxy, collection = proxied
    await collection.insert_one({"k": 1})
    proxy.marker, proxy.cuts = DELETE_COMMAND, 2

    with pytest.raises(AutoReconnect):
        await retried_once(lambda: collection.delete_many({}))
    assert proxy.cut == 2
