"""A head-only install: `pip install indexer` (no extras) into a fresh virtualenv, then
`indexer head` against the test's MongoDB-protocol server. Selected with `-m install`; it
installs from the package index pip is configured with (a minute or so)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import Settings
from core.workspaces import create_workspace
from tests.conftest import SERVICE_TIMEOUT_S, wait_until

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[1]
# The top-level packages pyproject.toml ships, so the copy holds what the install needs.
PACKAGES = sorted(
    {
        name.split(".")[0]
        for name in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]
    }
)
INSTALL_TIMEOUT_S = 300.0
# Warnings pip and setuptools gave on every install of this project.
INSTALL_WARNINGS = ("does not provide the extra", "is absent from the `packages` configuration")


def source_tree(destination: Path) -> Path:
    """The project's tracked files, copied: an install builds in its source folder, and the
    checkout must stay clean."""
    listed = subprocess.run(
        ["git", "ls-files", "pyproject.toml", "README.md", *PACKAGES],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in listed:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return destination


@pytest.fixture(scope="module")
def head_only_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding the project without extras; fails with pip's own output."""
    folder = tmp_path_factory.mktemp("head-only")
    source = source_tree(folder / "src")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-v", str(source)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    output = installed.stdout + installed.stderr
    assert installed.returncode == 0, output[-4000:]
    warned = [line for line in output.splitlines() if any(w in line for w in INSTALL_WARNINGS)]
    assert not warned, warned
    return venv


@pytest.fixture
def head_process(
    head_only_venv: Path, settings: Settings, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """`indexer head` of the head-only venv, run outside the checkout so that nothing is
    imported from it; yields its URL and its log."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "MONGODB_URI": settings.mongodb_uri.reveal(),  # type: ignore[union-attr]
        "MONGODB_DB": settings.mongodb_db,
        "NEXTAUTH_SECRET": settings.nextauth_secret.reveal(),  # type: ignore[union-attr]
        "INDEXER_DATA_DIR": str(tmp_path / "data"),
    }
    log = tmp_path / "head.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(head_only_venv / "bin/indexer"), "head", "--port", str(settings.port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{settings.port}"
    try:
        wait_until(
            lambda: process.poll() is not None or _answers(f"{url}/readyz"),
            SERVICE_TIMEOUT_S * 3,
            "the head-only install's head to answer /readyz",
        )
        assert process.poll() is None, log.read_text()[-4000:]
        yield url, log
    finally:
        process.terminate()
        process.wait(SERVICE_TIMEOUT_S)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_install_has_no_pipeline(head_only_venv: Path) -> None:
    """The point of the test: Ray, torch and sentence-transformers are not there."""
    modules = ("ray", "torch", "sentence_transformers", "pymupdf")
    probe = f"import importlib.util as u; print([m for m in {modules} if u.find_spec(m)])"
    found = subprocess.run(
        [str(head_only_venv / "bin/python"), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=head_only_venv,
    ).stdout.strip()
    assert found == "[]"


@pytest.mark.asyncio
async def test_head_only_install_serves(
    head_process: tuple[str, Path], db: Any, session_cookie: Callable[..., str]
) -> None:
    url, log = head_process
    workspace_id = str(
        await create_workspace(db, name="Head only", owner_id="alice", member_ids=[])
    )
    headers = {"Cookie": session_cookie("alice")}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
        ready = await http.get("/readyz")
        assert ready.json()["checks"] == {"mongodb": "ok"}
        state = await http.get(f"/api/workspaces/{workspace_id}")
        assert state.status_code == 200, state.text
        assert (state.json()["name"], state.json()["role"]) == ("Head only", "owner")
        assert (await http.get("/metrics")).status_code == 200
        for path in (f"/workspaces/{workspace_id}", "/assets/progress.js", "/assets/progress.css"):
            page = await http.get(path)
            assert page.status_code == 200, f"{path}: the page's files were not installed"
        # what needs the pipeline extra says so, as a 503 naming it
        search = await http.get(f"/api/workspaces/{workspace_id}/search", params={"q": "ray"})
        assert search.status_code == 503, search.text
        assert "pip install '.[pipeline]'" in search.json()["detail"]
        start = await http.post(f"/api/workspaces/{workspace_id}/index")
        assert start.status_code == 503, start.text
        assert "'pipeline' extra" in start.json()["detail"]
    assert "Traceback" not in log.read_text()
