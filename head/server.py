"""How uvicorn serves the head: its server settings, in one place for the CLI and the tests.

uvicorn's default HTTP parser (httptools) reads a request's headers however large they
are: a 20 MB header is buffered (tens of MB of memory per request) and answered. h11 stops
once more than `h11_max_incomplete_event_size` bytes of a request head are buffered and it
is still incomplete, answers 400 and closes the connection (a head that completes within
the same socket read, at most 64 KiB more, is parsed). Websocket messages are bounded by
the Socket.IO message size before python-engineio sees them.

Websockets are served by uvicorn's sans-I/O `websockets` protocol with a frame sink
(`head.ws_transport`), so a broadcast is framed once for every socket, and without
per-message deflate, as the Node.js Socket.IO server has it by default: compressing each
small event for each socket costs more CPU than the rest of its delivery, and each
connection holds 46 KiB of compressor state (`head.fanout` has the figures). Clients that
offer the extension (browsers, socket.io-client) simply get plain frames.
"""

from __future__ import annotations

from typing import Any

from head.app import MAX_SOCKET_MESSAGE_BYTES
from head.ws_transport import FrameSinkProtocol

# Request line and headers together, while incomplete. Room for NextAuth's cookies split
# into chunks (8 of 4 KB, `head.nextauth.MAX_TOKEN_CHARS`) and the web app's other cookies.
MAX_HEADER_BYTES = 64 * 1024


def uvicorn_options(*, host: str, port: int, log_level: str = "info") -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run(app, ...)` or `uvicorn.Config(app, ...)`."""
    return {
        "host": host,
        "port": port,
        "log_level": log_level,
        "lifespan": "on",  # the head's clients open in its lifespan: without it, nothing works
        "http": "h11",
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "ws_max_size": MAX_SOCKET_MESSAGE_BYTES,
        "ws": FrameSinkProtocol,
        "ws_per_message_deflate": False,
    }
