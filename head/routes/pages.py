"""The progress page a browser opens at /workspaces/{id}, and its assets.

The page is static: it reads everything through the same REST and Socket.IO endpoints as
any client, with the session cookie. The Socket.IO browser client comes from the npm
package installed at the repository root (`npm ci`); nothing is built or committed.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SOCKET_IO_CLIENT = Path("node_modules/socket.io-client/dist/socket.io.min.js")
# the repository root for a checkout (editable install), the working directory for an image
ASSET_ROOTS = (Path(__file__).resolve().parents[2], Path.cwd())
ASSETS = {
    "progress.js": (STATIC_DIR / "progress.js", "text/javascript"),
    "progress.css": (STATIC_DIR / "progress.css", "text/css"),
}

router = APIRouter(tags=["page"])


@router.get("/workspaces/{workspace_id}", include_in_schema=False)
async def progress_page(workspace_id: str) -> FileResponse:
    """The page; what it may show is decided by the API calls it makes with the cookie."""
    del workspace_id  # read by the page's script from its own URL
    return FileResponse(STATIC_DIR / "progress.html", media_type="text/html")


def _socket_io_client() -> Path:
    for root in ASSET_ROOTS:
        if (root / SOCKET_IO_CLIENT).exists():
            return root / SOCKET_IO_CLIENT
    return ASSET_ROOTS[0] / SOCKET_IO_CLIENT


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    if name == "socket.io.min.js":
        path, media_type = _socket_io_client(), "text/javascript"
    elif name in ASSETS:
        path, media_type = ASSETS[name]
    else:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not found")
    if not path.exists():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "socket.io-client is not installed: run `npm ci` at the repository root",
        )
    return FileResponse(path, media_type=media_type)
