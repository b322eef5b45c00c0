"""An exclusive lock on a file, held across processes (flock): the embedded MongoDB and the
head's local Ray each start and stop under one, so two heads never race for them."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

POLL_INTERVAL_S = 0.05


@contextlib.contextmanager
def held_lock(path: Path, timeout_s: float, too_long: Callable[[str], Exception]) -> Iterator[None]:
    """Hold an exclusive flock on `path`, waiting at most `timeout_s`; raise
    `too_long(message)` when another process holds it longer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as lock:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise too_long(
                        f"another process holds {path} for more than {timeout_s:.0f}s"
                    ) from None
                time.sleep(POLL_INTERVAL_S)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
