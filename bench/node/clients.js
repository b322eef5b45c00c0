// The client process of bench/node_peer.py: N npm socket.io-client connections (the browser's
// library) over websocket in one process, all in one workspace room, counting deliveries.
//
//   node clients.js URLS WORKSPACE_ID CLIENTS WAVE     (cookie in BENCH_SESSION_COOKIE)
//
// Connects CLIENTS sockets (socket i to the i-th of the comma-separated URLS, round robin), WAVE at a time, then joins them to `workspace:WORKSPACE_ID` in
// waves of the same size, and prints `READY {connected, joined, joinMs}`. Then it reads
// commands on stdin, one a line:
//   PHASE NAME EVENTS   count `index:progress` events whose payload has `benchPhase: NAME`
//                       and `benchSeq` in [0, EVENTS) (others are ignored)
//   DONE NAME           the publisher sent them all: wait until every joined socket has
//                       each once (or GRACE_MS), print `RESULT {...}` for the phase
//   EXIT                disconnect every socket and exit
// Latency: `sentAt` (the publisher's time.time() just before its request, seconds) against
// this process's clock at receipt (performance.timeOrigin + now(), the same wall clock).
"use strict";

const { io } = require("socket.io-client");
const readline = require("node:readline");

const GRACE_MS = 30000;
const TIMEOUT_MS = 15000;

const [urlsArg, workspaceId, clientsArg, waveArg] = process.argv.slice(2);
const urls = urlsArg.split(",");
const cookie = process.env.BENCH_SESSION_COOKIE || "";
const clients = Number(clientsArg);
const wave = Number(waveArg);

const now = () => performance.timeOrigin + performance.now();
const print = (tag, body) => process.stdout.write(`${tag} ${JSON.stringify(body)}\n`);

function percentile(sorted, pct) {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.min(sorted.length, Math.round((pct / 100) * sorted.length + 0.5)));
  return sorted[rank - 1];
}

function summary(values) {
  const sorted = Float64Array.from(values).sort();
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: percentile(sorted, 100) };
}

// One phase's deliveries: a count per (socket, event), the latency of each first delivery.
class Phase {
  constructor(name, events, members) {
    this.name = name;
    this.events = events;
    this.members = members;
    this.counts = new Uint16Array(members * events);
    this.latencies = [];
    this.received = 0;
    // the order each socket got the events in (every socket must get the server's order),
    // and the head's history number (`seq`), which must only grow on each socket
    this.order = new Int32Array(members * events).fill(-1);
    this.position = new Int32Array(members);
    this.lastHistorySeq = new Float64Array(members).fill(-Infinity);
    this.historyBackwards = 0;
    this.firstSent = Infinity;
    this.lastReceived = 0;
    this.done = null;
  }

  record(member, data) {
    const at = now();
    const seq = data.benchSeq;
    if (data.benchPhase !== this.name || !(seq >= 0 && seq < this.events)) return;
    const slot = member * this.events + seq;
    this.counts[slot] += 1;
    if (this.counts[slot] !== 1) return;
    this.order[member * this.events + this.position[member]++] = seq;
    if (typeof data.seq === "number") {
      if (data.seq <= this.lastHistorySeq[member]) this.historyBackwards += 1;
      this.lastHistorySeq[member] = data.seq;
    }
    const sent = data.sentAt * 1000;
    this.latencies.push(at - sent);
    if (sent < this.firstSent) this.firstSent = sent;
    this.lastReceived = at;
    this.received += 1;
    if (this.received === this.members * this.events && this.done) this.done();
  }

  complete() {
    if (this.received === this.members * this.events) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, GRACE_MS);
      this.done = () => { clearTimeout(timer); resolve(); };
    });
  }

  // Sockets that got the events in another order than the first socket did.
  socketsOutOfOrder() {
    const first = this.order.subarray(0, this.events);
    let differ = 0;
    for (let member = 1; member < this.members; member += 1) {
      const order = this.order.subarray(member * this.events, (member + 1) * this.events);
      if (order.some((seq, i) => seq !== first[i])) differ += 1;
    }
    return differ;
  }

  result() {
    let missing = 0;
    let duplicates = 0;
    let deliveries = 0;
    for (const n of this.counts) {
      if (n === 0) missing += 1;
      else { deliveries += n; duplicates += n - 1; }
    }
    return {
      phase: this.name,
      outOfOrder: this.socketsOutOfOrder(),
      historyBackwards: this.historyBackwards,
      members: this.members,
      events: this.events,
      deliveries,
      expected: this.members * this.events,
      missing,
      duplicates,
      latencyMs: summary(this.latencies),
      spanS: Math.max(this.lastReceived - this.firstSent, 0) / 1000,
    };
  }
}

function connect(index) {
  return new Promise((resolve) => {
    const socket = io(urls[index % urls.length], {
      transports: ["websocket"],
      extraHeaders: cookie ? { Cookie: cookie } : {},
      reconnection: false,
      timeout: TIMEOUT_MS,
    });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", () => { socket.close(); resolve(null); });
  });
}

function join(socket) {
  return new Promise((resolve) => {
    const started = now();
    const timer = setTimeout(() => resolve(null), TIMEOUT_MS);
    socket.once("workspace:joined", () => { clearTimeout(timer); resolve(now() - started); });
    socket.once("error", () => { clearTimeout(timer); resolve(null); });
    socket.emit("workspace:join", { workspaceId });
  });
}

async function inWaves(items, fn) {
  const results = [];
  for (let start = 0; start < items.length; start += wave) {
    results.push(...(await Promise.all(items.slice(start, start + wave).map(fn))));
  }
  return results;
}

async function main() {
  const indexes = Array.from({ length: clients }, (_, i) => i);
  const sockets = (await inWaves(indexes, connect)).filter((s) => s !== null);
  const joins = await inWaves(sockets, join);
  const members = sockets.filter((_, i) => joins[i] !== null);
  let phase = null;
  members.forEach((socket, member) => {
    socket.on("index:progress", (data) => { if (phase) phase.record(member, data); });
  });
  print("READY", {
    clients,
    connected: sockets.length,
    joined: members.length,
    joinMs: summary(joins.filter((ms) => ms !== null)),
  });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [command, name, events] = line.trim().split(/\s+/);
    if (command === "PHASE") {
      phase = new Phase(name, Number(events), members.length);
      print("STARTED", { phase: name });
    } else if (command === "DONE" && phase && phase.name === name) {
      await phase.complete();
      print("RESULT", phase.result());
    } else if (command === "EXIT") {
      break;
    }
  }
  for (const socket of sockets) socket.close();
  process.exit(0);
}

main();
