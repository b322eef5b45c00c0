"""Ending a process session: a service started in a session of its own, with everything it
started since.

`ray start --block` ignores SIGINT and SIGTERM, and Ray's workers, agents and dashboard
modules are its descendants in several process groups, so neither a signal to the leader
nor `killpg` ends it all. A process cannot leave its session without `setsid`, which none
of them calls: the session id names the whole tree, and ending it never touches another
user's Ray (as `ray stop` would).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

POLL_INTERVAL_S = 0.05
# SIGKILL ends a process unless it sleeps uninterruptibly in the kernel; this bounds the wait
# for such a one.
KILL_TIMEOUT_S = 10.0


def session_processes(session_id: int) -> list[int]:
    """Live (not zombie) processes of the session `session_id`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if os.getsid(pid) == session_id and not _is_zombie(pid):
                found.append(pid)
    return found


def is_running(pid: int) -> bool:
    """The process exists and has not exited (a zombie has)."""
    try:
        return not _is_zombie(pid)
    except OSError:
        return False


def children(pid: int) -> list[int]:
    """Live processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if _parent(int(entry)) == pid and not _is_zombie(int(entry)):
                    found.append(int(entry))
    return found


def end_session(session_id: int, *, grace_s: float) -> list[int]:
    """SIGTERM every process of the session, then SIGKILL what is left after `grace_s`.

    Returns the processes still alive at the end (none, unless one is stuck in the kernel
    for KILL_TIMEOUT_S).
    """
    _signal_all(session_processes(session_id), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while session_processes(session_id) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while (left := session_processes(session_id)) and time.monotonic() < deadline:
        _signal_all(left, signal.SIGKILL)
        time.sleep(POLL_INTERVAL_S)
    return left


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (which is in parentheses and may
    hold spaces): state, parent, process group, session, ..."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rsplit(b")", 1)[1].split()


def _is_zombie(pid: int) -> bool:
    """A zombie has exited; it only waits for its parent to read its status."""
    return _stat_fields(pid)[0] == b"Z"


def _parent(pid: int) -> int:
    return int(_stat_fields(pid)[1])
