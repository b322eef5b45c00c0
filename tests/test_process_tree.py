"""Ending what a test or a head started, and nothing else: a session that ignores SIGTERM
(as `ray start --block` does) is ended with its children, and a process of another session
(another user's Ray) is left running."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from cluster.process_tree import end_session, is_running, session_processes
from tests.conftest import wait_until

# A leader that ignores SIGTERM and a child that inherits the ignored signal.
STUBBORN = 'trap "" TERM INT; sleep 600 & echo started; wait'


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait(10)


def test_end_session_ends_a_stubborn_tree_and_spares_other_sessions(bystander) -> None:
    leader = subprocess.Popen(
        ["bash", "-c", STUBBORN], start_new_session=True, stdout=subprocess.PIPE
    )
    try:
        assert leader.stdout is not None
        assert leader.stdout.readline() == b"started\n"
        wait_until(lambda: len(session_processes(leader.pid)) == 2, 10, "the child sleep")
        members = session_processes(leader.pid)

        assert end_session(leader.pid, grace_s=0.5) == []

        assert session_processes(leader.pid) == []
        assert [pid for pid in members if is_running(pid)] == []
        assert is_running(bystander.pid)
        assert session_processes(bystander.pid) == [bystander.pid]
    finally:
        leader.kill()
        leader.wait(10)
