// Cete dashboard. Plain JavaScript, no dependencies: it talks to the REST API of the node that
// served it (same origin, absolute /v1/... paths), so it works over HTTP, HTTPS and mTLS alike.
// Keys and values are user data: they only ever reach the page as textContent.
(function () {
  "use strict";

  const POLL_MS = 1000;
  const LEASE_POLL_MS = 3000;
  const TIMEOUT_MS = 5000;
  const VALUE_TIMEOUT_MS = 30000;
  const FEED_CAP = 200;
  const TEXT_SHOWN = 256 * 1024; // characters of a value shown as text
  const HEX_SHOWN = 64 * 1024; // bytes of a value shown as hex

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- helpers

  /** Builds an element: el("td", {className: "num"}, "42", child, ...). */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (name === "className" || name === "title" || name === "type" || name === "colSpan") node[name] = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const fmt = (n) => (n === undefined || n === null || n === "" ? "—" : String(n));
  const clock = (date) => (date || new Date()).toLocaleTimeString([], { hour12: false });
  const quoted = (text) => "\u201c" + text + "\u201d";
  const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");

  function showMsg(node, state, text, ...extra) {
    node.dataset.state = state;
    node.replaceChildren(text, ...extra);
    node.hidden = false;
  }

  function hideMsg(node) {
    node.hidden = true;
    node.replaceChildren();
  }

  /** Rebuilds `container` with `build()`, keeping keyboard focus on the same control. */
  function keepFocus(container, build) {
    const active = document.activeElement;
    const focusKey = active && container.contains(active) ? active.dataset.focusKey : undefined;
    build();
    if (focusKey === undefined) return;
    for (const candidate of container.querySelectorAll("[data-focus-key]")) {
      if (candidate.dataset.focusKey === focusKey) {
        candidate.focus();
        return;
      }
    }
  }

  // ------------------------------------------------------------------- HTTP

  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status; // 0: no answer at all
      this.body = body || {};
    }
  }

  async function errorFrom(response) {
    let body = {};
    try {
      body = JSON.parse(await response.text());
    } catch (_) {
      // not JSON: keep the status line
    }
    const message = typeof body.error === "string" && body.error ? body.error : response.status + " " + response.statusText;
    return new ApiError(response.status, message, body);
  }

  /** Sends a request; `read(response)` runs inside the deadline. Non-2xx answers throw ApiError. */
  async function request(path, options, read) {
    const opts = options || {};
    const controller = new AbortController();
    const limit = opts.timeout || TIMEOUT_MS;
    const timer = setTimeout(() => controller.abort(), limit);
    try {
      let response;
      try {
        response = await fetch(path, {
          method: opts.method || "GET",
          headers: opts.headers,
          body: opts.body,
          cache: "no-store",
          signal: controller.signal,
        });
      } catch (e) {
        throw new ApiError(0, controller.signal.aborted ? "no answer within " + limit / 1000 + " s" : "cannot reach the node");
      }
      if (!response.ok) throw await errorFrom(response);
      return read ? await read(response) : response;
    } finally {
      clearTimeout(timer);
    }
  }

  const getJson = (path) => request(path, {}, (r) => r.json());

  /** /v1/data/<key>, each segment percent-encoded and the slashes kept. */
  function dataPath(key) {
    const segments = key.split("/");
    // A "." or ".." segment would be resolved away by the URL parser, and an empty one may be
    // merged: send the whole key as one segment then (the server decodes %2F back to "/").
    if (segments.some((s) => s === "" || s === "." || s === "..")) return "/v1/data/" + encodeURIComponent(key);
    return "/v1/data/" + segments.map(encodeURIComponent).join("/");
  }

  /** The X-Cete-Revision an answer carries (noted as the store's newest), or null. */
  function revisionOf(response) {
    const header = response.headers.get("X-Cete-Revision");
    if (!header || !/^\d+$/.test(header)) return null;
    noteRevision(header);
    return header;
  }

  // ------------------------------------------------------------ bytes, hex

  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const lossy = new TextDecoder("utf-8");

  function decodeText(bytes) {
    try {
      return utf8.decode(bytes);
    } catch (_) {
      return null;
    }
  }

  const hex2 = (b) => b.toString(16).padStart(2, "0");

  /** A hexdump narrow enough for the detail pane: offset, 8 bytes, and the printable ASCII. */
  function hexdump(bytes) {
    const lines = [];
    for (let offset = 0; offset < bytes.length; offset += 8) {
      const row = bytes.subarray(offset, offset + 8);
      let hex = "";
      let ascii = "";
      for (let i = 0; i < 8; i++) {
        hex += i < row.length ? hex2(row[i]) + " " : "   ";
        if (i < row.length) ascii += row[i] >= 0x20 && row[i] < 0x7f ? String.fromCharCode(row[i]) : ".";
      }
      lines.push(offset.toString(16).padStart(6, "0") + "  " + hex + " |" + ascii + "|");
    }
    return lines.join("\n");
  }

  /** Bytes as editable hex: pairs separated by spaces, 16 a line. */
  function hexPairs(bytes) {
    const lines = [];
    for (let offset = 0; offset < bytes.length; offset += 16) {
      lines.push(Array.from(bytes.subarray(offset, offset + 16), hex2).join(" "));
    }
    return lines.join("\n");
  }

  function parseHex(text) {
    const digits = text.replace(/\s+/g, "");
    if (!/^([0-9a-fA-F]{2})*$/.test(digits)) return null;
    const bytes = new Uint8Array(digits.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(digits.substr(i * 2, 2), 16);
    return bytes;
  }

  function base64Bytes(text) {
    try {
      return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    } catch (_) {
      return new Uint8Array(0);
    }
  }

  // ------------------------------------------------- header, cluster table

  const live = {
    status: null,
    cluster: null,
    revision: null, // the store's revision as this node last reported it
    failingSince: null,
    clusterSignature: "",
  };

  /** The store's revision only moves on: take the newest any answer showed. */
  function noteRevision(revision) {
    const r = typeof revision === "string" ? Number(revision) : revision;
    if (typeof r !== "number" || !Number.isSafeInteger(r)) return;
    if (live.revision === null || r > live.revision) {
      live.revision = r;
      $("hdr-revision").textContent = String(r);
      $("stat-revision").textContent = String(r);
    }
  }

  function setConn(state, text) {
    const node = $("conn-status");
    node.dataset.state = state;
    node.textContent = text;
  }

  async function pollCluster() {
    const [cluster, status] = await Promise.allSettled([getJson("/v1/cluster"), getJson("/v1/status")]);
    const failures = [cluster, status].filter((r) => r.status === "rejected").map((r) => r.reason);
    if (cluster.status === "fulfilled") live.cluster = cluster.value.cluster || cluster.value;
    if (status.status === "fulfilled") {
      live.status = status.value;
      // Left out while the store has no revisions yet.
      if (typeof status.value.revision === "number") noteRevision(status.value.revision);
    }
    if (failures.length === 0) {
      live.failingSince = null;
      setConn("live", "Live");
      $("cluster-note").textContent = "updated " + clock();
    } else {
      live.failingSince = live.failingSince || new Date();
      const unreachable = failures.every((e) => e.status === 0);
      const reason = failures[0].message;
      setConn(
        unreachable ? "unreachable" : "degraded",
        (unreachable ? "Unreachable" : "Degraded") + " since " + clock(live.failingSince) + ": " + reason + "; retrying"
      );
      $("cluster-note").textContent = "last good data shown";
    }
    renderHeader();
    renderCluster();
  }

  function renderHeader() {
    const status = live.status || {};
    const leader = (live.cluster && live.cluster.leader) || status.leader || "";
    $("hdr-node").textContent = fmt(status.id);
    $("hdr-leader").textContent = live.cluster || live.status ? leader || "none" : "—";
    $("hdr-term").textContent = fmt(status.term);
    $("hdr-revision").textContent = fmt(live.revision);
    $("stat-last-log").textContent = fmt(status.last_log_index);
    $("stat-committed").textContent = fmt(status.committed_index);
    $("stat-applied").textContent = fmt(status.applied_index);
    $("stat-snapshot").textContent = fmt(status.snapshot_index);
    $("stat-revision").textContent = fmt(live.revision);
  }

  /** Where a node's own dashboard is, from its HTTP address (":8001" means this host). */
  function dashboardUrl(address) {
    const match = /^(.*):(\d+)$/.exec(address || "");
    if (!match) return null;
    let host = match[1];
    if (host === "" || host === "0.0.0.0" || host === "[::]" || host === "::") host = location.hostname;
    if (host.includes(":") && !host.startsWith("[")) host = "[" + host + "]";
    return location.protocol + "//" + host + ":" + match[2] + "/ui";
  }

  function lagLevel(lag) {
    if (lag === 0) return "0";
    return lag <= 100 ? "1" : "2";
  }

  function renderCluster() {
    if (!live.cluster) return;
    const nodes = live.cluster.nodes || {};
    const members = (live.status && live.status.members) || {};
    const self = live.status ? live.status.id : null;
    const signature = JSON.stringify([nodes, members, self]);
    if (signature === live.clusterSignature) return;
    live.clusterSignature = signature;

    // A member's progress may be given as the index the leader matched rather than as its own
    // applied index: name the column after what is shown.
    const matchedOnly = Object.values(members).some((m) => m && "matched_index" in m && !("applied_index" in m));
    $("col-applied").textContent = matchedOnly ? "Matched" : "Applied";

    const ids = Object.keys(nodes).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const body = $("cluster-body");
    keepFocus(body, () => {
      if (ids.length === 0) {
        body.replaceChildren(el("tr", { className: "empty" }, el("td", { colSpan: 8 }, "No members known.")));
        return;
      }
      body.replaceChildren(...ids.map((id) => clusterRow(id, nodes[id] || {}, members[id], id === self)));
    });
  }

  function clusterRow(id, node, member, isSelf) {
    const state = node.state || (member && member.state) || "Unknown";
    const meta = node.metadata || {};
    const url = dashboardUrl(meta.http_address);
    const httpCell = url
      ? el("a", { href: url, title: "Open this node's dashboard", dataset: { focusKey: "node:" + id } }, meta.http_address)
      : fmt(meta.http_address);
    const row = el(
      "tr",
      { dataset: { nodeId: id, state: state } },
      el("td", {}, el("span", { className: "node-id" }, id), isSelf ? el("span", { className: "tag" }, "this node") : null),
      el("td", {}, el("span", { className: "state", dataset: { state: state } }, state)),
      el(
        "td",
        {},
        el(
          "div",
          { className: "addrs" },
          el("span", {}, "raft"),
          el("span", { className: "addr" }, fmt(node.raft_address)),
          el("span", {}, "http"),
          el("span", { className: "addr" }, httpCell),
          el("span", {}, "grpc"),
          el("span", { className: "addr" }, fmt(meta.grpc_address))
        )
      )
    );
    if (member && member.error && member.applied_index === undefined && member.matched_index === undefined) {
      row.append(el("td", { colSpan: 5, className: "member-error" }, "No answer: " + member.error));
      return row;
    }
    const m = member || {};
    const applied = m.applied_index !== undefined ? m.applied_index : m.matched_index;
    const lag = typeof m.lag === "number" ? m.lag : null;
    row.append(
      el("td", { className: "num" }, fmt(m.term)),
      el("td", { className: "num" }, fmt(m.last_log_index)),
      el("td", { className: "num" }, fmt(m.committed_index)),
      el("td", { className: "num" }, fmt(applied)),
      el("td", { className: "num lag", dataset: lag === null ? {} : { level: lagLevel(lag) } }, fmt(lag))
    );
    return row;
  }

  function loopCluster() {
    pollCluster()
      .catch((e) => setConn("unreachable", "Error: " + e.message))
      .finally(() => setTimeout(loopCluster, POLL_MS));
  }

  // ------------------------------------------------------------ key browser

  const scan = {
    prefix: "",
    limit: 20,
    startAfter: null, // the start_after of the page shown (null: the first page)
    history: [], // the start_after of every page before it
    lastKey: null,
    more: false,
    selected: null,
    asked: 0, // the number of the latest scan sent: an older answer arriving late is dropped
  };

  async function runScan() {
    const params = new URLSearchParams({ prefix: scan.prefix, limit: String(scan.limit), keys_only: "true" });
    if (scan.startAfter !== null) params.set("start_after", scan.startAfter);
    const asked = ++scan.asked;
    let page;
    try {
      page = await getJson("/v1/scan?" + params);
    } catch (e) {
      if (asked === scan.asked) showMsg($("scan-error"), "error", "Search failed: " + e.message);
      return;
    }
    if (asked !== scan.asked) return;
    hideMsg($("scan-error"));
    const pairs = page.pairs || [];
    noteRevision(page.revision);
    scan.more = !!page.more;
    scan.lastKey = pairs.length ? pairs[pairs.length - 1].key : null;

    const first = scan.history.length * scan.limit + 1;
    const where = scan.prefix ? "under " + quoted(scan.prefix) : "in the store";
    let summary = plural(page.count || 0, "key") + " " + where;
    if (pairs.length) summary += " \u00b7 showing " + first + "\u2013" + (first + pairs.length - 1);
    if (typeof page.revision === "number") summary += " \u00b7 at revision " + page.revision;
    $("scan-summary").textContent = summary;
    $("page-info").textContent = "Page " + (scan.history.length + 1);
    $("page-prev").disabled = scan.history.length === 0;
    $("page-next").disabled = !scan.more;

    const body = $("key-body");
    if (pairs.length === 0) {
      const text = scan.history.length ? "No more keys." : "No keys " + where + ".";
      body.replaceChildren(el("tr", { className: "empty" }, el("td", { colSpan: 4 }, text)));
      return;
    }
    body.replaceChildren(...pairs.map(keyRow));
  }

  function keyRow(pair) {
    const lease = pair.lease ? (Number.isSafeInteger(pair.lease) ? String(pair.lease) : "yes") : "";
    const row = el(
      "tr",
      { dataset: { key: pair.key }, "aria-selected": pair.key === scan.selected ? "true" : "false" },
      el("td", { className: "key" }, el("button", { type: "button", className: "link" }, pair.key)),
      el("td", { className: "num" }, fmt(pair.mod_revision)),
      el("td", { className: "num" }, fmt(pair.version)),
      el("td", { className: "num" }, lease)
    );
    row.addEventListener("click", () => openKey(pair.key));
    return row;
  }

  function newSearch() {
    scan.prefix = $("scan-prefix").value;
    scan.limit = Number($("scan-limit").value) || 20;
    scan.startAfter = null;
    scan.history = [];
    return runScan();
  }

  function markSelected() {
    for (const row of $("key-body").querySelectorAll("tr[data-key]")) {
      row.setAttribute("aria-selected", row.dataset.key === scan.selected ? "true" : "false");
    }
  }

  // ------------------------------------------------------------- key detail

  let detail = null; // {key, bytes, text, mod, create, version, lease, type, mode, editing, gone}

  async function openKey(key, keepMessage) {
    scan.selected = key;
    markSelected();
    $("key-detail").hidden = false;
    $("detail-placeholder").hidden = true;
    if (!detail || detail.key !== key) {
      detail = { key: key, bytes: new Uint8Array(0), text: "", mode: "text", loading: true };
      $("delete-confirm").hidden = true;
    }
    detail.loading = true;
    if (!keepMessage) hideMsg($("detail-msg"));
    let answer;
    try {
      answer = await request(dataPath(key), { timeout: VALUE_TIMEOUT_MS }, async (r) => ({
        response: r,
        bytes: new Uint8Array(await r.arrayBuffer()),
      }));
    } catch (e) {
      if (!detail || detail.key !== key) return; // another key was opened meanwhile
      detail.loading = false;
      if (e.status === 404) {
        Object.assign(detail, { gone: true, bytes: new Uint8Array(0), text: "", mod: null, create: null, version: null, lease: null, type: null });
        stopEditing();
        renderDetail();
        if (!keepMessage) showMsg($("detail-msg"), "warn", quoted(key) + " does not exist (any more).");
      } else {
        detail.failed = !detail.mod; // nothing shown yet: say so rather than show an empty value
        renderDetail();
        showMsg($("detail-msg"), "error", "Could not read " + quoted(key) + ": " + e.message);
      }
      return;
    }
    if (!detail || detail.key !== key) return; // another key was opened meanwhile
    const h = answer.response.headers;
    revisionOf(answer.response);
    const etag = /^(?:W\/)?"(\d+)"$/.exec(h.get("ETag") || "");
    Object.assign(detail, {
      bytes: answer.bytes,
      text: decodeText(answer.bytes),
      mod: h.get("X-Cete-Mod-Revision") || (etag ? etag[1] : null),
      create: h.get("X-Cete-Create-Revision"),
      version: h.get("X-Cete-Version"),
      lease: h.get("X-Cete-Lease"),
      type: h.get("Content-Type"),
      gone: false,
      failed: false,
      loading: false,
    });
    if (detail.text === null && detail.mode === "text" && !detail.editing) detail.mode = "hex";
    renderDetail();
  }

  function renderDetail() {
    const d = detail;
    $("detail-key").textContent = d.key;
    $("detail-create").textContent = fmt(d.create);
    $("detail-mod").textContent = fmt(d.mod);
    $("detail-version").textContent = fmt(d.version);
    $("detail-lease").textContent = d.lease ? d.lease : d.gone ? "—" : "none";
    $("detail-size").textContent = d.gone ? "—" : plural(d.bytes.length, "byte");
    $("detail-type").textContent = fmt(d.type);
    $("view-text").setAttribute("aria-pressed", String(d.mode === "text"));
    $("view-hex").setAttribute("aria-pressed", String(d.mode === "hex"));

    const view = $("value-view");
    view.dataset.mode = d.mode;
    let note = "";
    if (d.gone || d.failed) {
      view.textContent = "";
      note = d.gone ? "The key does not exist." : "The value could not be read.";
    } else if (d.mode === "text") {
      const text = d.text === null ? lossy.decode(d.bytes) : d.text;
      if (d.text === null) note = "Not valid UTF-8: \ufffd marks bytes that are not text. The hex view shows them all.";
      if (text.length > TEXT_SHOWN) note = "Showing the first " + TEXT_SHOWN + " characters.";
      view.textContent = text.length > TEXT_SHOWN ? text.slice(0, TEXT_SHOWN) : text;
    } else {
      view.textContent = hexdump(d.bytes.subarray(0, HEX_SHOWN));
      if (d.bytes.length > HEX_SHOWN) note = "Showing the first " + HEX_SHOWN + " of " + d.bytes.length + " bytes.";
    }
    $("detail-note").textContent = note;
    $("detail-note").hidden = !note;

    $("detail-edit").hidden = d.editing;
    $("edit-save").hidden = !d.editing;
    $("edit-cancel").hidden = !d.editing;
    $("edit-area").hidden = !d.editing;
    $("detail-edit").disabled = d.gone || d.failed;
    $("detail-delete").disabled = d.gone || d.failed || d.editing;
    $("view-text").disabled = d.editing;
    $("view-hex").disabled = d.editing;
  }

  function setMode(mode) {
    if (!detail || detail.editing) return;
    detail.mode = mode;
    renderDetail();
  }

  function startEditing() {
    if (!detail || detail.gone) return;
    detail.editing = true;
    $("delete-confirm").hidden = true;
    const asText = detail.mode === "text" && detail.text !== null;
    detail.editMode = asText ? "text" : "hex";
    $("edit-label").textContent = asText ? "New value (text)" : "New value (hex bytes, whitespace ignored)";
    $("edit-value").value = asText ? detail.text : hexPairs(detail.bytes);
    hideMsg($("detail-msg"));
    renderDetail();
    $("edit-value").focus();
  }

  function stopEditing() {
    if (!detail) return;
    detail.editing = false;
    renderDetail();
  }

  /** The condition a write of the viewed key carries: its mod revision when it was loaded. */
  function ifMatch() {
    return detail.mod ? { "If-Match": '"' + detail.mod + '"' } : {};
  }

  function conditionFailed(e, verb) {
    const now = e.body && typeof e.body.mod_revision === "number" ? e.body.mod_revision : null;
    const where = now === 0 ? "it has been deleted" : "now at revision " + fmt(now);
    const reload = el("button", { type: "button", className: "small", id: "detail-msg-reload" }, "Reload");
    reload.addEventListener("click", () => openKey(detail.key));
    showMsg($("detail-msg"), "warn", quoted(detail.key) + " changed since you loaded it (" + where + "): not " + verb + ".", reload);
  }

  async function saveEdit() {
    const d = detail;
    const bytes = d.editMode === "text" ? new TextEncoder().encode($("edit-value").value) : parseHex($("edit-value").value);
    if (bytes === null) {
      showMsg($("detail-msg"), "error", "That is not hex: use pairs of digits 0-9, a-f.");
      return;
    }
    const headers = Object.assign({}, ifMatch());
    if (d.type) headers["Content-Type"] = d.type; // keep the type it was stored with
    // A write without ?lease= detaches the key from its lease: keep it attached.
    const path = dataPath(d.key) + (d.lease ? "?lease=" + encodeURIComponent(d.lease) : "");
    $("edit-save").disabled = true;
    try {
      const response = await request(path, { method: "PUT", headers: headers, body: bytes, timeout: VALUE_TIMEOUT_MS });
      const revision = revisionOf(response);
      stopEditing();
      showMsg($("detail-msg"), "ok", "Saved" + (revision ? " at revision " + revision : "") + ".");
      await openKey(d.key, true);
      runScan();
    } catch (e) {
      if (e.status === 412) conditionFailed(e, "saved");
      else showMsg($("detail-msg"), "error", "Not saved: " + e.message);
    } finally {
      $("edit-save").disabled = false;
    }
  }

  async function deleteKey() {
    const d = detail;
    $("delete-confirm").hidden = true;
    try {
      const response = await request(dataPath(d.key), { method: "DELETE", headers: ifMatch() });
      const revision = revisionOf(response);
      showMsg($("detail-msg"), "ok", "Deleted" + (revision ? " at revision " + revision : "") + ".");
      await openKey(d.key, true);
      runScan();
    } catch (e) {
      if (e.status === 412) conditionFailed(e, "deleted");
      else showMsg($("detail-msg"), "error", "Not deleted: " + e.message);
    }
  }

  /** A change the watch saw to the key on screen: say so, unless it is the version shown. */
  function noticeChange(event) {
    if (!detail || detail.loading || detail.key !== event.data.key) return;
    if (typeof event.revision !== "number" || (detail.mod && event.revision <= Number(detail.mod))) return;
    if (detail.gone && event.type === "Delete") return;
    const reload = el("button", { type: "button", className: "small" }, "Reload");
    reload.addEventListener("click", () => openKey(detail.key));
    const what = event.type === "Delete" ? "was deleted" : detail.gone ? "was created again" : "changed";
    showMsg($("detail-msg"), "warn", "This key " + what + " at revision " + event.revision + ".", reload);
  }

  // ---------------------------------------------------------------- new key

  async function createKey(ev) {
    ev.preventDefault();
    const key = $("new-key").value;
    const lease = $("new-lease").value.trim();
    const status = $("new-status");
    delete status.dataset.key; // set to the key written, once it is
    if (!key) {
      showMsg(status, "error", "A key is needed.");
      return;
    }
    if (lease && !/^\d+$/.test(lease)) {
      showMsg(status, "error", "A lease id is a decimal number.");
      return;
    }
    $("new-submit").disabled = true;
    try {
      // Bytes, not a string, so that no Content-Type is sent: the node detects it.
      const response = await request(dataPath(key) + (lease ? "?lease=" + lease : ""), {
        method: "PUT",
        headers: { "If-None-Match": "*" },
        body: new TextEncoder().encode($("new-value").value),
        timeout: VALUE_TIMEOUT_MS,
      });
      const revision = revisionOf(response);
      showMsg(status, "ok", "Created " + quoted(key) + (revision ? " at revision " + revision : "") + ".");
      status.dataset.key = key;
      $("new-key").value = "";
      $("new-value").value = "";
      runScan();
    } catch (e) {
      if (e.status === 412) {
        const at = typeof e.body.mod_revision === "number" ? " (at revision " + e.body.mod_revision + ")" : "";
        showMsg(status, "error", quoted(key) + " already exists" + at + ": open it to edit it.");
      } else {
        showMsg(status, "error", "Not created: " + e.message);
      }
    } finally {
      $("new-submit").disabled = false;
    }
  }

  // ----------------------------------------------------------------- leases

  const leases = { open: new Set(), keys: new Map(), confirming: null, list: [] };

  async function pollLeases() {
    try {
      const answer = await getJson("/v1/leases");
      leases.list = answer.leases || [];
      const ids = new Set(leases.list.map((l) => l.id));
      for (const id of leases.open) if (!ids.has(id)) leases.open.delete(id);
      await Promise.all([...leases.open].map(loadLeaseKeys));
    } catch (e) {
      $("lease-count").textContent = "not refreshed: " + e.message;
      return;
    }
    $("lease-count").textContent = plural(leases.list.length, "lease");
    renderLeases();
  }

  async function loadLeaseKeys(id) {
    try {
      const lease = await getJson("/v1/leases/" + encodeURIComponent(id));
      leases.keys.set(id, lease.keys || []);
    } catch (e) {
      leases.keys.set(id, e.status === 404 ? [] : null);
    }
  }

  function renderLeases() {
    const body = $("lease-body");
    keepFocus(body, () => {
      if (leases.list.length === 0) {
        body.replaceChildren(el("tr", { className: "empty" }, el("td", { colSpan: 4 }, "No leases.")));
        return;
      }
      const rows = [];
      for (const lease of leases.list) {
        rows.push(leaseRow(lease));
        if (leases.confirming === lease.id) rows.push(leaseConfirmRow(lease.id));
        if (leases.open.has(lease.id)) rows.push(leaseKeysRow(lease.id));
      }
      body.replaceChildren(...rows);
    });
  }

  function leaseRow(lease) {
    const id = lease.id;
    const remaining = typeof lease.remaining === "number" ? lease.remaining : null;
    const bar = el("span", { className: "bar", "aria-hidden": "true" }, el("span"));
    if (remaining !== null && lease.ttl > 0) {
      const share = Math.max(0, Math.min(1, remaining / lease.ttl));
      bar.firstChild.style.width = Math.round(share * 100) + "%";
      bar.dataset.low = String(share < 0.25);
    }
    const open = leases.open.has(id);
    const keys = el(
      "button",
      { type: "button", className: "small", "aria-expanded": String(open), dataset: { focusKey: "keys:" + id } },
      "Keys"
    );
    const revoke = el(
      "button",
      { type: "button", className: "small danger", "aria-pressed": String(leases.confirming === id), dataset: { focusKey: "revoke:" + id } },
      "Revoke"
    );
    keys.addEventListener("click", () => toggleLeaseKeys(id));
    revoke.addEventListener("click", () => {
      leases.confirming = leases.confirming === id ? null : id;
      renderLeases();
    });
    const acts = el("td", { className: "acts" }, keys, revoke);
    return el(
      "tr",
      { dataset: { leaseId: id } },
      el("td", { className: "id" }, id),
      el("td", { className: "num" }, lease.ttl + " s"),
      el("td", {}, bar, remaining === null ? "—" : remaining + " s"),
      acts
    );
  }

  /** The inline question before a revoke. */
  function leaseConfirmRow(id) {
    const yes = el("button", { type: "button", className: "small danger", dataset: { focusKey: "yes:" + id } }, "Revoke");
    const no = el("button", { type: "button", className: "small", dataset: { focusKey: "no:" + id } }, "Keep");
    yes.addEventListener("click", () => revokeLease(id));
    no.addEventListener("click", () => {
      leases.confirming = null;
      renderLeases();
    });
    return el(
      "tr",
      { className: "lease-confirm", dataset: { leaseConfirm: id } },
      el("td", { colSpan: 4 }, "Revoke lease " + id + " and delete its keys?", yes, no)
    );
  }

  function leaseKeysRow(id) {
    const keys = leases.keys.get(id);
    let content;
    if (keys === undefined) content = "Loading…";
    else if (keys === null) content = "Could not read its keys.";
    else if (keys.length === 0) content = "No keys attached.";
    else {
      content = el(
        "ul",
        {},
        ...keys.map((key) => {
          const open = el("button", { type: "button", className: "link", dataset: { focusKey: "key:" + id + ":" + key } }, key);
          open.addEventListener("click", () => openKey(key));
          return el("li", {}, open);
        })
      );
    }
    return el("tr", { className: "lease-keys", dataset: { leaseKeys: id } }, el("td", { colSpan: 4 }, content));
  }

  async function toggleLeaseKeys(id) {
    if (leases.open.has(id)) {
      leases.open.delete(id);
      renderLeases();
      return;
    }
    leases.open.add(id);
    renderLeases();
    await loadLeaseKeys(id);
    renderLeases();
  }

  async function grantLease(ev) {
    ev.preventDefault();
    const ttl = Number($("lease-ttl").value);
    if (!Number.isInteger(ttl) || ttl < 1) {
      showMsg($("lease-msg"), "error", "The TTL is a whole number of seconds, at least 1.");
      return;
    }
    try {
      const lease = await request("/v1/leases", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ttl: ttl }),
      }, (r) => r.json());
      showMsg($("lease-msg"), "ok", "Granted lease " + lease.id + " for " + lease.ttl + " s.");
      pollLeases();
    } catch (e) {
      showMsg($("lease-msg"), "error", "Not granted: " + e.message);
    }
  }

  async function revokeLease(id) {
    leases.confirming = null;
    try {
      const response = await request("/v1/leases/" + encodeURIComponent(id), { method: "DELETE" });
      const revision = revisionOf(response);
      showMsg($("lease-msg"), "ok", "Revoked lease " + id + (revision ? " at revision " + revision : "") + ".");
      runScan();
    } catch (e) {
      showMsg($("lease-msg"), "error", "Not revoked: " + e.message);
    }
    pollLeases();
  }

  function loopLeases() {
    pollLeases().finally(() => setTimeout(loopLeases, LEASE_POLL_MS));
  }

  // ------------------------------------------------------------------ watch

  const watch = {
    session: 0, // bumped by every start and stop: an older stream's loop then quits
    controller: null,
    timer: null,
    prefix: "",
    next: null, // the start_revision of the next connection
    delay: 1000,
    shown: new Set(), // "revision key" of the changes in the feed: a replay does not repeat them
  };

  function setWatchState(state, text) {
    const node = $("watch-state");
    node.dataset.state = state;
    node.dataset.prefix = watch.prefix;
    node.textContent = text;
  }

  function startWatch() {
    stopWatch(true);
    watch.prefix = $("watch-prefix").value;
    // From just after the revision the header shows, so nothing between is missed.
    watch.next = typeof live.revision === "number" ? live.revision + 1 : null;
    watch.delay = 1000;
    $("watch-stop").disabled = false;
    connectWatch(watch.session);
  }

  function stopWatch(restarting) {
    watch.session++;
    if (watch.controller) watch.controller.abort();
    watch.controller = null;
    clearTimeout(watch.timer);
    if (!restarting) {
      $("watch-stop").disabled = true;
      setWatchState("stopped", "Stopped");
    }
  }

  function retryWatch(session, reason) {
    if (session !== watch.session) return;
    // No change seen yet: resume from the revision known when it broke, not from whenever
    // the next connection happens to start.
    if (watch.next === null && typeof live.revision === "number") watch.next = live.revision + 1;
    const seconds = watch.delay / 1000;
    setWatchState("retrying", "Disconnected (" + reason + "); retrying in " + seconds + " s");
    watch.timer = setTimeout(() => connectWatch(session), watch.delay);
    watch.delay = Math.min(watch.delay * 2, 10000);
  }

  async function connectWatch(session) {
    if (session !== watch.session) return;
    const params = new URLSearchParams({ prefix: watch.prefix });
    if (watch.next !== null) params.set("start_revision", String(watch.next));
    setWatchState("connecting", "Connecting…");
    const controller = new AbortController();
    watch.controller = controller;
    let response;
    try {
      response = await fetch("/v1/watch?" + params, { cache: "no-store", signal: controller.signal });
    } catch (e) {
      retryWatch(session, "cannot reach the node");
      return;
    }
    if (session !== watch.session) return;
    if (!response.ok) {
      const error = await errorFrom(response);
      if (response.status === 410) {
        // The history no longer goes back that far: say what was missed, go on from now.
        feedNote("History compacted: changes from revision " + watch.next + " to " + fmt(error.body.compact_revision) + " were missed.");
        watch.next = null;
        connectWatch(session);
        return;
      }
      retryWatch(session, error.message);
      return;
    }
    // Live from here on; should it break before any event, go on from the revision known now.
    if (watch.next === null && typeof live.revision === "number") watch.next = live.revision + 1;
    const where = watch.prefix ? "under " + quoted(watch.prefix) : "all keys";
    setWatchState("watching", "Watching " + where + " \u00b7 since " + clock());
    watch.delay = 1000;

    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let ended = "the stream ended";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || session !== watch.session) break;
        buffer += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (line) ended = watchLine(line) || ended;
        }
      }
    } catch (e) {
      ended = "connection lost";
    }
    retryWatch(session, ended);
  }

  /** Handles one line of the stream; answers the error that ends it, if it is one. */
  function watchLine(line) {
    let event;
    try {
      event = JSON.parse(line);
    } catch (_) {
      return null;
    }
    if (!event.type) return typeof event.error === "string" ? event.error : null;
    if (typeof event.revision === "number") {
      watch.next = event.revision + 1;
      noteRevision(event.revision);
    }
    addEvent(event);
    if (event.data && (event.type === "Set" || event.type === "Delete")) noticeChange(event);
    return null;
  }

  function eventSummary(event) {
    const data = event.data || {};
    if (event.type === "Set") {
      if (typeof data.value === "string") return data.value.length > 120 ? data.value.slice(0, 120) + "\u2026" : data.value;
      if (typeof data.value_base64 === "string") {
        const bytes = base64Bytes(data.value_base64);
        return "(" + plural(bytes.length, "byte") + ") " + Array.from(bytes.subarray(0, 24), hex2).join(" ") + (bytes.length > 24 ? " \u2026" : "");
      }
      return "";
    }
    if (event.type === "Delete") return "deleted";
    if (event.type === "Join") {
      const meta = data.metadata || {};
      return "joined: grpc " + fmt(meta.grpc_address) + ", http " + fmt(meta.http_address);
    }
    if (event.type === "Leave") return "left the cluster";
    return "";
  }

  function addEvent(event) {
    const data = event.data || {};
    const token = typeof event.revision === "number" ? event.revision + " " + data.key : null;
    if (token !== null && watch.shown.has(token)) return;
    const name = data.key !== undefined ? data.key : data.id !== undefined ? data.id : "";
    const dataset = { type: event.type };
    if (data.key !== undefined) dataset.key = data.key;
    if (data.id !== undefined) dataset.node = data.id;
    if (typeof event.revision === "number") dataset.revision = String(event.revision);
    const item = el(
      "li",
      { className: "fresh", dataset: dataset, title: "received " + clock() },
      el("span", { className: "type" }, event.type),
      el("span", { className: "key" }, name),
      el("span", { className: "rev" }, typeof event.revision === "number" ? "rev " + event.revision : ""),
      el("span", { className: "val" }, eventSummary(event))
    );
    if (token !== null) {
      item.dataset.token = token;
      watch.shown.add(token);
    }
    pushFeed(item);
  }

  function feedNote(text) {
    pushFeed(
      el(
        "li",
        { dataset: { type: "note" } },
        el("span", { className: "type" }, "Note"),
        el("span", { className: "key" }, text),
        el("span", { className: "rev" }, clock())
      )
    );
  }

  function pushFeed(item) {
    const feed = $("watch-feed");
    feed.prepend(item);
    while (feed.children.length > FEED_CAP) {
      watch.shown.delete(feed.lastElementChild.dataset.token);
      feed.lastElementChild.remove();
    }
    $("watch-empty").hidden = true;
  }

  // ------------------------------------------------------------------ wiring

  function wire() {
    $("scan-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      newSearch();
    });
    $("page-next").addEventListener("click", () => {
      if (!scan.more || scan.lastKey === null) return;
      scan.history.push(scan.startAfter);
      scan.startAfter = scan.lastKey;
      runScan();
    });
    $("page-prev").addEventListener("click", () => {
      if (scan.history.length === 0) return;
      scan.startAfter = scan.history.pop();
      runScan();
    });

    $("view-text").addEventListener("click", () => setMode("text"));
    $("view-hex").addEventListener("click", () => setMode("hex"));
    $("detail-edit").addEventListener("click", startEditing);
    $("edit-cancel").addEventListener("click", () => {
      stopEditing();
      hideMsg($("detail-msg"));
    });
    $("edit-save").addEventListener("click", saveEdit);
    $("detail-reload").addEventListener("click", () => detail && openKey(detail.key));
    $("detail-delete").addEventListener("click", () => {
      $("delete-confirm").hidden = false;
      $("delete-no").focus();
    });
    $("delete-no").addEventListener("click", () => {
      $("delete-confirm").hidden = true;
    });
    $("delete-yes").addEventListener("click", deleteKey);

    $("new-form").addEventListener("submit", createKey);
    $("lease-form").addEventListener("submit", grantLease);

    $("watch-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      startWatch();
    });
    $("watch-stop").addEventListener("click", () => stopWatch(false));
    $("watch-clear").addEventListener("click", () => {
      $("watch-feed").replaceChildren();
      watch.shown.clear();
      $("watch-empty").hidden = false;
    });
  }

  wire();
  loopCluster();
  loopLeases();
  newSearch();
  startWatch();
})();
