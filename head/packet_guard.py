"""Closes an Engine.IO connection whose client sends a malformed packet, before the
Socket.IO libraries parse it.

python-engineio and python-socketio raise on malformed client input (an empty frame, a
packet type they do not know, broken JSON, an event without a name, binary attachments for
a namespace the socket never connected to) and python-engineio logs every such raise with
a traceback, at ERROR level whatever the logger settings, before it goes on reading: one
websocket that never even connects can fill the log. Like the Node.js server, which closes
a connection on a parse error, this middleware checks each packet a client sends (each
websocket frame, each packet of a polling POST) and ends the connection on the first bad
one: the websocket is closed (1002, protocol error), the POST gets 400. Polling POST bodies
are read here, at most `max_message_bytes` of them (413 above), so no transport buffers
more than one message.

What a client of this head may send: Engine.IO close, ping, pong, message, upgrade and
noop packets as text; in messages, Socket.IO CONNECT (with an auth object or none),
DISCONNECT, and EVENT with a name. The head asks clients for no acknowledgements and takes
no binary data, so ACK and binary packets are malformed here too.
"""

from __future__ import annotations

from socketio import packet as sio_packet
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ENGINEIO_PATH = "/socket.io/"
# Engine.IO packet types a client sends: close, ping, pong, message, upgrade, noop.
CLIENT_ENGINEIO_TYPES = frozenset("123456")
ENGINEIO_MESSAGE = "4"
PAYLOAD_SEPARATOR = "\x1e"
# python-engineio's own cap on the packets of one polling payload.
MAX_PAYLOAD_PACKETS = 16
CLIENT_SOCKETIO_TYPES = frozenset({sio_packet.CONNECT, sio_packet.DISCONNECT, sio_packet.EVENT})
WS_PROTOCOL_ERROR = 1002


def valid_engineio_packet(text: str) -> bool:
    """Whether one Engine.IO packet, as a client sends it, is one this head accepts."""
    if not text or text[0] not in CLIENT_ENGINEIO_TYPES:
        return False
    return text[0] != ENGINEIO_MESSAGE or valid_socketio_packet(text[1:])


def valid_socketio_packet(text: str) -> bool:
    """Whether a Socket.IO packet (an Engine.IO message's text) is one this head accepts."""
    try:
        decoded = sio_packet.Packet(encoded_packet=text)
    except (ValueError, TypeError, RecursionError):
        return False
    if decoded.attachment_count or decoded.packet_type not in CLIENT_SOCKETIO_TYPES:
        return False
    if decoded.packet_type == sio_packet.EVENT:
        data = decoded.data
        return isinstance(data, list) and bool(data) and isinstance(data[0], str)
    if decoded.packet_type == sio_packet.CONNECT:
        return decoded.data is None or isinstance(decoded.data, dict)
    return True


def valid_payload(body: bytes) -> bool:
    """Whether a polling POST body (packets joined by U+001E) holds only accepted packets."""
    if not body:
        return True
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    packets = text.split(PAYLOAD_SEPARATOR)
    return len(packets) <= MAX_PAYLOAD_PACKETS and all(map(valid_engineio_packet, packets))


class PacketGuardMiddleware:
    """ASGI middleware in front of the Socket.IO app; other paths pass through untouched."""

    def __init__(self, app: ASGIApp, *, max_message_bytes: int) -> None:
        self.app = app
        self._max_message_bytes = max_message_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not _engineio_path(scope["path"]):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await self.app(scope, _checked_frames(receive, send), send)
        elif scope["method"] == "POST":
            await self._polling_post(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _polling_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _bounded_body(scope, receive, self._max_message_bytes)
        if body is None:
            refusal = PlainTextResponse("Message too large", status_code=413)
        elif not valid_payload(body):
            refusal = PlainTextResponse("Malformed packet", status_code=400)
        else:
            await self.app(scope, _replayed(body, receive), send)
            return
        await refusal(scope, receive, send)


def _engineio_path(path: str) -> bool:
    # the test python-engineio's ASGIApp uses to route a request to the Engine.IO server
    return (path if path.endswith("/") else path + "/").startswith(ENGINEIO_PATH)


def _checked_frames(receive: Receive, send: Send) -> Receive:
    """`receive` that ends the connection at the first frame that is not an accepted
    packet: the client gets a close frame, python-engineio a disconnect (and cleans up)."""

    async def checked() -> Message:
        message = await receive()
        if message["type"] == "websocket.receive" and not _valid_frame(message):
            await send({"type": "websocket.close", "code": WS_PROTOCOL_ERROR})
            return {"type": "websocket.disconnect", "code": WS_PROTOCOL_ERROR}
        return message

    return checked


def _valid_frame(message: Message) -> bool:
    text = message.get("text")
    return isinstance(text, str) and valid_engineio_packet(text)


async def _bounded_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is (or announces) more than `limit` bytes; the
    rest of a body over the limit is never read. Ends early if the client goes away."""
    announced = Headers(scope=scope).get("content-length")
    if announced is not None and (not announced.isdigit() or int(announced) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replayed(body: bytes, receive: Receive) -> Receive:
    """`receive` that hands the already read body over once, then defers to the server."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
