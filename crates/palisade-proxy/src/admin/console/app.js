// Palisade console. No framework, no inline script, no innerHTML: every value from the API
// is written with textContent, so an attack payload in an event is shown, never run.
"use strict";

const state = { csrf: null, role: null, source: null, events: [], selected: null };
const MAX_ROWS = 500;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

async function api(path, options) {
  const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (opts.method && opts.method !== "GET" && state.csrf) opts.headers["X-CSRF-Token"] = state.csrf;
  const r = await fetch(path, opts);
  if (r.status === 401) {
    location.assign("/console/");
    throw new Error("session ended");
  }
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { body = { detail: text }; }
  return { status: r.status, ok: r.ok, body };
}

function table(columns, rows) {
  const head = el("tr", {}, ...columns.map((c) => el("th", {}, c.title)));
  const body = rows.map((r) => el("tr", {}, ...columns.map((c) => el("td", {}, c.value(r)))));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

// Bars drawn as SVG rectangles; labels as SVG text nodes (text, never markup).
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function barList(node, items) {
  clear(node);
  if (!items.length) { node.append(el("p", { class: "muted" }, "nothing in the last hour")); return; }
  const max = Math.max(...items.map((i) => i.count));
  const width = 320, row = 22;
  const s = svg("svg", { width, height: row * items.length, role: "img" });
  items.forEach((it, n) => {
    const w = Math.max(2, Math.round((it.count / max) * 150));
    s.append(svg("rect", { x: 0, y: n * row + 4, width: w, height: row - 8, class: "bar" }));
    const t = svg("text", { x: w + 6, y: n * row + 15 });
    t.textContent = `${it.name ?? it.code} (${it.count})`;
    s.append(t);
  });
  node.append(s);
}

function timeline(node, series) {
  clear(node);
  const totals = new Array(60).fill(0);
  for (const s of series) s.per_minute.forEach((v, i) => { totals[i] += v; });
  const max = Math.max(1, ...totals);
  const width = 720, height = 140, bw = width / 60;
  const s = svg("svg", { width, height: height + 20, role: "img", id: "timeline-svg" });
  const codes = series.map((x) => x.code);
  for (let i = 0; i < 60; i++) {
    let y = height;
    series.forEach((ser, k) => {
      const v = ser.per_minute[i];
      if (!v) return;
      const h = (v / max) * height;
      y -= h;
      const r = svg("rect", { x: i * bw, y, width: bw - 1, height: h, class: `bar c${k % 6}` });
      const tip = svg("title", {});
      tip.textContent = `${ser.code}: ${v}`;
      r.append(tip);
      s.append(r);
    });
  }
  const label = svg("text", { x: 0, y: height + 16 });
  label.textContent = `max ${max}/min; ${codes.length ? codes.join(", ") : "no refusals"}`;
  s.append(label);
  node.append(s);
}

async function overview() {
  const { body } = await api("/api/v1/overview");
  const h = body.last_hour;
  const cards = clear(document.getElementById("cards"));
  const card = (title, value, id) => el("div", { class: "card", id }, el("span", { class: "value" }, value), el("span", {}, title));
  cards.append(
    card("requests", body.requests_total, "card-requests"),
    card("refused (last hour)", h.refused, "card-refused"),
    card("would refuse (monitor)", h.would_refuse, "card-monitor"),
    card("events recorded", body.events_total, "card-events"),
  );
  timeline(document.getElementById("timeline"), h.timeline);
  barList(document.getElementById("by-code"), h.by_code);
  barList(document.getElementById("top-routes"), h.top_routes);
  barList(document.getElementById("top-clients"), h.top_clients);
}

function filterQuery() {
  const f = new FormData(document.getElementById("filters"));
  const q = new URLSearchParams();
  for (const [k, v] of f.entries()) if (String(v).trim()) q.set(k, String(v).trim());
  return q;
}

function eventRow(e) {
  const tr = el("tr", { "data-id": e.id, class: e.mode === "monitor" ? "monitor" : "" },
    el("td", { class: "time", title: e.time }, e.time.slice(11, 23)),
    el("td", {}, e.status),
    el("td", { class: "code" }, e.code || e.monitored.join(", ")),
    el("td", {}, e.route || "-"),
    el("td", {}, e.client),
    el("td", {}, e.consumer || "-"),
    el("td", { class: "mono" }, `${e.method} ${e.path}`));
  tr.addEventListener("click", () => showEvent(e));
  return tr;
}

function showEvent(e) {
  state.selected = e.id;
  const d = clear(document.getElementById("event-detail"));
  const why = e.code
    ? `Refused with ${e.code} (${e.status}): ${e.title || ""}.`
    : `Would have been refused (monitor mode) with ${e.monitored.join(", ")}; the request went through.`;
  const rows = [
    ["request id", e.request_id], ["time", e.time], ["kind", e.kind], ["mode", e.mode],
    ["route", e.route], ["consumer", e.consumer], ["client", e.client],
    ["request", `${e.method} ${e.path}`], ["code", e.code], ["title", e.title],
    ["detail", e.detail], ["monitored", e.monitored.join(", ")],
    ["input location", e.location], ["excerpt (redacted)", e.excerpt],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "");
  d.append(el("h3", {}, "Why"), el("p", { id: "event-why" }, why),
    el("dl", { id: "event-fields" }, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: "mono" }, v)])));
}

