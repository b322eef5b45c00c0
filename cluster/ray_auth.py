"""Ray's token authentication, for the processes of ours that talk to a Ray cluster.

Ray 2.60 clusters run with token authentication when a token exists (`ray start`) or always
(a local `ray.init()`, which writes `~/.ray/auth_token`). A driver that attaches to a
cluster by address sends the token only when `RAY_AUTH_MODE=token` is in its environment,
and Ray reads that variable into its configuration when `ray` is imported: setting it later
in the same process has no effect. So every entry point calls `prepare_ray_auth` before
anything imports `ray`, and processes we start get the variable in their environment.

The rule is Ray's own for `ray start` (`maybe_enable_token_auth_if_token_available`): with
`RAY_AUTH_MODE` unset, a process that can find a token (`RAY_AUTH_TOKEN`,
`RAY_AUTH_TOKEN_PATH`, `~/.ray/auth_token`) runs in token mode. A token-mode driver attaches
to a cluster without authentication as well, so the rule never locks anyone out.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"


def auth_token(environ: Mapping[str, str]) -> str | None:
    """The cluster token this process would send, where Ray's loader looks for it."""
    token = environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    path = environ.get("RAY_AUTH_TOKEN_PATH", "").strip() or str(Path.home() / ".ray/auth_token")
    with contextlib.suppress(OSError):
        return Path(path).read_text().strip() or None
    return None


def ray_auth_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What to add to `environ` so a process started with it authenticates to Ray."""
    if AUTH_MODE_VARIABLE in environ or auth_token(environ) is None:
        return {}
    return {AUTH_MODE_VARIABLE: "token"}


def prepare_ray_auth(environ: MutableMapping[str, str] = os.environ) -> None:
    """Put token mode into this process's environment when a token exists.

    Raises:
        RuntimeError: `ray` is imported already, so the change would not reach it.
    """
    changes = ray_auth_environment(environ)
    if changes and "ray" in sys.modules:
        raise RuntimeError("prepare_ray_auth must run before `ray` is imported")
    environ.update(changes)
