// The workspace progress page (spec 05 client behaviour, with exact resume).
// Connect with the session cookie, join the room with `since: {epoch, seq}`, show events
// optimistically, and refetch the state from the REST API on every (re)connect and on
// index:ready / index:failed. window.indexerPage exposes what the tests check.
(function () {
  "use strict";
  const workspaceId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
  const STALL_MS = 15000; // three 5 s throttle intervals
  const PHASES = ["fetch", "render", "analyze", "embed"];
  const $ = (id) => document.getElementById(id);
  const page = (window.indexerPage = {
    epoch: null, seq: 0, gaps: 0, events: [], barValues: [], state: null, lastUpdate: 0,
    runMax: 0,
  });

  // The status line of the screens that replace the progress (never left at "loading…").
  const STATUS_OF = {
    signin: "sign-in required", noaccess: "no access", notfound: "not found",
    expired: "session expired",
  };

  function show(id, visible) { $(id).hidden = !visible; }

  function message(kind, text) {
    $("app").dataset.state = kind;
    $("app").setAttribute("aria-busy", "false");
    $("status").textContent = STATUS_OF[kind];
    $("message").textContent = text;
    show("message", true);
    for (const id of ["progress", "failures", "search"]) show(id, false);
  }

  // What keeps the page from being live or current (the socket, the state, a start), shown
  // beside the status; null clears it.
  function problem(text) {
    $("problem").textContent = text || "";
    show("problem", Boolean(text));
    if (text && $("app").dataset.state === "loading") {
      $("app").setAttribute("aria-busy", "false");
      $("status").textContent = "unavailable";
    }
  }

  async function detailOf(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return `${response.status}: ${body.detail}`;
    } catch (err) { /* not JSON */ }
    return `HTTP ${response.status}`;
  }

  async function refetch() {
    let response;
    try {
      response = await fetch(`/api/workspaces/${encodeURIComponent(workspaceId)}`, { credentials: "include" });
    } catch (err) {
      // offline: the socket's reconnect will refetch
      return problem("Cannot reach the indexer: the state shown may be out of date.");
    }
    if (response.status === 401) return message("signin", "Sign in required: your session is missing or expired.");
    if (response.status === 403) return message("noaccess", "No access: you are not a member of this workspace.");
    if (response.status === 404) return message("notfound", "This workspace does not exist.");
    if (!response.ok) return problem(`The workspace's state is unavailable (${await detailOf(response)}).`);
    applyState(await response.json());
  }

  function applyState(state) {
    page.state = state;
    $("app").dataset.state = state.indexStatus;
    $("app").setAttribute("aria-busy", "false");
    show("message", false);
    show("progress", true);
    show("search", state.indexStatus === "ready");
    $("name").textContent = state.name;
    $("status").textContent = state.indexStatus;
    show("start", state.role === "owner" && !["queued", "indexing"].includes(state.indexStatus));
    const progress = state.indexProgress || {};
    if (!["queued", "indexing"].includes(state.indexStatus)) page.runMax = 0;
    renderProgress(progress);
    renderFailures(state.failedDocuments || []);
  }

  function renderProgress(progress) {
    page.lastUpdate = Date.now();
    show("stalled", false);
    const total = progress.pagesTotal || 0;
    // optimistic display never moves backwards within a run; the server state is the truth
    // within a run the bar only moves forward, whichever arrives first: an event or a refetch
    const done = Math.max(page.runMax, progress.pagesDone || 0);
    page.runMax = Math.max(page.runMax, done);
    $("phase").textContent = progress.phase || "–";
    $("docs").textContent = `${progress.docsDone || 0} / ${progress.docsTotal || 0}`;
    $("pages").textContent = `${done} / ${total}`;
    $("bar").max = Math.max(total, 1);
    $("bar").value = done;
    page.barValues.push(done);
    $("rate").textContent = progress.pagesPerSecond != null ? Number(progress.pagesPerSecond).toFixed(1) : "–";
    $("eta").textContent = progress.etaSeconds != null ? `${Math.round(progress.etaSeconds)} s` : "–";
    const counts = progress.phases || {};
    $("phase-bars").replaceChildren(...PHASES.map((name) => {
      const row = document.createElement("tr");
      const label = document.createElement("td");
      label.textContent = name;
      const cell = document.createElement("td");
      const bar = document.createElement("progress");
      const max = name === "fetch" ? Math.max(progress.docsTotal || 0, 1) : Math.max(total, 1);
      bar.max = max;
      bar.value = counts[name] || 0;
      bar.setAttribute("aria-label", `${name} progress`);
      cell.append(bar);
      row.append(label, cell);
      return row;
    }));
  }

  function renderFailures(failed) {
    show("failures", failed.length > 0);
    $("failed-list").replaceChildren(...failed.map((doc) => {
      const item = document.createElement("li");
      item.textContent = `${doc.filename}: ${doc.error}`;
      return item;
    }));
  }

  // Apply one index event exactly once, in order; a gap or a new epoch means refetch.
  function onIndexEvent(name, data) {
    if (data.epoch !== page.epoch) {
      page.epoch = data.epoch;
      page.seq = data.seq;
      refetch();
    } else if (data.seq <= page.seq) {
      return; // already applied (replayed and live at once)
    } else {
      if (data.seq !== page.seq + 1) { page.gaps += 1; refetch(); }
      page.seq = data.seq;
    }
    page.events.push({ name, epoch: data.epoch, seq: data.seq });
    if (name === "index:started") {
      page.runMax = 0;
      $("status").textContent = "indexing";
      $("app").dataset.state = "indexing";
      show("start", false);
    } else if (name === "index:progress") {
      $("status").textContent = "indexing";
      renderProgress(data);
    } else {
      refetch(); // index:ready / index:failed: confirm from the source of truth
    }
  }

  // The Socket.IO client is a separate script: when it did not load, say why (the head
  // answers 503 with the reason when the npm package is missing) and show the state anyway.
  async function socketClientMissing() {
    let reason = "it did not load";
    try {
      const response = await fetch("/assets/socket.io.min.js", { cache: "no-store" });
      if (!response.ok) reason = await detailOf(response);
    } catch (err) { /* unreachable: keep the generic reason */ }
    problem(`Live updates unavailable: the Socket.IO client script failed (${reason}).`);
    $("connection").textContent = "no live updates";
  }

  refetch(); // the state does not wait for the socket, which may never connect
  if (typeof io !== "function") {
    socketClientMissing();
  } else {
    connectSocket();
  }

  function connectSocket() {
    const socket = io({ withCredentials: true, transports: ["websocket", "polling"] });
    page.socket = socket;
    socket.on("connect", () => {
      problem(null);
      $("connection").textContent = "connected";
      $("connection").className = "badge ok";
      const join = { workspaceId };
      if (page.epoch !== null) join.since = { epoch: page.epoch, seq: page.seq };
      socket.emit("workspace:join", join);
      refetch();
    });
    socket.on("disconnect", () => {
      $("connection").textContent = "offline";
      $("connection").className = "badge";
    });
    socket.on("connect_error", (err) => {
      if (err.message === "Authentication required") {
        socket.disconnect();
        message("signin", "Sign in required: your session is missing or expired.");
      } else if (socket.active) {
        problem(`Live updates unavailable: cannot connect to the indexer (${err.message}); retrying.`);
      } else {
        problem(`Live updates unavailable: the indexer refused the connection (${err.message}).`);
      }
    });
    socket.on("workspace:joined", (data) => {
      if (data.snapshot) applyState(Object.assign({}, page.state || {}, data.snapshot));
      if (page.epoch === null || data.refetch) {
        page.epoch = data.epoch;
        page.seq = data.seq;
        if (data.refetch) refetch();
      }
      for (const missed of data.missed || []) onIndexEvent(missed.event, missed.data);
    });
    socket.on("error", (data) => {
      if (data && data.message === "Access denied") {
        message("noaccess", "No access: you are not a member of this workspace.");
      }
    });
    socket.on("session:expired", (data) => {
      socket.disconnect();
      message("expired", data.message || "Session expired: sign in again.");
    });
    for (const name of ["index:started", "index:progress", "index:ready", "index:failed"]) {
      socket.on(name, (data) => onIndexEvent(name, data));
    }
  }

  setInterval(() => {
    const indexing = page.state && ["indexing", "queued"].includes($("status").textContent);
    show("stalled", Boolean(indexing && Date.now() - page.lastUpdate > STALL_MS));
  }, 1000);

  $("start").addEventListener("click", async () => {
    $("start").disabled = true;
    // JSON, as the head requires of every state-changing request (a form cannot send it)
    let response;
    try {
      response = await fetch(`/api/workspaces/${encodeURIComponent(workspaceId)}/index`, {
        method: "POST", credentials: "include",
        headers: { "Content-Type": "application/json" }, body: "{}",
      });
    } catch (err) {
      response = null;
    }
    $("start").disabled = false;
    if (response && response.ok) {
      problem(null);
      $("status").textContent = "queued";
      show("start", false);
    } else {
      problem(`Indexing did not start (${response ? await detailOf(response) : "the indexer is unreachable"}).`);
    }
  });

  $("search-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = $("q").value.trim();
    if (!q) return;
    const url = `/api/workspaces/${encodeURIComponent(workspaceId)}/search?q=${encodeURIComponent(q)}&k=10`;
    const response = await fetch(url, { credentials: "include" });
    if (!response.ok) return;
    const body = await response.json();
    $("concepts").replaceChildren(...body.concepts.map((c) => {
      const item = document.createElement("li");
      item.textContent = `${c.label} (${c.chunkCount})`;
      return item;
    }));
    $("results").replaceChildren(...body.results.map((hit) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/api/workspaces/${encodeURIComponent(workspaceId)}/documents/${hit.documentId}/pages/${hit.pageNo}/image`;
      link.textContent = `${hit.filename}, page ${hit.page}`;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = ` score ${hit.score.toFixed(3)}`;
      const snippet = document.createElement("p");
      snippet.textContent = hit.snippet;
      item.append(link, score, snippet);
      return item;
    }));
  });
})();
