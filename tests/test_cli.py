"""The `indexer` command line as a first-time user meets it: a mistyped workspace id is
answered at once, and the demo says how long its watch URL lives."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from cli.demo import DEMO_USER, watch_instructions
from cluster.local_runtime import runtime_dir
from core.settings import Settings, load_settings
from head.nextauth import decode_session_token, session_cookie_of

# Addresses where nothing answers: a command that tried to reach either would fail
# with their errors (or wait for them), not with the one line the test expects.
NOWHERE_MONGODB = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=30000"
NOWHERE_RAY = "127.0.0.1:1"


def test_index_of_a_malformed_id_answers_before_mongodb_or_ray(tmp_path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "MONGODB_URI": NOWHERE_MONGODB,
        "RAY_ADDRESS": NOWHERE_RAY,
        "NEXTAUTH_SECRET": "s" * 32,
        "INDEXER_DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "index", "not-an-id"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "indexer: no workspace 'not-an-id'"
    assert "fetch:" not in result.stderr
    assert not runtime_dir(tmp_path / "data").exists(), "a Ray runtime was prepared"


def _demo_settings(tmp_path) -> Settings:
    return load_settings(
        {"NEXTAUTH_SECRET": "s" * 32, "PORT": "4123", "INDEXER_DATA_DIR": str(tmp_path)}
    )


def test_demo_watch_url_says_the_head_stops_with_the_demo(tmp_path) -> None:
    settings = _demo_settings(tmp_path)
    workspace_id = "6b13725b8f360d2999f19840"
    text = watch_instructions(settings, workspace_id, keep_serving=False)
    assert f"{settings.head_url}/workspaces/{workspace_id}" in text
    assert "the head stops when the demo ends" in text
    assert "indexer demo --keep-serving" in text

    kept = watch_instructions(settings, workspace_id, keep_serving=True)
    assert "stays up after the runs" in kept
    assert "--keep-serving" not in kept


def test_demo_cookie_is_the_demo_users_session(tmp_path) -> None:
    settings = _demo_settings(tmp_path)
    text = watch_instructions(settings, "6b13725b8f360d2999f19840", keep_serving=False)
    line = next(row for row in text.splitlines() if row.strip().startswith("cookie:"))
    header = line.split("cookie:", 1)[1].strip()
    cookie = session_cookie_of(header)
    assert cookie is not None
    secret = settings.require_nextauth_secret().reveal()
    claims = decode_session_token(cookie, secret, now=time.time())
    assert claims["sub"] == DEMO_USER