function renderEvents() {
  const body = clear(document.getElementById("event-rows"));
  for (const e of state.events) body.append(eventRow(e));
}

async function loadEvents() {
  const q = filterQuery();
  q.set("limit", "200");
  const { ok, body } = await api(`/api/v1/events?${q}`);
  if (!ok) { setLive(body.detail || "bad filter"); return; }
  state.events = body.events;
  renderEvents();
  startStream(state.events.length ? state.events[0].id : null);
}

function setLive(text) { document.getElementById("live-state").textContent = text; }

function startStream(after) {
  if (state.source) state.source.close();
  const q = filterQuery();
  if (after) q.set("after", String(after));
  const src = new EventSource(`/api/v1/events/stream?${q}`);
  state.source = src;
  src.onopen = () => setLive("live");
  src.onerror = () => setLive("reconnecting");
  src.addEventListener("security", (m) => {
    const e = JSON.parse(m.data);
    state.events.unshift(e);
    if (state.events.length > MAX_ROWS) state.events.pop();
    const rows = document.getElementById("event-rows");
    rows.insertBefore(eventRow(e), rows.firstChild);
    while (rows.children.length > MAX_ROWS) rows.removeChild(rows.lastChild);
  });
  src.addEventListener("lost", (m) => setLive(`live (lost ${JSON.parse(m.data).lost})`));
}

async function inventory() {
  const { body } = await api("/api/v1/inventory");
  const n = clear(document.getElementById("inventory-body"));
  const rows = (key) => body.inventory.flatMap((p) => (p[key] || []).map((o) => Object.assign({ route: p.route }, o)));
  const seen = [
    { title: "route", value: (o) => o.route }, { title: "method", value: (o) => o.method },
    { title: "path", value: (o) => o.path }, { title: "calls", value: (o) => o.count },
    { title: "first seen", value: (o) => (o.first_seen ? new Date(o.first_seen * 1000).toISOString() : "-") },
    { title: "last seen", value: (o) => (o.last_seen ? new Date(o.last_seen * 1000).toISOString() : "-") },
  ];
  const part = (title, id, key, columns, empty) => {
    const list = rows(key);
    n.append(el("h3", {}, `${title} (${list.length})`));
    n.append(list.length ? Object.assign(table(columns, list), { id }) : el("p", { class: "muted" }, empty));
  };
  if (!body.inventory.length) { n.append(el("p", { class: "muted" }, "No route has a contract policy: nothing to compare calls with.")); return; }
  part("Shadow: called, not documented", "inv-shadow", "undocumented", seen, "No undocumented operation was called.");
  part("Zombie: deprecated, still called", "inv-zombie", "zombie", seen, "No deprecated operation was called.");
  part("Documented", "inv-documented", "documented", seen.concat([{ title: "deprecated", value: (o) => (o.deprecated ? "yes" : "") }]), "The descriptions have no operation.");
  part("Unused since the start", "inv-unused", "unused", seen.slice(0, 3), "Every documented operation was called.");
}

