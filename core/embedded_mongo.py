"""The embedded MongoDB-protocol server: SecantusDB run as a child process.

When MONGODB_URI is unset the indexer needs a MongoDB of its own. SecantusDB (GPL-2.0)
speaks the wire protocol on top of WiredTiger; to keep its licence out of our process it
is only ever *executed* through its console script `secantusd-py`, never imported.

One server serves one data directory. Several of our processes may ask for the same
directory (the CLI, a Ray driver, a second terminal), so the first one starts the server
and records it in `secantusd.json`; the others find it there, check that it answers, and
reuse it. An `flock` on `secantusd.lock` serialises that check-then-start so two processes
starting at once cannot both launch (WiredTiger would refuse the second anyway, with a
less helpful error). Only the process that started the server stops it.

A server that died (SIGKILL, OOM) leaves a stale state file; the next start launches a new
server on the *same port* when it is free, so every process still holding the old URI (a
head, the actors of a run) reconnects on its own instead of talking to a dead port forever.

Files in the data directory:

    secantusd.json    state of the running server: {"pid", "port", "host", ...}
    secantusd.lock    flock target for start/stop
    secantusd.log     the server's stdout+stderr (the previous run's is `.log.1`)
    secantusd.toml    passed with --config so no stray ~/.secantus/secantusd.toml applies
    wiredtiger/       the data itself (on-disk mode only)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import urlsplit

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from core.errors import StorageError
from core.file_lock import held_lock

EXECUTABLE_NAME = "secantusd-py"
HOST = "127.0.0.1"
STATE_FILE = "secantusd.json"
LOCK_FILE = "secantusd.lock"
LOG_FILE = "secantusd.log"
CONFIG_FILE = "secantusd.toml"
STORAGE_SUBDIR = "wiredtiger"

POLL_INTERVAL_S = 0.05
PING_TIMEOUT_MS = 1_000
STOP_TIMEOUT_S = 15.0
RESIGNAL_INTERVAL_S = 0.5
LOG_TAIL_CHARS = 2_000

# SecantusDB logs this line once its socket is listening; with `--port 0` it is the only
# race-free way to learn which port the kernel picked.
_LISTENING = re.compile(r"listening on \S+:(\d+)\r?\n")


class EmbeddedMongo:
    """Runs SecantusDB as a child process for a data directory.

    Use as a context manager, or call `start()` and `stop()`; nothing global is
    registered, so the caller owns the lifetime.

    Args:
        data_dir: Where the data, state, lock and log files live; created if missing.
        in_memory: Keep the data in memory (tests). No state file, so never shared or
            reused; `data_dir` only holds the log.
        startup_timeout_s: How long to wait for the server to answer a ping.
        executable: Path of `secantusd-py`; by default the one next to the running
            Python (the same virtualenv), else the first on PATH.
        port: Listen on this port; by default a crashed predecessor's port when it is
            free (on-disk mode), else one the kernel picks.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        in_memory: bool = False,
        startup_timeout_s: float = 30.0,
        executable: str | None = None,
        port: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.in_memory = in_memory
        self.startup_timeout_s = startup_timeout_s
        self._executable = executable
        self._requested_port = port
        self._uri: str | None = None
        self._started_here = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._server_pid = 0
        self._port: int | None = None
        self._log_path: Path | None = None

    # -- public ---------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """`mongodb://127.0.0.1:PORT/` of the running server; only valid after `start()`."""
        if self._uri is None:
            raise RuntimeError("EmbeddedMongo is not started; call start() first")
        return self._uri

    @property
    def port(self) -> int:
        """The running server's port; only valid after `start()`."""
        port = urlsplit(self.uri).port
        if port is None:  # never: `_uri_for` always names one
            raise RuntimeError(f"no port in {self.uri}")
        return port

    @property
    def pid(self) -> int:
        """The server's own pid (0 before `start()` or when the server was reused)."""
        return self._server_pid

    @property
    def started_here(self) -> bool:
        """True when this object launched the server (and so `stop()` will stop it)."""
        return self._started_here

    def start(self) -> str:
        """Reuse the directory's running server or launch one; return its URI.

        Raises:
            StorageError: The executable is missing, the server exited during start-up
                (the message carries the tail of its log), it did not answer a ping
                within `startup_timeout_s`, or another process held the directory's lock
                for too long.
        """
        if self._uri is not None:
            return self._uri
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create MongoDB data directory {self.data_dir}: {exc}"
            ) from exc
        if self.in_memory:
            self._uri = self._launch(self._requested_port or 0)
            return self._uri
        # The holder may be launching (startup_timeout_s) or stopping (STOP_TIMEOUT_S).
        with self._locked(self.startup_timeout_s + STOP_TIMEOUT_S):
            stale_port = self._stale_port()
            reused = self._reusable_uri()
            if reused is not None:
                self._uri = reused
            elif self._requested_port is not None:
                self._uri = self._launch(self._requested_port)
            else:
                self._uri = self._launch_on_stale_port(stale_port)
        return self._uri

    def stop(self) -> None:
        """Stop the server if this object started it (SIGTERM, wait, then SIGKILL).

        A reused server is left running for whoever started it. Safe to call twice.
        """
        proc, self._proc = self._proc, None
        port, self._port = self._port, None
        self._uri = None
        if proc is None:
            return
        self._started_here = False
        if self.in_memory:
            _terminate(proc, port)
            return
        try:
            # Under the lock, so a process starting now waits until the old server has
            # released WiredTiger instead of reusing a server that is going away.
            with self._locked(self.startup_timeout_s + STOP_TIMEOUT_S):
                self._remove_state_if_ours(self._server_pid)
                _terminate(proc, port)
        except StorageError:
            # Lock stuck elsewhere: stop anyway; the dead pid marks the state file stale.
            _terminate(proc, port)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- reuse ----------------------------------------------------------------------

    @property
    def _state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def _reusable_uri(self) -> str | None:
        """The URI from the state file if that server is alive and answers; else None.

        A state file that fails the check is stale (crash, reboot, SIGKILL) and removed.
        """
        try:
            state = json.loads(self._state_path.read_text(encoding="utf-8"))
            pid, port = int(state["pid"]), int(state["port"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self._state_path.unlink(missing_ok=True)
            return None
        uri = _uri_for(port)
        # The pid check alone could hit a recycled pid, the ping alone another server on
        # a recycled port; the server's own pid in serverStatus ties the two together.
        if _pid_alive(pid) and _server_pid(uri) == pid:
            return uri
        self._state_path.unlink(missing_ok=True)
        return None

    def _stale_port(self) -> int | None:
        """The port the state file records (read before a stale file is removed)."""
        try:
            state = json.loads(self._state_path.read_text(encoding="utf-8"))
            port = int(state["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return port if 0 < port < 65536 else None

    def _launch_on_stale_port(self, port: int | None) -> str:
        """Launch on a dead predecessor's port when it is free (clients holding its URI
        reconnect by themselves), else on a port the kernel picks."""
        if port is not None and _port_free(port):
            try:
                return self._launch(port)
            except StorageError:
                pass  # taken between the check and the bind: any port will do
        return self._launch(0)

    def _write_state(self, pid: int, port: int, executable: Path) -> None:
        state = {
            "pid": pid,
            "port": port,
            "host": HOST,
            "startedAt": time.time(),
            "executable": str(executable),
        }
        # Write-then-rename: a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(prefix=".secantusd-", suffix=".json", dir=self.data_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, self._state_path)

    def _remove_state_if_ours(self, pid: int) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            state = json.loads(self._state_path.read_text(encoding="utf-8"))
            if int(state["pid"]) == pid:
                self._state_path.unlink(missing_ok=True)

    def _locked(self, timeout_s: float) -> contextlib.AbstractContextManager[None]:
        """Starting and stopping the server, one process at a time."""

        def too_long(message: str) -> StorageError:
            return StorageError(f"{message} (starting or stopping MongoDB)")

        return held_lock(self.data_dir / LOCK_FILE, timeout_s, too_long)

    # -- launch ---------------------------------------------------------------------

    def _resolve_executable(self) -> Path:
        if self._executable is not None:
            return Path(self._executable)
        beside = Path(sys.executable).parent / EXECUTABLE_NAME
        if beside.is_file():
            return beside
        found = shutil.which(EXECUTABLE_NAME)
        if found is None:
            raise StorageError(
                f"cannot find {EXECUTABLE_NAME} next to {sys.executable} or on PATH; "
                "install the 'secantusdb' package or set MONGODB_URI"
            )
        return Path(found)

    def _command(self, executable: Path, port: int) -> list[str]:
        config = self.data_dir / CONFIG_FILE
        if not config.exists():
            config.write_text(
                "# Options for the embedded SecantusDB; command-line flags win.\n",
                encoding="utf-8",
            )
        command = [
            str(executable),
            "--config", str(config),
            "--host", HOST,
            "--port", str(port),
            "--log-level", "INFO",
        ]  # fmt: skip
        if self.in_memory:
            command += ["--storage-path", ":memory:"]
        else:
            # Acknowledged writes must survive a crash or power loss: the index is the
            # source of truth, not a cache.
            command += ["--storage-path", str(self.data_dir / STORAGE_SUBDIR), "--sync-on-commit"]
        return command

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if not self.in_memory:
            # SecantusDB turns its journal off when SECANTUS_TEST_FAST_STORAGE=1 is in the
            # environment (its own test suite sets it); ours must never inherit that.
            env["SECANTUS_FORCE_DURABLE"] = "1"
        return env

    def _open_log(self) -> IO[bytes]:
        if self.in_memory:
            # Several in-memory servers may share a directory (parallel test sessions).
            fd, name = tempfile.mkstemp(
                prefix="secantusd-memory-", suffix=".log", dir=self.data_dir
            )
            self._log_path = Path(name)
            return os.fdopen(fd, "wb")
        self._log_path = self.data_dir / LOG_FILE
        if self._log_path.exists():
            os.replace(self._log_path, self._log_path.with_name(LOG_FILE + ".1"))
        return open(self._log_path, "wb")

    def _launch(self, port: int) -> str:
        """Start the child on `port` (0: any), wait until it answers, record it; return
        its URI."""
        executable = self._resolve_executable()
        command = self._command(executable, port)
        with self._open_log() as log:
            try:
                # Own session: a Ctrl-C in the terminal reaches only our process, which
                # then stops the server in order (or leaves it for reuse).
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    env=self._environment(),
                    start_new_session=True,
                )
            except OSError as exc:
                raise StorageError(
                    f"cannot run the embedded MongoDB server {executable}: {exc}"
                ) from exc
        try:
            port = self._await_ready(proc)
            # The server's own pid (a wrapper script would have another than `proc`).
            server_pid = _server_pid(_uri_for(port)) or proc.pid
            if not self.in_memory:
                self._write_state(server_pid, port, executable)
        except BaseException as exc:
            _terminate(proc, None)
            if isinstance(exc, OSError):
                raise StorageError(f"cannot write {self._state_path}: {exc}") from exc
            raise
        self._proc = proc
        self._server_pid = server_pid
        self._port = port
        self._started_here = True
        return _uri_for(port)

    def _await_ready(self, proc: subprocess.Popen[bytes]) -> int:
        """Poll until the child logs its port and answers a ping; return the port."""
        deadline = time.monotonic() + self.startup_timeout_s
        port: int | None = None
        while True:
            if proc.poll() is not None:
                raise StorageError(
                    f"embedded MongoDB server exited with code {proc.returncode} during "
                    f"start-up; log {self._log_path}:\n{self._log_tail()}"
                )
            if port is None:
                match = _LISTENING.search(self._log_text())
                port = int(match.group(1)) if match else None
            if port is not None and _ping(_uri_for(port)):
                return port
            if time.monotonic() > deadline:
                raise StorageError(
                    f"embedded MongoDB server did not answer within {self.startup_timeout_s:g}s; "
                    f"log {self._log_path}:\n{self._log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def _log_text(self) -> str:
        if self._log_path is None:
            return ""
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def _log_tail(self) -> str:
        text = self._log_text().strip()
        return text[-LOG_TAIL_CHARS:] if text else "(empty log)"


def _uri_for(port: int) -> str:
    return f"mongodb://{HOST}:{port}/"


def _client(uri: str) -> MongoClient[dict[str, Any]]:
    """A short-timeout sync client talking to exactly this server (no topology discovery)."""
    return MongoClient(
        uri,
        directConnection=True,
        serverSelectionTimeoutMS=PING_TIMEOUT_MS,
        connectTimeoutMS=PING_TIMEOUT_MS,
        socketTimeoutMS=PING_TIMEOUT_MS,
        appname="indexer-embedded-probe",
    )


def _ping(uri: str) -> bool:
    try:
        with _client(uri) as client:
            client.admin.command("ping")
    except PyMongoError:
        return False
    return True


def _server_pid(uri: str) -> int | None:
    """The pid the server reports in serverStatus, or None when it does not answer."""
    try:
        with _client(uri) as client:
            status = client.admin.command("serverStatus")
    except PyMongoError:
        return None
    pid = status.get("pid")
    return int(pid) if isinstance(pid, int) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process; the serverStatus check decides
    return True


def _terminate(proc: subprocess.Popen[bytes], port: int | None) -> None:
    """SIGTERM (SecantusDB then closes WiredTiger cleanly), wait, SIGKILL as a last resort.

    Two quirks of secantusd-py 0.7.0b3 are handled here:

    * Its SIGTERM handler is a Python handler while its main thread sleeps in
      `Event.wait()`; when the kernel hands the signal to another thread the handler does
      not run, and stops often meet that. So SIGTERM is repeated every RESIGNAL_INTERVAL_S
      until the port refuses connections, which shows the shutdown has begun.
    * Its accept thread sees the shutdown only when `accept()` returns, which closing the
      socket does not cause on Linux, so stop would sit out its 2 s thread join. Connecting
      to the port wakes it, so stop does not wait for that join.
    """
    deadline = time.monotonic() + STOP_TIMEOUT_S
    signal_at = time.monotonic()
    while proc.poll() is None:
        now = time.monotonic()
        if now > deadline:
            proc.kill()
            break
        if now >= signal_at:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            signal_at = now + RESIGNAL_INTERVAL_S
        if port is not None and _knock(port) is False:
            signal_at = deadline  # shutting down: no second handler mid-shutdown
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=POLL_INTERVAL_S)
    proc.wait()


def _port_free(port: int) -> bool:
    """Whether a listener could bind HOST:port now (SO_REUSEADDR, as SecantusDB binds)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _knock(port: int) -> bool | None:
    """Connect and hang up: True if accepted, False if refused, None if unsure."""
    try:
        socket.create_connection((HOST, port), timeout=POLL_INTERVAL_S).close()
    except ConnectionRefusedError:
        return False
    except OSError:
        return None
    return True
