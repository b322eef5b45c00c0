"""The head's own Ray: one long-lived local Ray head node per data directory.

A run on a Ray of its own pays for the cluster, the workers, torch and the model before its
first page; a run on a Ray that is already up finds the embed pool and parked parser actors
warm. So `indexer head`, with RAY_ADDRESS unset, starts one local Ray as it starts the
embedded MongoDB, and everything that runs on this machine with the same INDEXER_DATA_DIR
attaches to it: the head's runs and `indexer index` from a terminal.

- The Ray head node is `ray start --head --block` in a session of its own, bound to
  127.0.0.1 on ports picked free (several can run on one machine, beside other people's
  Ray), with token authentication, its dashboard, and a temp dir of its own (other Rays'
  `address="auto"` never finds it).
- `runtime.json` in `INDEXER_DATA_DIR/ray` records it: address, dashboard, session, and the
  processes using it. A process that finds a live one there uses it; the last user to
  release it ends its session (every process Ray started, by session id: `ray stop` would
  end every Ray on the machine). A `flock` on `runtime.lock` serialises start, reuse and stop,
  so two heads on one machine share one runtime instead of fighting over it.
- A user that died without releasing (SIGKILL) is dropped from the list the next time
  anyone looks; a runtime whose users all died stays up until the next head reuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cluster.process_tree import end_session, is_running, session_processes
from cluster.ray_auth import AUTH_MODE_VARIABLE, auth_token
from core.errors import ClusterError
from core.file_lock import held_lock

STATE_FILE = "runtime.json"
LOCK_FILE = "runtime.lock"
LOG_FILE = "runtime.log"
STARTED_LINE = "Ray runtime started."
HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
LOCK_TIMEOUT_S = START_TIMEOUT_S + 30.0
STOP_GRACE_S = 5.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_CHARS = 2_000


@dataclass(frozen=True)
class RuntimeInfo:
    """A running local Ray: where to attach, where its dashboard is, its session."""

    address: str
    dashboard: str
    session: int
    users: tuple[int, ...] = ()


def runtime_dir(data_dir: Path) -> Path:
    return data_dir / "ray"


class LocalRayRuntime:
    """The local Ray of one data directory, shared by every process of ours that uses it.

    `acquire()` reuses the running one or starts it and registers this process as a user;
    `release()` unregisters it and ends the runtime when no user is left. `attach()` only
    reuses (for `indexer index`, which starts a Ray of its own when there is none).
    """

    def __init__(self, data_dir: Path, *, num_cpus: int | None = None) -> None:
        self.directory = runtime_dir(data_dir)
        self._num_cpus = num_cpus or os.cpu_count() or 1
        self._info: RuntimeInfo | None = None

    @property
    def info(self) -> RuntimeInfo:
        if self._info is None:
            raise RuntimeError("the local Ray is not acquired")
        return self._info

    def acquire(self) -> RuntimeInfo:
        """The running local Ray, started when there is none; this process becomes a user."""
        with self._locked():
            info = self._live() or self._start()
            self._info = self._write(info, users=(*info.users, os.getpid()))
        return self._info

    def attach(self) -> RuntimeInfo | None:
        """The running local Ray with this process as a user, or None when there is none."""
        with self._locked():
            info = self._live()
            if info is not None:
                self._info = self._write(info, users=(*info.users, os.getpid()))
        return self._info

    def running(self) -> RuntimeInfo | None:
        """The running local Ray, without becoming a user (status, tests)."""
        with self._locked():
            return self._live()

    def release(self) -> None:
        """Stop using the runtime; the last user ends it. Safe to call twice."""
        if self._info is None:
            return
        self._info = None
        with self._locked():
            info = self._live()
            if info is None:
                return
            users = tuple(pid for pid in info.users if pid != os.getpid())
            if users:
                self._write(info, users=users)
                return
            (self.directory / STATE_FILE).unlink(missing_ok=True)
            end_session(info.session, grace_s=STOP_GRACE_S)

    # -- state ----------------------------------------------------------------------

    def _live(self) -> RuntimeInfo | None:
        """The recorded runtime when its processes still run, users pruned to live ones."""
        try:
            state = json.loads((self.directory / STATE_FILE).read_text(encoding="utf-8"))
            info = RuntimeInfo(
                address=str(state["address"]),
                dashboard=str(state["dashboard"]),
                session=int(state["session"]),
                users=tuple(int(pid) for pid in state["users"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            (self.directory / STATE_FILE).unlink(missing_ok=True)
            return None
        if not session_processes(info.session) or not _port_open(info.address):
            (self.directory / STATE_FILE).unlink(missing_ok=True)
            return None
        users = tuple(pid for pid in info.users if is_running(pid))
        return RuntimeInfo(info.address, info.dashboard, info.session, users)

    def _write(self, info: RuntimeInfo, *, users: tuple[int, ...]) -> RuntimeInfo:
        info = RuntimeInfo(info.address, info.dashboard, info.session, tuple(dict.fromkeys(users)))
        fd, tmp = tempfile.mkstemp(prefix=".runtime-", suffix=".json", dir=self.directory)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(asdict(info), out)
        os.replace(tmp, self.directory / STATE_FILE)  # a reader never sees half a file
        return info

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """Starting, joining, leaving and stopping the local Ray, one process at a time."""

        def too_long(message: str) -> ClusterError:
            return ClusterError(f"{message} (starting or stopping the local Ray)")

        return held_lock(self.directory / LOCK_FILE, LOCK_TIMEOUT_S, too_long)

    # -- start ----------------------------------------------------------------------

    def _start(self) -> RuntimeInfo:
        gcs, dashboard, agent, client = (_free_port() for _ in range(4))
        log_path = self.directory / LOG_FILE
        with contextlib.suppress(OSError):
            log_path.replace(log_path.with_suffix(".log.1"))
        command = [
            *_ray_command(),
            "start",
            "--head",
            "--block",
            f"--node-ip-address={HOST}",
            f"--port={gcs}",
            f"--num-cpus={self._num_cpus}",
            "--include-dashboard=true",
            f"--dashboard-host={HOST}",
            f"--dashboard-port={dashboard}",
            f"--dashboard-agent-listen-port={agent}",
            f"--ray-client-server-port={client}",
            f"--temp-dir={self._temp_dir()}",
            "--disable-usage-stats",
        ]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        info = RuntimeInfo(f"{HOST}:{gcs}", f"http://{HOST}:{dashboard}", process.pid)
        try:
            self._wait_started(process, log_path)
        except BaseException:
            end_session(process.pid, grace_s=0)
            process.wait()
            raise
        return info

    def _environment(self) -> dict[str, str]:
        """Token authentication on, with a token made first when this machine has none
        (`ray start` refuses token mode without one; `ray.init()` would make it too)."""
        environ = dict(os.environ)
        environ.pop("RAY_ADDRESS", None)
        if environ.get(AUTH_MODE_VARIABLE, "token") == "token" and auth_token(environ) is None:
            subprocess.run(
                [*_ray_command(), "get-auth-token", "--generate"],
                env=environ,
                check=True,
                capture_output=True,
                timeout=60,
            )
        environ.setdefault(AUTH_MODE_VARIABLE, "token")
        return environ

    def _temp_dir(self) -> str:
        """Short (Ray's socket paths must fit 107 bytes) and of this data directory only."""
        tag = hashlib.sha256(str(self.directory.resolve()).encode()).hexdigest()[:8]
        return str(Path(tempfile.gettempdir()) / f"indexer-ray-{os.getuid()}-{tag}")

    @staticmethod
    def _wait_started(process: subprocess.Popen[bytes], log_path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while STARTED_LINE not in log_path.read_text(errors="replace"):
            if process.poll() is not None:
                raise ClusterError(f"the local Ray did not start: {_tail(log_path)}")
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"the local Ray did not start within {START_TIMEOUT_S:.0f}s: {_tail(log_path)}"
                )
            time.sleep(POLL_INTERVAL_S)


def _ray_command() -> list[str]:
    """Ray's CLI from this Python's environment (the same Ray as the drivers)."""
    return [sys.executable, "-m", "ray.scripts.scripts"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_open(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, int(port))) == 0


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip()
    return "(no log)"