async function findings() {
  const { body } = await api("/api/v1/findings");
  const n = clear(document.getElementById("findings-body"));
  const patchName = (i) => {
    const p = body.patches[i];
    return p ? `#${i} ${p.route}${p.operation ? " " + p.operation : ""} (${p.mode})` : `#${i}`;
  };
  if (!body.reports.length) n.append(el("p", { class: "muted" }, "No report is configured (admin.reports)."));
  for (const r of body.reports) {
    const head = r.tool === "audit" ? `audit of ${r.source}: score ${r.score}` : r.tool === "scan" ? `scan of ${r.target}: ${r.requests} requests` : r.file;
    n.append(el("h3", {}, head));
    if (r.error) { n.append(el("p", { class: "error" }, `${r.file}: ${r.error}`)); continue; }
    const open = r.findings.filter((f) => !f.patches.length).length;
    n.append(el("p", {}, `${r.findings.length} finding(s), ${open} without a patch`));
    n.append(Object.assign(table([
      { title: "severity", value: (f) => f.severity }, { title: "check", value: (f) => f.id },
      { title: "operation", value: (f) => f.operation || "-" }, { title: "what", value: (f) => f.title },
      { title: "patched by", value: (f) => (f.patches.length ? f.patches.map(patchName).join(", ") : "not patched") },
    ], r.findings), { className: "findings" }));
  }
  n.append(el("h3", {}, `Patches (${body.patches.length})`));
  n.append(table([
    { title: "#", value: (p) => body.patches.indexOf(p) }, { title: "answers", value: (p) => p.answers },
    { title: "route", value: (p) => p.route }, { title: "operation", value: (p) => p.operation || "(whole route)" },
    { title: "mode", value: (p) => p.mode }, { title: "why", value: (p) => p.reason || "" },
  ], body.patches));
}

async function routes() {
  const { body } = await api("/api/v1/routes");
  const n = clear(document.getElementById("routes-body"));
  for (const r of body.routes) {
    const rows = r.policies.map((p) => {
      const cell = el("td", {}, p.mode + (p.overridden ? " (set here until reload)" : ""));
      const actions = el("td", {});
      if (state.role === "operator") {
        const next = p.mode === "monitor" ? "enforce" : "monitor";
        actions.append(el("button", {
          type: "button", class: "mode", "data-route": r.name, "data-position": r.position, "data-index": p.index,
          onclick: async () => {
            const res = await api(`/api/v1/routes/${encodeURIComponent(r.name)}/policies/${p.index}/mode?position=${r.position}`,
              { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ mode: next }) });
            if (res.ok) routes(); else alert(res.body.detail);
          },
        }, `switch to ${next}`));
      }
      return el("tr", {}, el("td", {}, p.index), el("td", {}, p.type), cell, actions);
    });
    n.append(el("h3", {}, r.name),
      el("p", { class: "mono" }, `${(r.methods || ["*"]).join(",")} ${r.host || ""}${r.path} → ${r.upstream}`),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "policy"), el("th", {}, "mode"), el("th", {}, ""))), el("tbody", {}, ...rows)));
  }
}

async function consumers() {
  const { body } = await api("/api/v1/consumers");
  const n = clear(document.getElementById("consumers-body"));
  n.append(table([
    { title: "name", value: (c) => c.name }, { title: "groups", value: (c) => c.groups.join(", ") },
    { title: "API keys", value: (c) => c.api_keys.map((k) => k.label || "(no label)").join(", ") },
    { title: "certificates", value: (c) => c.certificates.join(", ") },
    { title: "signature keys", value: (c) => c.signature_keys.map((k) => k.keyid).join(", ") },
    { title: "WS-Security users", value: (c) => c.ws_users.join(", ") },
  ], body.consumers));
}

