"""Fan-out of Socket.IO events to websockets: encoded once per room, written to each socket
without a task, a queue or a framing of its own.

Where a delivery's CPU goes on python-socketio's own path (py-spy on a head serving 500
Node socket.io-client websockets in one room, bench/node_peer.py; shares of the head's
samples, steady phase / burst):
- ~50%: python-engineio's writer task of each socket: its queue and `wait_for` (a task
  per wait; 18%), and uvicorn's ASGI `websocket.send`: the `websockets` library framing
  the message again for every socket (Frame.serialize, 8-12%), compressing it with the
  socket's own per-message-deflate context (7-9%), and the socket write itself (16-22%);
- ~25%: python-socketio's `AsyncManager.emit`: a task per socket (`create_task`, then
  `asyncio.wait` on them all), each waking that socket's writer task;
- ~30%: the publish request (FastAPI, its middleware, the history), 5% of it a thread hop
  for a synchronous dependency (`head.deps`).
The Socket.IO encoding is done once per emit already; the cost is everything after it,
per socket. Per-message deflate also holds 46 KiB of zlib state per connection, half of
the head's memory per connection (tracemalloc). On the path below, the socket write is
most of what is left (60% of the head's samples), then the publish request.

What this module does instead, for every websocket (the browser's progress page connects
with one; socket.io-client's default, polling first, upgrades to one):
- `DirectWebSocket` is python-engineio's websocket driver class for the head (engineio
  creates one per websocket request through its driver table, `eio._async["websocket"]`).
  It serves the Engine.IO session itself, as engineio's `_websocket_handler` would (the
  upgrade handshake when the socket began with polling, then the client's packets), minus
  the writer task: the socket's queue becomes a `DirectQueue` that frames and writes each
  packet engineio sends (OPEN, CONNECT, pings, replies, CLOSE) as it is sent, after what
  was already queued. The socket is registered in `Wires` under its Engine.IO sid while
  the websocket is open.
- `FanoutManager` (python-socketio's documented seam: a client manager subclassing
  `AsyncManager`; `FanoutRedisManager` is the same over `AsyncRedisManager`) encodes an
  event once, frames it once, and writes that frame to every registered websocket in the
  room in one loop (`head.ws_transport.FrameSinkProtocol.write_frame`, which never waits);
  other participants (polling clients, a socket in the middle of its upgrade, a server
  without the frame sink) take python-socketio's ordinary path, unchanged.
Order holds because every packet to a registered websocket, from engineio or from the
manager, is written synchronously at the moment it is sent, and a socket is registered
only once what engineio had queued for it is written: there is no second queue to
overtake. (engine.io clients send UPGRADE once their last poll has returned, so no poll
holds packets then either.) The room membership read at the
moment of the emit decides who gets an event, as in python-socketio: a socket that left
or was revoked is no longer a participant.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from typing import Any

import engineio
import socketio
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers.asgi import WebSocket
from socketio import packet as sio_packet

from head.ws_transport import FRAME_SINK_EXTENSION, FrameSink, encode_frame

logger = logging.getLogger(__name__)


class Wires:
    """The frame sink of each Engine.IO session served by `DirectWebSocket`, by its sid."""

    def __init__(self) -> None:
        self._sinks: dict[str, FrameSink] = {}

    def add(self, eio_sid: str, sink: FrameSink) -> None:
        self._sinks[eio_sid] = sink

    def discard(self, eio_sid: str) -> None:
        self._sinks.pop(eio_sid, None)

    def get(self, eio_sid: str) -> FrameSink | None:
        return self._sinks.get(eio_sid)

    def __len__(self) -> int:
        return len(self._sinks)


class DirectQueue:
    """Stands in for python-engineio's per-socket queue on a `DirectWebSocket` session.

    engineio sends every packet with `await socket.queue.put(packet)`; here that frames the
    packet and writes it at once, so nothing waits in a queue for a writer task. After a
    CLOSE packet the websocket is closed too (engineio's writer would do it on its next
    wake). `join` (engineio's wait for the writer to drain) returns at once: nothing waits.
    """

    def __init__(self, sink: FrameSink, close: Any) -> None:
        self._sink = sink
        self._close = close

    async def put(self, pkt: eio_packet.Packet | None) -> None:
        if pkt is None:  # engineio's "writer, stop" marker: there is no writer
            return
        encoded = pkt.encode()
        payload = encoded if isinstance(encoded, bytes) else encoded.encode()
        self._sink.write_frame(encode_frame(payload, text=not isinstance(encoded, bytes)))
        if pkt.packet_type == eio_packet.CLOSE:
            await self._close()

    def put_nowait(self, pkt: eio_packet.Packet | None) -> None:
        if pkt is not None:
            raise RuntimeError("DirectQueue.put_nowait: engineio sends with `await put`")

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0

    def task_done(self) -> None:
        return None

    async def join(self) -> None:
        return None


class DirectWebSocket(WebSocket):
    """python-engineio's ASGI websocket driver, serving Engine.IO websocket sessions itself.

    engineio calls `DirectWebSocket(handler, server)(environ)` for every websocket request,
    `handler` being the Engine.IO socket's `_websocket_handler`; what follows does what that
    handler does (the upgrade handshake of a socket that began with polling, then reading
    the client's packets), without its writer task. A request without a frame sink comes
    from a server that offers none and gets engineio's own handler.
    """

    def __init__(self, wires: Wires, handler: Any, server: engineio.AsyncServer) -> None:
        super().__init__(handler, server)
        self._wires = wires
        self._server = server

    async def __call__(self, environ: dict[str, Any]) -> str:
        socket = getattr(self.handler, "__self__", None)
        scope = environ.get("asgi.scope", {})
        sink = scope.get("extensions", {}).get(FRAME_SINK_EXTENSION)
        if sink is None or socket is None:
            return str(await super().__call__(environ))
        self.asgi_receive = environ["asgi.receive"]
        self.asgi_send = environ["asgi.send"]
        # A websocket request has no body: the body reader engineio made for it (a class of
        # its own per request, 2.5 KiB) would live as long as the session's environ.
        environ.pop("wsgi.input", None)
        await self.asgi_send({"type": "websocket.accept"})
        if not socket.connected or await self._upgrade(socket):
            await self._serve(socket, sink)
        return ""

    async def _upgrade(self, socket: Any) -> bool:
        """engineio's upgrade handshake: the client's probe answered, its pending poll
        ended (with a NOOP, as engineio does), then its UPGRADE. Meanwhile engineio answers
        polls with NOOP (`upgrading`) and packets wait in the socket's queue."""
        socket.upgrading = True
        try:
            probe = await self._next_packet()
            if probe is None or (probe.packet_type, probe.data) != (eio_packet.PING, "probe"):
                return False
            await self.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
            await socket.queue.put(eio_packet.Packet(eio_packet.NOOP))
            upgrade = await self._next_packet()
            return upgrade is not None and upgrade.packet_type == eio_packet.UPGRADE
        finally:
            socket.upgrading = False

    async def _serve(self, socket: Any, sink: FrameSink) -> None:
        """The session: engineio's packets written as sent, the client's read in order.

        What waits in engineio's queue (the OPEN packet of a websocket-first session; what
        was sent during an upgrade) is written first, in order, before anything else can be.
        """
        queue = socket.queue
        socket.queue = DirectQueue(sink, self.close)
        for pkt in list(_drained(queue)):
            await socket.queue.put(pkt)
        socket.connected = socket.upgraded = True
        self._wires.add(socket.sid, sink)
        try:
            await self._read(socket)
        finally:
            self._wires.discard(socket.sid)
            reason = self._server.reason.TRANSPORT_CLOSE
            await socket.close(wait=False, abort=True, reason=reason)
            await self.close()

    async def _next_packet(self) -> eio_packet.Packet | None:
        """The client's next packet; None when it goes, stays silent past a ping cycle
        (engineio's own bound), or sends what is not a packet."""
        server = self._server
        try:
            async with asyncio.timeout(server.ping_interval + server.ping_timeout):
                data = await self.wait()
        except (TimeoutError, OSError):
            return None
        if len(data) > server.max_http_buffer_size:
            return None
        try:
            return eio_packet.Packet(encoded_packet=data)
        except (ValueError, IndexError):
            return None

    async def _read(self, socket: Any) -> None:
        """Hand each client packet to engineio, one at a time, until the client goes."""
        while (pkt := await self._next_packet()) is not None:
            try:
                await socket.receive(pkt)
            except eio_exceptions.UnknownPacketError:
                continue
            except eio_exceptions.SocketIsClosedError:
                return


def _drained(queue: asyncio.Queue[Any]) -> Iterable[Any]:
    while not queue.empty():
        item = queue.get_nowait()
        queue.task_done()
        yield item


def install_direct_websockets(eio: engineio.AsyncServer, wires: Wires) -> None:
    """Make `eio` serve websocket-first sessions with `DirectWebSocket`.

    python-engineio picks the class that serves a websocket request from its async
    driver's table, which this server copies and changes (no other server is affected).
    """
    eio._async = {**eio._async, "websocket": functools.partial(DirectWebSocket, wires)}


def _arguments(data: Any) -> list[Any]:
    """An emit's `data` as the event's argument list, as python-socketio makes it."""
    if isinstance(data, tuple):
        return list(data)
    return [] if data is None else [data]


class FanoutManager(socketio.AsyncManager):
    """python-socketio's in-memory client manager, with `emit` writing one frame to many
    websockets (see the module docstring); everything else is `AsyncManager`'s."""

    def __init__(self, wires: Wires | None = None) -> None:
        super().__init__()
        self.wires = wires if wires is not None else Wires()
        # deliveries of emitted events by path: one frame written to a registered
        # websocket, or python-socketio's ordinary send (polling, upgraded, closing)
        self.direct_deliveries = 0
        self.ordinary_deliveries = 0

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if callback is not None or namespace not in self.rooms:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid,
                               callback=callback, **kwargs)  # fmt: skip
            return
        sio_pkt = self.server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=[event, *_arguments(data)]
        )
        encoded = sio_pkt.encode()
        if isinstance(encoded, list):  # binary attachments: packets of their own
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, **kwargs)
            return
        eio_pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        frame = encode_frame(eio_pkt.encode().encode(), text=True)
        skipped = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        ordinary = []
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skipped:
                continue
            sink = self.wires.get(eio_sid)
            if sink is not None and sink.write_frame(frame):
                self.direct_deliveries += 1
            else:
                ordinary.append(eio_sid)
        self.ordinary_deliveries += len(ordinary)
        for eio_sid in ordinary:
            await self.server._send_eio_packet(eio_sid, eio_pkt)


class FanoutRedisManager(socketio.AsyncRedisManager, FanoutManager):
    """python-socketio's Redis manager (rooms shared by several heads) whose local delivery
    is `FanoutManager.emit`: `AsyncPubSubManager` delivers on this head through `super()`,
    which this class's MRO resolves to `FanoutManager` before `AsyncManager`."""

    def __init__(self, url: str, *, wires: Wires, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.wires = wires
