"""What every benchmark shares: free ports, the machine's other load, a head process on the
embedded defaults, a real-world PDF, the plain per-page work, and how to print a table.

A benchmark is one script per question on top of this module and the package's public
functions (`cluster`, `core`, `actors`): nothing here patches the product.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from actors.layout import blocks_from_dict, chunk_page, page_text
from actors.pdf import open_pdf
from actors.png import encode_png
from actors.render import preview_dpi
from core.embedding import encode
from head.nextauth import encode_session_token

QUIET_CHECK_S = 2.0
HEAD_READY_TIMEOUT_S = 300.0
HEAD_STOP_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def other_load() -> float:
    """Share of all CPUs busy over a short window while the benchmark does nothing: what
    else the machine is doing, printed beside every figure."""
    psutil.cpu_percent(interval=None)
    return psutil.cpu_percent(interval=QUIET_CHECK_S) / 100.0


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table, so a run's output can go into docs/BENCHMARKS.md as it is."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


@dataclass
class HeadProcess:
    """`indexer head` as a user runs it: embedded MongoDB and the head's own Ray in
    `data_dir`, a NextAuth secret of its own. `cookie(user)` signs a session for a user."""

    data_dir: Path
    port: int
    secret: str
    process: subprocess.Popen[bytes]
    started_at: float

    @classmethod
    def start(cls, data_dir: Path, **env: str) -> HeadProcess:
        port, secret = free_port(), secrets.token_urlsafe(32)
        environ = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "RAY_ADDRESS")}
        environ.update(
            INDEXER_DATA_DIR=str(data_dir), NEXTAUTH_SECRET=secret, PORT=str(port), **env
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        with (data_dir / "head.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "cluster.cli", "head", "--port", str(port)],
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return cls(data_dir, port, secret, process, time.monotonic())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def readiness(self) -> dict[str, Any]:
        try:
            return dict(httpx.get(f"{self.url}/readyz", timeout=5).json())
        except httpx.HTTPError:
            return {}

    def wait_ready(self) -> float:
        """Seconds from start until /readyz says ready, runs warm."""
        deadline = time.monotonic() + HEAD_READY_TIMEOUT_S
        while self.readiness().get("runs") != "ready":
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.data_dir / "head.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the head did not get ready: {log}")
            time.sleep(0.1)
        return time.monotonic() - self.started_at

    def cookie(self, user: str) -> str:
        now = int(time.time())
        token = encode_session_token({"sub": user, "iat": now, "exp": now + 3600}, self.secret)
        return f"next-auth.session-token={token}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(HEAD_STOP_TIMEOUT_S)


async def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def latex_manual(folder: Path, pages: int) -> Path:
    """The first `pages` pages of a LaTeX package's manual (tabularx's, from Debian's
    `texlive-latex-base-doc`, fetched once with `apt-get download`; never committed)."""
    import pymupdf

    excerpt = folder / f"tabularx-manual-{pages}p.pdf"
    if excerpt.exists():
        return excerpt
    folder.mkdir(parents=True, exist_ok=True)
    manual = folder / "root/usr/share/doc/texlive-doc/latex/tools/tabularx.pdf"
    if not manual.exists():
        download = ["apt-get", "download", "texlive-latex-base-doc"]
        if subprocess.run(download, cwd=folder, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=True)
            subprocess.run(download, cwd=folder, capture_output=True, check=True)
        package = next(folder.glob("texlive-latex-base-doc_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(package), str(folder / "root")], check=True)
    document = pymupdf.open(manual)
    document.select(list(range(pages)))
    document.save(excerpt)
    document.close()
    return excerpt


def plain_work(path: Path, model: Any, *, dpi: int, precision: str) -> int:
    """A run's per-page work in one process, nothing stored: open the PDF, render a PNG
    preview of each page, extract its text layout, chunk it, embed the chunks. Returns the
    number of chunks."""
    document = open_pdf(path.read_bytes())
    texts: list[str] = []
    for page_no, page in enumerate(document):
        encode_png(page.get_pixmap(dpi=preview_dpi(page.rect.width, page.rect.height, dpi)))
        blocks = blocks_from_dict(page.get_text("dict", flags=0))
        texts.extend(chunk.text for chunk in chunk_page(page_text(blocks), page_no))
    if texts:
        encode(model, texts, precision=precision)
    return len(texts)
