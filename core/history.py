"""Recent `index:*` events per workspace, numbered `{epoch, seq}`, for exact resume.

Every event gets the next `seq` of its workspace when it is recorded, and the `epoch` of the
store that numbered it. A client that comes back with `since: {epoch, seq}` gets exactly the
events after it, in order — or, when the store cannot prove it still has all of them (other
epoch, trimmed history), a flag to refetch the snapshot. Never a partial replay.

Two stores: in memory (one head, no Redis; a restart starts a new epoch) and a capped Redis
stream per workspace (all heads and the runs that publish straight into Redis share it).
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis

HISTORY_LENGTH = 500


@dataclass(frozen=True)
class Replay:
    """Events after a client's position, or `refetch` when that cannot be answered exactly."""

    events: list[tuple[str, dict[str, Any]]]
    refetch: bool
    epoch: str
    seq: int


class EventHistory(Protocol):
    async def record(
        self, workspace_id: str, event: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """Number the event; return its payload with `epoch` and `seq` added."""
        ...

    async def since(self, workspace_id: str, epoch: str | None, seq: int | None) -> Replay: ...


def _replay(
    entries: list[tuple[int, str, dict[str, Any]]],
    epoch: str,
    last: int,
    client_epoch: str | None,
    client_seq: int | None,
) -> Replay:
    """Shared rule: exact when the client's epoch matches and nothing after it was trimmed."""
    if client_epoch is None or client_seq is None:
        return Replay([], refetch=False, epoch=epoch, seq=last)
    if client_epoch != epoch or client_seq > last:
        return Replay([], refetch=True, epoch=epoch, seq=last)
    oldest = entries[0][0] if entries else last + 1
    if client_seq + 1 < oldest:
        return Replay([], refetch=True, epoch=epoch, seq=last)
    missed = [(event, payload) for seq, event, payload in entries if seq > client_seq]
    return Replay(missed, refetch=False, epoch=epoch, seq=last)


class MemoryEventHistory:
    """One head's history; its epoch is new at every start."""

    def __init__(self, length: int = HISTORY_LENGTH) -> None:
        self.epoch = secrets.token_hex(8)
        self._entries: dict[str, deque[tuple[int, str, dict[str, Any]]]] = defaultdict(
            lambda: deque(maxlen=length)
        )
        self._last: dict[str, int] = defaultdict(int)

    async def record(
        self, workspace_id: str, event: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        self._last[workspace_id] += 1
        seq = self._last[workspace_id]
        stamped = {**payload, "epoch": self.epoch, "seq": seq}
        self._entries[workspace_id].append((seq, event, stamped))
        return stamped

    async def since(self, workspace_id: str, epoch: str | None, seq: int | None) -> Replay:
        entries = list(self._entries.get(workspace_id, ()))
        return _replay(entries, self.epoch, self._last.get(workspace_id, 0), epoch, seq)


# INCR the workspace's counter and XADD the event under that number, atomically.
_RECORD_SCRIPT = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
           'seq', seq, 'event', ARGV[1], 'data', ARGV[2])
return seq
"""


class RedisEventHistory:
    """A capped stream per workspace in Redis; the epoch lives in Redis too, so a flushed
    Redis is a new epoch and every client refetches."""

    EPOCH_KEY = "indexer:history:epoch"

    def __init__(self, redis: aioredis.Redis, length: int = HISTORY_LENGTH) -> None:
        self._redis = redis
        self._length = length
        self._epoch: str | None = None

    async def _current_epoch(self) -> str:
        await self._redis.set(self.EPOCH_KEY, secrets.token_hex(8), nx=True)
        epoch = await self._redis.get(self.EPOCH_KEY)
        return epoch.decode() if isinstance(epoch, bytes) else str(epoch)

    async def record(
        self, workspace_id: str, event: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        epoch = await self._current_epoch()
        seq = await self._redis.eval(
            _RECORD_SCRIPT,
            2,
            f"indexer:history:{workspace_id}:seq",
            f"indexer:history:{workspace_id}",
            event,
            json.dumps({**payload, "epoch": epoch}),
            self._length,
        )
        return {**payload, "epoch": epoch, "seq": int(seq)}

    async def since(self, workspace_id: str, epoch: str | None, seq: int | None) -> Replay:
        current = await self._current_epoch()
        last = int(await self._redis.get(f"indexer:history:{workspace_id}:seq") or 0)
        raw = await self._redis.xrange(f"indexer:history:{workspace_id}")
        entries = []
        for _, fields in raw:
            number = int(fields[b"seq"])
            data = json.loads(fields[b"data"])
            entries.append((number, fields[b"event"].decode(), {**data, "seq": number}))
        return _replay(entries, current, last, epoch, seq)
