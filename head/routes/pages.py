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
SOCKET_IO_CLIENT = (
    Path(__file__).resolve().parents[2] / "node_modules/socket.io-client/dist/socket.io.min.js"
)
ASSETS = {
    "progress.js": (STATIC_DIR / "progress.js", "text/javascript"),
    "progress.css": (STATIC_DIR / "progress.css", "text/css"),
    "socket.io.min.js": (SOCKET_IO_CLIENT, "text/javascript"),
}

router = APIRouter(tags=["page"])


@router.get("/workspaces/{workspace_id}", include_in_schema=False)
async def progress_page(workspace_id: str) -> FileResponse:
    """The page; what it may show is decided by the API calls it makes with the cookie."""
    del workspace_id  # read by the page's script from its own URL
    return FileResponse(STATIC_DIR / "progress.html", media_type="text/html")


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    known = ASSETS.get(name)
    if known is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not found")
    path, media_type = known
    if not path.exists():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "socket.io-client is not installed: run `npm ci` at the repository root",
        )
    return FileResponse(path, media_type=media_type)
