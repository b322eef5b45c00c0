"""Installs the npm packages the tests drive (next-auth, @auth/core, socket.io-client)."""

from __future__ import annotations

import subprocess
from pathlib import Path

NODE_DIR = Path(__file__).parent / "node"


def ensure_node_modules() -> Path:
    """`npm ci` once from the committed lock file; a no-op when already installed."""
    if not (NODE_DIR / "node_modules" / ".package-lock.json").exists():
        subprocess.run(
            ["npm", "ci", "--legacy-peer-deps", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=600,
        )
    return NODE_DIR
