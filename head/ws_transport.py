"""uvicorn's websocket protocol, plus one thing: the app may write a ready-made frame.

A broadcast sends the same Engine.IO message to every websocket in a room. Through ASGI,
each `websocket.send` is framed again by the `websockets` library (a Frame object, its
serialization, the extensions) and written with its own `await`. `FrameSinkProtocol`
lets `head.fanout` frame a message once (`encode_frame`) and hand the same bytes to
every connection's transport, synchronously, in the order it calls.

The protocol is uvicorn's own sans-I/O `websockets` one, subclassed and selected by
`head.server`'s options (`ws=`, a documented uvicorn setting). It advertises the sink in
the websocket scope's `extensions[FRAME_SINK_EXTENSION]` when no websocket extension was
negotiated: per-message deflate needs a compressor per connection; the head turns it off
(`head.server`), and a server run with it serves the connections that use it the ordinary
way. A frame is written only while the connection is open; otherwise `write_frame`
returns False. The attributes read here (`close_sent`, `disconnected`, `conn`,
`transport`) are uvicorn's protocol state; tests/test_fanout.py fails if an upgrade of
uvicorn or websockets moves them.
"""

from __future__ import annotations

import logging
import struct
from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

logger = logging.getLogger(__name__)

FRAME_SINK_EXTENSION = "indexer.frame_sink"
# A connection whose unsent data grows past this is too slow to follow its rooms: it is
# dropped (the client reconnects and resumes from the history) rather than buffered
# without bound. 500 history events of the largest allowed size fit in it.
MAX_BUFFERED_BYTES = 8 * 1024 * 1024
_FIN_TEXT = 0x81
_FIN_BINARY = 0x82


class FrameSink(Protocol):
    """What `head.fanout` needs of a connection: write a frame now, or say it cannot."""

    def write_frame(self, frame: bytes) -> bool: ...


def encode_frame(payload: bytes, *, text: bool) -> bytes:
    """One unmasked, final text (or binary) frame carrying `payload` (RFC 6455, 5.2): what
    a server sends, the same bytes for every connection."""
    first = _FIN_TEXT if text else _FIN_BINARY
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


class FrameSinkProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websockets protocol that also accepts ready-made frames."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        # a websocket request not refused at the handshake, whose frames go out as they are
        # (an extension such as per-message deflate would transform each one)
        if scope is not None and not self.conn.extensions:
            scope["extensions"][FRAME_SINK_EXTENSION] = self

    def write_frame(self, frame: bytes) -> bool:
        """Write `frame` to the connection now; False when it is not open.

        Never waits: a client that reads slower than it is written to accumulates a
        buffer, and past MAX_BUFFERED_BYTES its connection is aborted.
        """
        if (
            self.close_sent
            or self.disconnected
            or self.conn.state is not State.OPEN
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frame)
        if self.transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            logger.warning("dropping a websocket that does not read its messages")
            self.transport.abort()
        return True
