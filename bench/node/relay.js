// The Node peer of bench/node_peer.py: the least a socket.io server must do for the
// benchmark's clients and publisher to work unchanged, so the head can be compared with it.
//
//   PORT=0 node bench/node/relay.js      prints "listening <port>" once it accepts
//
// - Socket.IO (socket.io 4, default options): `workspace:join {workspaceId}` joins the room
//   `workspace:<id>` and answers `workspace:joined {workspaceId, role: "owner"}`. No cookie
//   check, no MongoDB lookup, no per-socket session, no event history: the head does all of
//   these, so they are part of what the comparison measures.
// - POST /internal/events {workspaceId, event, payload}: emits `payload` to the room and
//   answers 202, the head's publish endpoint minus its bearer check and payload validation.
// - GET /readyz: 200 once listening.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const MAX_BODY_BYTES = 1 << 20;

function reply(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function readJson(req, done) {
  const parts = [];
  let size = 0;
  req.on("data", (part) => {
    size += part.length;
    if (size > MAX_BODY_BYTES) req.destroy();
    else parts.push(part);
  });
  req.on("end", () => {
    try {
      done(null, JSON.parse(Buffer.concat(parts).toString("utf8")));
    } catch (err) {
      done(err);
    }
  });
}

function publish(io, req, res) {
  readJson(req, (err, body) => {
    if (err || typeof body?.workspaceId !== "string" || typeof body?.event !== "string") {
      reply(res, 422, { detail: "expected {workspaceId, event, payload}" });
      return;
    }
    io.to(`workspace:${body.workspaceId}`).emit(body.event, body.payload ?? {});
    reply(res, 202, { status: "accepted" });
  });
}

function onConnection(socket) {
  socket.on("workspace:join", (data) => {
    const workspaceId = data?.workspaceId;
    if (typeof workspaceId !== "string" || workspaceId === "") {
      socket.emit("error", { message: "Invalid request: expected {workspaceId: string}" });
      return;
    }
    socket.join(`workspace:${workspaceId}`);
    socket.emit("workspace:joined", { workspaceId, role: "owner" });
  });
}

function main() {
  // Socket.IO answers its own path first; every other request reaches this handler.
  const server = http.createServer((req, res) => {
    if (req.method === "POST" && req.url === "/internal/events") publish(io, req, res);
    else if (req.method === "GET" && req.url === "/readyz") reply(res, 200, { status: "ok" });
    else reply(res, 404, { detail: "not found" });
  });
  const io = new Server(server);
  io.on("connection", onConnection);
  server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
    console.log(`listening ${server.address().port}`);
  });
  process.on("SIGTERM", () => process.exit(0));
}

main();
