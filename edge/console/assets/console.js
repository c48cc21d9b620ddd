// The edgetables console: reads the node's HTTP API with the token kept in
// sessionStorage, and draws what the token lets it see.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const TOKEN = "edgetables.token";
  const POLL_MS = 2000;
  let scopes = null;       // the token's scopes, once known
  let tables = [];         // /v1/tables
  let history = [];        // /v1/history points
  let browseNext = null;   // the listing's next page
  let timer = null;

  // A failed call: status and the API's {"error", "code"}.
  class APIError extends Error {
    constructor(status, body) {
      super((body && body.error) || ("HTTP " + status));
      this.status = status;
      this.code = body && body.code;
    }
  }

  async function api(path, opts) {
    opts = opts || {};
    const headers = Object.assign({}, opts.headers || {});
    const tok = sessionStorage.getItem(TOKEN);
    if (tok) headers.Authorization = "Bearer " + tok;
    const resp = await fetch(path, Object.assign({}, opts, { headers: headers, cache: "no-store" }));
    let body = null;
    try { body = await resp.json(); } catch (e) { /* not JSON */ }
    if (resp.status === 401) { askToken(tok ? "The token was refused." : "This node asks for a bearer token."); }
    if (!resp.ok) throw new APIError(resp.status, body);
    return { body: body, headers: resp.headers };
  }

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k instanceof Node ? k : String(k));
    return e;
  }

  function can(s) { return scopes !== null && scopes.includes(s); }
  function showError(msg) { const e = $("error"); e.textContent = msg || ""; e.hidden = !msg; }

  function askToken(why) {
    stop();
    $("login-why").textContent = why;
    $("login").hidden = false;
    $("main").hidden = true;
    $("login-token").focus();
  }

  function stop() { if (timer) { clearInterval(timer); timer = null; } }

  async function start() {
    stop();
    showError("");
    try {
      scopes = (await api("/v1/scopes")).body.scopes;
    } catch (e) {
      if (e.status !== 401) showError("scopes: " + e.message);
      return;
    }
    $("login").hidden = true;
    $("main").hidden = false;
    $("scopes").textContent = sessionStorage.getItem(TOKEN) ? "token: " + scopes.join(", ") : "";
    $("token-button").hidden = !sessionStorage.getItem(TOKEN) && scopes.includes("admin");
    await loadTables();
    setupEdit();
    await refresh();
    timer = setInterval(refresh, POLL_MS);
    runFragment();
  }

  async function refresh() {
    await Promise.all([loadStatus(), loadHistory()]);
  }

  // ---- cluster and partitions (GET /v1/status, scope admin)

  async function loadStatus() {
    if (!can("admin")) {
      $("cluster-note").textContent = "The cluster view needs a token with the admin scope.";
      $("partitions").hidden = true;
      return;
    }
    let st;
    try { st = (await api("/v1/status")).body; } catch (e) { $("cluster-note").textContent = "status: " + e.message; return; }
    $("partitions").hidden = false;
    $("node").textContent = "node " + st.node;
    const ready = $("ready");
    ready.textContent = st.ready ? "ready" : "not ready";
    ready.className = "badge " + (st.ready ? "ok" : "bad");
    ready.title = (st.not_ready || []).join("\n");
    // Every member's partitions (applied offset, lag, recovery of each
    // partition on its active owner); without it, this node's only.
    let nodes = null;
    if (st.cluster) {
      try { nodes = (await api("/v1/cluster/partitions")).body.nodes; } catch (e) { nodes = null; }
    }
    drawCluster(st, nodes);
  }

  function drawCluster(st, nodes) {
    const cs = st.cluster;
    const here = {};
    for (const p of st.partitions || []) here[p.partition] = p;
    // onOwner[p]: partition p as its active owner reports it.
    const onOwner = {}, unreachable = {};
    for (const [node, np] of Object.entries(nodes || {})) {
      if (np.error) unreachable[node] = np.error;
      for (const ps of np.partitions || []) {
        if (cs && (cs.assignment.actives || [])[ps.partition] === node) onOwner[ps.partition] = ps;
      }
    }
    const members = $("members");
    members.replaceChildren();
    let nparts = 0, actives = [], standbys = [], serving = {};
    if (cs) {
      $("cluster-note").textContent = "leader " + (cs.leader || "none") + " · generation " + cs.generation +
        (cs.applied_generation !== cs.generation ? " (this node applied " + cs.applied_generation + ")" : "") +
        " · " + cs.members.length + " members";
      nparts = cs.assignment.partitions;
      actives = cs.assignment.actives || [];
      standbys = cs.assignment.standbys || [];
      for (const m of cs.members) {
        for (const p of m.actives || []) serving[p] = m.node;
        const name = m.http ? el("a", { href: location.protocol + "//" + m.http + "/" }, m.node) : m.node;
        members.append(el("div", { class: "card member" + (m.node === cs.leader ? " leader" : ""), "data-node": m.node },
          el("b", {}, name, m.node === cs.leader ? " ★" : "", m.node === st.node ? " (this node)" : ""),
          el("span", { class: "muted" }, (m.actives || []).length + " active · " + (m.standbys || []).length + " standby · gen " + m.generation +
            (unreachable[m.node] ? " · not answering" : ""))));
      }
    } else {
      $("cluster-note").textContent = "single node · generation " + st.generation;
      nparts = (st.partitions || []).length;
      for (const p of st.partitions || []) { actives[p.partition] = st.node; if (p.state === "active") serving[p.partition] = st.node; }
      members.append(el("div", { class: "card member leader", "data-node": st.node }, el("b", {}, st.node), el("span", { class: "muted" }, nparts + " partitions")));
    }
    const body = $("partitions").tBodies[0];
    body.replaceChildren();
    for (let p = 0; p < nparts; p++) {
      const h = here[p];
      const o = onOwner[p] || (actives[p] === st.node ? h : null);
      const moving = serving[p] !== actives[p];
      const active = actives[p] || "—";
      body.append(el("tr", { class: moving ? "moving" : "", "data-partition": p },
        el("td", {}, p),
        el("td", { class: "active" }, active, moving ? " (taking over)" : ""),
        el("td", {}, (standbys[p] || []).join(", ") || "—"),
        el("td", { class: h ? "state-" + h.state : "muted" }, h ? h.state : "—"),
        el("td", { class: "applied" }, o ? o.applied_offset : h ? h.applied_offset : ""),
        el("td", { class: "lag" }, o ? Math.max(0, o.high_water - o.applied_offset) : h ? Math.max(0, h.high_water - h.applied_offset) : ""),
        el("td", {}, o ? recovery(o) : h ? recovery(h) : "")));
    }
  }

  function recovery(p) {
    const r = p.recovery;
    if (!r) return "";
    if (r.ended && !r.ended.startsWith("0001")) return el("span", { class: "muted" }, (r.standby ? "caught up" : "recovered") + " · " + r.records + " records");
    const span = Math.max(1, r.high_water - r.from + 1);
    const done = Math.min(1, Math.max(0, (r.applied - r.from + 1) / span));
    const bar = el("span", { class: "bar", title: r.phase }, el("i"));
    bar.firstChild.style.width = (done * 100).toFixed(0) + "%";
    return el("span", {}, bar, " " + (done * 100).toFixed(0) + "% ", r.eta_s ? "ETA " + fmtSeconds(r.eta_s) : r.phase);
  }

  function fmtSeconds(s) { return s < 90 ? Math.round(s) + " s" : s < 5400 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h"; }

  // ---- charts (GET /v1/history, scope metrics)

  async function loadHistory() {
    if (!can("metrics")) { $("charts-note").textContent = "The charts need a token with the metrics scope."; return; }
    const since = history.length ? "?since=" + encodeURIComponent(history[history.length - 1].t) : "";
    let h;
    try { h = (await api("/v1/history" + since)).body; } catch (e) {
      $("charts-note").textContent = e.status === 404 ? "No history on this node." : "history: " + e.message;
      return;
    }
    history = history.concat(h.points).slice(-h.size);
    const span = history.length * h.interval_s;
    $("charts-note").textContent = "One point every " + h.interval_s + " s: the last " + (span < 120 ? Math.round(span) + " s" : Math.round(span / 60) + " min") + " (at most " + Math.round(h.size * h.interval_s / 60) + " min).";
    chart("chart-events", "now-events", history.map((p) => p.events_per_s), 0);
    chart("chart-dead", "now-dead", history.map((p) => p.dead_letters / h.interval_s), 0);
    chart("chart-commit", "now-commit", history.map((p) => p.commit_ms === undefined ? null : p.commit_ms), 1);
  }

  function chart(id, nowID, ys, digits) {
    const svg = $(id), W = 300, H = 80, n = ys.length;
    const max = Math.max(1e-9, ...ys.filter((y) => y !== null));
    svg.replaceChildren();
    const ns = "http://www.w3.org/2000/svg";
    let pts = [];
    const flush = () => {
      if (pts.length) { const l = document.createElementNS(ns, "polyline"); l.setAttribute("points", pts.join(" ")); svg.append(l); }
      pts = [];
    };
    ys.forEach((y, i) => {
      if (y === null) { flush(); return; }
      const x = n > 1 ? (i / (n - 1)) * W : W;
      pts.push(x.toFixed(1) + "," + (H - 4 - (y / max) * (H - 8)).toFixed(1));
    });
    flush();
    const t = document.createElementNS(ns, "title");
    t.textContent = "max " + max.toFixed(digits);
    svg.append(t);
    const last = ys.filter((y) => y !== null).pop();
    $(nowID).textContent = (last === undefined ? "–" : last.toFixed(digits)) + " (max " + max.toFixed(digits) + ")";
  }

  // ---- tables (GET /v1/tables, scope read)

  async function loadTables() {
    try { tables = (await api("/v1/tables")).body.tables; } catch (e) { showError("tables: " + e.message); return; }
    const body = $("tables").tBodies[0];
    body.replaceChildren();
    for (const t of tables) {
      const kind = t.global ? "global" : (t.spec && t.spec.window ? "windowed" : "partitioned");
      body.append(el("tr", { class: "clickable", "data-table": t.name, onclick: () => pick(t.name) },
        el("td", {}, t.name), el("td", {}, kind), el("td", { class: "keys", title: t.keys_error || "" }, t.keys_error ? "?" : t.keys), el("td", {}, t.global ? "—" : t.partitions)));
    }
    for (const id of ["lookup-table", "browse-table"]) fillSelect($(id), tables);
    if ($("edit-table")) fillSelect($("edit-table"), tables.filter((t) => t.global));
  }

  function fillSelect(sel, ts) {
    const cur = sel.value;
    sel.replaceChildren(...ts.map((t) => el("option", { value: t.name }, t.name)));
    if (ts.some((t) => t.name === cur)) sel.value = cur;
  }

  function pick(name) {
    $("lookup-table").value = name;
    $("browse-table").value = name;
    $("lookup-key").focus();
  }

  async function lookup(table, key) {
    const out = $("lookup-result");
    out.replaceChildren(el("span", { class: "muted" }, "…"));
    const path = "/v1/tables/" + encodeURIComponent(table) + "/keys/" + encodeURIComponent(key);
    try {
      let r = (await api(path)).body;
      if (r.window) r = (await api(path + "?window=all")).body; // every open window
      out.replaceChildren(renderEntry(r));
    } catch (e) {
      out.replaceChildren(el("span", { class: "error lookup-error", "data-code": e.code || "" }, e.message));
    }
  }

  function renderEntry(r) {
    const t = el("table", { class: "entry" });
    t.append(el("tr", {}, el("th", {}, "key"), el("td", { class: "key" }, r.key)));
    if (r.partition !== undefined) t.append(el("tr", {}, el("th", {}, "partition"), el("td", { class: "partition" }, r.partition)));
    if (r.windows) {
      for (const w of r.windows) {
        t.append(el("tr", { class: "window" }, el("th", {}, w.start + " → " + w.end), el("td", { class: "value" }, JSON.stringify(w.value, null, 1))));
      }
    } else {
      t.append(el("tr", {}, el("th", {}, "value"), el("td", { class: "value" }, JSON.stringify(r.value, null, 1))));
    }
    return t;
  }

  async function browse(more) {
    const table = $("browse-table").value;
    const q = new URLSearchParams({ limit: "50" });
    const prefix = $("browse-prefix").value;
    if (prefix) q.set("prefix", prefix);
    if (more && browseNext) q.set("after", browseNext);
    const body = $("browse").tBodies[0];
    if (!more) body.replaceChildren();
    let r;
    try { r = (await api("/v1/tables/" + encodeURIComponent(table) + "/keys?" + q)).body; } catch (e) {
      body.append(el("tr", {}, el("td", { colspan: 4, class: "error" }, e.message)));
      return;
    }
    const global = tables.some((t) => t.name === table && t.global);
    for (const e of r.entries) {
      const edit = global && can("write") ? el("button", { type: "button", class: "small edit-button", onclick: () => editKey(table, e) }, "edit") : "";
      body.append(el("tr", { "data-key": e.key }, el("td", { class: "key" }, e.key), el("td", { class: "value" }, JSON.stringify(e.value)),
        el("td", {}, e.partition === undefined ? "" : e.partition), el("td", {}, edit)));
    }
    browseNext = r.next || null;
    $("browse-more").hidden = !browseNext;
  }

  // ---- writes of global tables (PUT/DELETE, scope write)

  // The edit controls are on the page only with the write scope and a
  // global table.
  function setupEdit() {
    const edit = $("edit");
    const globals = tables.filter((t) => t.global);
    if (!can("write") || !globals.length) { edit.replaceChildren(); edit.hidden = true; return; }
    if (!$("edit-form")) {
      edit.replaceChildren($("edit-template").content.cloneNode(true));
      $("edit-form").addEventListener("submit", (ev) => { ev.preventDefault(); write("PUT"); });
      $("edit-delete").addEventListener("click", () => write("DELETE"));
    }
    fillSelect($("edit-table"), globals);
    edit.hidden = false;
  }

  function editKey(table, e) {
    $("edit-table").value = table;
    $("edit-key").value = e.key;
    $("edit-value").value = JSON.stringify(e.value);
    $("edit-value").focus();
  }

  async function write(method) {
    const table = $("edit-table").value, key = $("edit-key").value;
    const res = $("edit-result");
    if (!key) { res.textContent = "a key, please"; return; }
    const opts = { method: method };
    if (method === "PUT") {
      try { JSON.parse($("edit-value").value); } catch (e) { res.textContent = "not JSON: " + e.message; return; }
      opts.body = $("edit-value").value;
      opts.headers = { "Content-Type": "application/json" };
    }
    try {
      const r = (await api("/v1/tables/" + encodeURIComponent(table) + "/keys/" + encodeURIComponent(key), opts)).body;
      res.textContent = (method === "PUT" ? "saved" : "deleted") + " " + table + "/" + key + (r && r.revision ? " (revision " + r.revision + ")" : "");
      loadTables();
    } catch (e) { res.textContent = method + ": " + e.message; }
  }

  // #lookup=TABLE/KEY looks a key up on load (links, and tests without input).
  function runFragment() {
    const m = /^#lookup=([^/]+)\/(.*)$/.exec(location.hash);
    if (!m) return;
    const table = decodeURIComponent(m[1]), key = decodeURIComponent(m[2]);
    $("lookup-table").value = table;
    $("lookup-key").value = key;
    lookup(table, key);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const tok = $("login-token").value.trim();
      if (tok) sessionStorage.setItem(TOKEN, tok); else sessionStorage.removeItem(TOKEN);
      $("login-token").value = "";
      start();
    });
    $("token-button").addEventListener("click", () => { sessionStorage.removeItem(TOKEN); askToken("Give another token."); });
    $("lookup-form").addEventListener("submit", (ev) => { ev.preventDefault(); lookup($("lookup-table").value, $("lookup-key").value); });
    $("browse-form").addEventListener("submit", (ev) => { ev.preventDefault(); browseNext = null; browse(false); });
    $("browse-more").addEventListener("click", () => browse(true));
    window.addEventListener("hashchange", runFragment);
    setInterval(() => { if (timer) loadTables(); }, 15000);
    start();
  });
})();