async function quotas() {
  const { body } = await api("/api/v1/quotas");
  const n = clear(document.getElementById("quotas-body"));
  if (!body.quotas.length) { n.append(el("p", { class: "muted" }, "No quota or limit keeps usage.")); return; }
  for (const q of body.quotas) n.append(el("h3", {}, `${q.route}: ${q.policy || "quota"}`), el("pre", {}, JSON.stringify(q, null, 2)));
}

async function upstreams() {
  const { body } = await api("/api/v1/upstreams");
  const n = clear(document.getElementById("upstreams-body"));
  for (const u of body.upstreams) {
    n.append(el("h3", {}, u.name), table([
      { title: "target", value: (t) => t.target }, { title: "healthy", value: (t) => (t.healthy ? "yes" : "NO") },
      { title: "in flight", value: (t) => t.in_flight }, { title: "ejections", value: (t) => t.ejections },
    ], u.targets));
  }
}

function problems(node, body) {
  const list = (body.problems || body.warnings || []).map((p) => el("li", {}, `line ${p.line ?? "?"}: ${p.path}: ${p.message}`));
  node.append(el("p", {}, body.detail || (body.applied ? "Applied." : body.valid ? "Valid." : "")), el("ul", {}, ...list));
}

async function config() {
  const { body } = await api("/api/v1/config");
  const s = clear(document.getElementById("config-summary"));
  s.append(el("p", { class: "mono" }, `${body.file} (sha256 ${body.sha256 || "?"})`),
    el("p", {}, `${body.listeners} listener(s), ${body.upstreams} upstream(s), ${body.routes} route(s); reloads ok ${body.reloads_ok}, refused ${body.reloads_failed}`));
  if (body.warnings.length) { s.append(el("h3", {}, "Warnings")); problems(s, { warnings: body.warnings }); }
  const edit = document.getElementById("config-edit");
  edit.hidden = state.role !== "operator";
  if (!edit.hidden && typeof body.text === "string") document.getElementById("config-text").value = body.text;
}

async function sendConfig(dry) {
  const text = document.getElementById("config-text").value;
  const res = await api(`/api/v1/config${dry ? "?dry_run=true" : ""}`, { method: "POST", headers: { "Content-Type": "application/yaml" }, body: text });
  const out = clear(document.getElementById("config-result"));
  out.className = res.ok ? "ok" : "error";
  problems(out, res.body);
}

const views = { overview, events: loadEvents, inventory, findings, routes, consumers, quotas, upstreams, config };
let refresh = null;

function show() {
  const name = (location.hash || "#overview").slice(1);
  const view = views[name] ? name : "overview";
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== view;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === view);
  if (view !== "events" && state.source) { state.source.close(); state.source = null; }
  clearInterval(refresh);
  views[view]().catch((e) => console.warn(e.message));
  if (view === "overview") refresh = setInterval(() => overview().catch(() => {}), 5000);
}

async function start() {
  const { body } = await api("/api/v1/whoami");
  state.csrf = body.csrf;
  state.role = body.role;
  document.getElementById("who").textContent = `${body.name} (${body.role})`;
  document.getElementById("logout").addEventListener("click", async () => {
    await api("/console/logout", { method: "POST" });
    location.assign("/console/");
  });
  document.getElementById("filters").addEventListener("submit", (ev) => { ev.preventDefault(); loadEvents(); });
  document.getElementById("config-validate").addEventListener("click", () => sendConfig(true));
  document.getElementById("config-apply").addEventListener("click", () => sendConfig(false));
  window.addEventListener("hashchange", show);
  show();
}

document.addEventListener("DOMContentLoaded", () => { start().catch((e) => console.warn(e.message)); });
