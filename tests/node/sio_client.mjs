// The browser's Socket.IO library (socket.io-client@4) driven from node for tests.
// Usage: node sio_client.mjs URL COOKIE WORKSPACE_ID [TRANSPORTS]
// TRANSPORTS: comma-separated, in the order tried (default "polling,websocket": the
// library's own default, polling first, then an upgrade).
// Prints one JSON line per event it sees; exits after index:ready, index:failed,
// connect_error or an error event.
import { io } from "socket.io-client";

const [url, cookie, workspaceId, transports = "polling,websocket"] = process.argv.slice(2);
const socket = io(url, {
  withCredentials: true,
  extraHeaders: cookie ? { Cookie: cookie } : {},
  transports: transports.split(","),
  reconnection: false,
});
const print = (event, data) => process.stdout.write(JSON.stringify({ event, data }) + "\n");
const finish = (code) => { socket.close(); process.exit(code); };

socket.on("connect", () => {
  print("connect", null);
  socket.emit("workspace:join", { workspaceId });
});
socket.on("connect_error", (err) => { print("connect_error", { message: err.message }); finish(0); });
socket.on("workspace:joined", (data) => print("workspace:joined", data));
socket.on("error", (data) => { print("error", data); finish(0); });
for (const name of ["index:started", "index:progress"]) {
  socket.on(name, (data) => print(name, data));
}
for (const name of ["index:ready", "index:failed"]) {
  socket.on(name, (data) => { print(name, data); finish(0); });
}
setTimeout(() => { print("timeout", null); finish(1); }, 30000);
