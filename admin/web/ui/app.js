// The cocoon node dashboard: polls /status (and /models) and redraws.
// Plain DOM, no framework. Every string from the node, some of it from
// other peers' offers, goes in as text, never as markup.
"use strict";

const POLL_MS = 2000;
const MODELS_MS = 10000;
const HISTORY = 150; // samples kept for the charts: 5 minutes at one per poll
const SVG = "http://www.w3.org/2000/svg";

const history = []; // {t, active, earned, spent}
let lastModels = 0;

// el makes an HTML element; attrs may hold "class", "title" or any
// attribute; children are nodes or strings (added as text).
function el(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

function fill(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== undefined && c !== null) node.append(c);
  }
  return node;
}

function show(id, ...children) {
  document.getElementById(id).replaceChildren(...children.flat(Infinity));
}

function short(id) {
  return id && id.length > 10 ? "…" + id.slice(-6) : id || "";
}

// int groups digits: 1500000 -> "1,500,000".
function int(n) {
  return String(Math.round(n || 0)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function ton(nano) {
  return ((nano || 0) / 1e9).toFixed(6) + " TON";
}

function ms(v) {
  return v ? v.toFixed(v < 10 ? 1 : 0) + " ms" : "–";
}

// table makes a table of rows (cells are strings, nodes or ready <td>s),
// or a note saying empty when there are none. A header ending in "#" is a
// number column, right-aligned.
function table(head, rows, empty) {
  if (!rows.length) return el("p", { class: "muted" }, empty);
  const th = head.map((h) => el("th", { class: h.endsWith("#") ? "num" : null }, h.replace(/#$/, "")));
  const body = rows.map((r) =>
    el("tr", null, r.map((c, i) => (c instanceof Node && c.tagName === "TD" ? c : el("td", { class: head[i].endsWith("#") ? "num" : null }, c)))),
  );
  return el("div", { class: "scroll" }, el("table", null, el("thead", null, el("tr", null, th)), el("tbody", null, body)));
}

function peerCell(id) {
  return el("td", { class: "mono", title: id }, id);
}

// shortCell shows the end of a long ID; the whole one is its tooltip.
function shortCell(id) {
  return el("td", { class: "mono nowrap", title: id }, short(id));
}

function renderSelf(s) {
  document.title = `cocoon ${s.role} ${short(s.peer)}`;
  show("role", s.role || "node");
  const ready = document.getElementById("ready");
  ready.textContent = s.ready ? "ready" : "not ready";
  ready.className = "badge " + (s.ready ? "ok" : "bad");
  const rows = [
    ["peer", el("span", { class: "mono" }, s.peer)],
    ["role", s.role],
    ["network", s.network],
    ["tier", s.tier || "none"],
    ["addresses", s.addrs?.length ? s.addrs.map((a) => el("div", { class: "mono" }, a)) : "none: it only dials out"],
  ];
  if (s.api_addr) rows.push(["OpenAI API", el("span", { class: "mono" }, `http://${s.api_addr}/v1`)]);
  if (s.registry) {
    const r = s.registry;
    rows.push(["root contract", el("span", { class: "mono", title: r.address }, `${short(r.address)} seqno ${r.seqno}`)]);
    rows.push(["registry", `${r.bootstrap} bootstrap, ${r.models} model${r.models === 1 ? "" : "s"}, proxy fee cap ${r.proxy_fee_ppm / 1e4}%` + (r.dev_attestation ? ", dev attestation" : "")]);
  }
  rows.push(["connected", `${s.connected} peer${s.connected === 1 ? "" : "s"}` + (s.dht_routing_table >= 0 ? `, ${s.dht_routing_table} in DHT` : "")]);
  show("self", rows.map(([k, v]) => [el("dt", null, k), el("dd", null, v)]));
}

// renderMap draws clients, proxies and workers in three columns, this node
// in its own, with a line to every peer it keeps or routes to.
function renderMap(s) {
  const peers = new Map(); // id -> {role, state}: state "up", "down" or "" (known from an offer only)
  const add = (id, role, state) => {
    const p = peers.get(id) || { role, state: "" };
    if (state) p.state = p.state === "up" ? "up" : state;
    if (role) p.role = role;
    peers.set(id, p);
  };
  for (const o of s.offers || []) add(o.peer, o.role, "");
  const keptRole = s.role === "proxy" ? "worker" : "proxy";
  for (const k of s.kept || []) add(k.peer, peers.get(k.peer)?.role || keptRole, k.up ? "up" : "down");
  for (const w of s.workers || []) add(w.peer, "worker", w.up ? "up" : "down");
  // A proxy's clients are the payers of the channels it is paid on.
  if (s.role === "proxy") {
    for (const c of s.payments?.channels || []) {
      if (c.role === "payee") add(c.peer, "client", c.state === "open" ? "up" : "down");
    }
  }
  peers.delete(s.peer);

  const cols = { client: 80, proxy: 300, worker: 520 };
  const byRole = { client: [], proxy: [], worker: [] };
  byRole[s.role]?.push({ id: s.peer, self: true });
  for (const [id, p] of peers) byRole[p.role]?.push({ id, ...p });
  const rows = Math.max(...Object.values(byRole).map((l) => l.length));
  const H = 40 + 64 * rows;
  document.getElementById("map").setAttribute("viewBox", `0 0 600 ${H}`);
  const pos = new Map();
  const nodes = [];
  for (const [role, list] of Object.entries(byRole)) {
    nodes.push(svg("text", { x: cols[role], y: 16, "text-anchor": "middle", class: "col" }, role === "proxy" ? "proxies" : role + "s"));
    list.forEach((p, i) => {
      const y = 30 + ((i + 0.5) * (H - 40)) / list.length;
      pos.set(p.id, [cols[role], y]);
      nodes.push(
        svg("g", { class: `node ${role}` + (p.self ? " self" : "") },
          svg("title", null, `${role} ${p.id}` + (p.self ? " (this node)" : "")),
          svg("circle", { cx: cols[role], cy: y, r: p.self ? 16 : 12 }),
          svg("text", { x: cols[role], y: y + 28, "text-anchor": "middle" }, p.self ? `this node ${short(p.id)}` : short(p.id))),
      );
    });
  }
  const [sx, sy] = pos.get(s.peer) || [0, 0];
  const edges = [];
  for (const [id, p] of peers) {
    if (!p.state || !pos.has(id)) continue;
    const [x, y] = pos.get(id);
    edges.push(svg("line", { x1: sx, y1: sy, x2: x, y2: y, class: `edge ${p.state}` }));
  }
  show("map", edges, nodes);
}

function renderOffers(s) {
  const offers = [...(s.offers || [])].sort((a, b) => a.role.localeCompare(b.role) || (a.price || 0) - (b.price || 0));
  show("offers", table(
    ["peer", "role", "models", "price nanoTON / M#", "load / capacity#", "tier", "fee#", "expires"],
    offers.map((o) => [
      peerCell(o.peer), o.role, (o.models || []).join(", "),
      o.role === "worker" ? int(o.price) : "",
      o.capacity ? `${o.load} / ${o.capacity}` : String(o.load),
      o.tier || "", o.fee_ppm ? `${o.fee_ppm / 1e4}%` : "",
      new Date(o.expires).toLocaleTimeString(),
    ]),
    s.role === "client" ? "A client keeps no offer book: its proxies pick workers and price their answers." : "No live offers.",
  ));
}

// renderRequests shows requests in flight: a proxy's per worker, a
// worker's own. It returns how many are in flight, for the chart.
function renderRequests(s) {
  if (s.workers) {
    show("requests", table(
      ["worker", "models", "active / capacity#", "served#", "failed#", "TTFT#", "success#"],
      s.workers.map((w) => [
        shortCell(w.peer), (w.models || []).join(", "), `${w.active} / ${w.capacity}`, int(w.served), int(w.failures),
        ms(w.ttft_ms), `${Math.round((w.success || 0) * 100)}%`,
      ]),
      "",
    ));
    return s.workers.reduce((n, w) => n + w.active, 0);
  }
  if (s.serving) {
    const v = s.serving;
    show("requests", el("dl", null,
      el("dt", null, "in flight"), el("dd", null, `${v.active} / ${v.capacity}`),
      el("dt", null, "served"), el("dd", null, int(v.served)),
      el("dt", null, "time to first token"), el("dd", null, ms(v.ttft_ms)),
      el("dt", null, "speed"), el("dd", null, v.tokens_per_sec ? `${v.tokens_per_sec.toFixed(1)} tokens/s` : "–"),
    ));
    return v.active;
  }
  if (s.role === "proxy") {
    show("requests", el("p", { class: "muted" }, "No workers to route to yet."));
    return 0;
  }
  renderRecent(s.recent || []);
  return null;
}

// renderRecent lists a client's last requests, newest first, after a
// summary per model: requests, failures, median latency and spending.
function renderRecent(recent) {
  if (!recent.length) {
    show("requests", el("p", { class: "muted" }, "No requests sent yet: send one to the OpenAI API and it shows here."));
    return;
  }
  const models = new Map();
  for (const r of recent) {
    const m = models.get(r.model) || { n: 0, failed: 0, cost: 0, durations: [] };
    m.n++;
    if (r.outcome !== "ok") m.failed++;
    m.cost += r.cost_nanoton || 0;
    m.durations.push(r.duration_ms);
    models.set(r.model, m);
  }
  const median = (v) => v.slice().sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const perModel = table(
    ["model", "requests#", "failed#", "median duration#", "spent nanoTON#"],
    [...models].map(([model, m]) => [el("span", { class: "mono" }, model), int(m.n), int(m.failed), ms(median(m.durations)), int(m.cost)]),
    "",
  );
  const rows = recent.map((r) => [
    el("td", { class: `nowrap request ${r.outcome === "ok" ? "ok" : "failed"}` }, new Date(r.time).toLocaleTimeString()),
    el("span", { class: "mono" }, r.model), shortCell(r.worker), r.tier || "–",
    ms(r.ttft_ms), ms(r.duration_ms), `${int(r.prompt_tokens)} + ${int(r.completion_tokens)}`, int(r.cost_nanoton), r.outcome,
  ]);
  show("requests", perModel, table(
    ["time", "model", "worker", "tier", "first token#", "duration#", "tokens#", "cost nanoTON#", "outcome"],
    rows, "",
  ));
  renderRecentCharts(recent);
}

// renderRecentCharts draws the recent requests, oldest first: their time
// to first token and duration in ms, and each model's spending so far.
function renderRecentCharts(recent) {
  const rs = recent.slice().reverse();
  chart("latency-chart", [
    { name: "first token ms", cls: 2, values: rs.map((r) => r.ttft_ms), fmt: (v) => (v || 0).toFixed(1) },
    { name: "duration ms", cls: 0, values: rs.map((r) => r.duration_ms), fmt: (v) => (v || 0).toFixed(1) },
  ], rs.length);
  const spent = new Map();
  for (const [i, r] of rs.entries()) {
    if (!spent.has(r.model)) spent.set(r.model, new Array(rs.length).fill(0));
    const v = spent.get(r.model);
    for (let j = i; j < rs.length; j++) v[j] += r.cost_nanoton || 0;
  }
  chart("spend-chart", [...spent].map(([model, values], i) => ({ name: `${model} nanoTON`, cls: i % 3, values })), rs.length);
}

function renderPayments(s) {
  const p = s.payments;
  if (!p) {
    show("payments", el("p", { class: "muted" }, "no payment channels"));
    return;
  }
  const summary = el("dl", null,
    el("dt", null, "earned"), el("dd", null, `${int(p.earned_nanoton)} nanoTON (${ton(p.earned_nanoton)})`),
    el("dt", null, "spent"), el("dd", null, `${int(p.spent_nanoton)} nanoTON (${ton(p.spent_nanoton)})`),
  );
  const channels = table(
    ["peer", "side", "address", "deposit#", "sent#", "received#", "unsigned#", "state"],
    (p.channels || []).map((c) => [
      shortCell(c.peer), c.role, shortCell(c.address),
      int(c.deposit_nanoton), int(c.sent_nanoton), int(c.received_nanoton), int(c.unsigned_nanoton), `${c.state} #${c.seqno}`,
    ]),
    "no payment channels",
  );
  show("payments", summary, channels);
}

// chart draws each series as a line over n points (the samples, by
// default), all on one scale from 0 to the largest value; the label gives
// each one's latest value.
function chart(id, series, n = history.length) {
  const W = 600, H = 120, top = 18;
  const max = Math.max(1, ...series.flatMap((s) => s.values.filter((v) => v != null)));
  const x = (i) => (n < 2 ? W : (i * W) / (n - 1));
  const y = (v) => H - 2 - ((H - top - 4) * v) / max;
  const label = series.map((s) => `${s.name} ${(s.fmt || int)(s.values.at(-1))}`).join(" · ");
  const parts = [
    svg("line", { x1: 0, y1: H - 1, x2: W, y2: H - 1, class: "axis" }),
    svg("text", { x: 2, y: 12 }, label),
    svg("text", { x: W - 2, y: 12, "text-anchor": "end", class: "muted" }, `scale 0 – ${int(max)}`),
  ];
  series.forEach((s, i) => {
    const pts = s.values.map((v, j) => (v == null ? null : `${x(j).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
    if (pts.length) parts.push(svg("polyline", { points: pts.join(" "), class: `series s${s.cls ?? i}` }));
  });
  show(id, parts);
}

// renderCharts draws what the polls so far saw; a chart with nothing to
// show is left empty, and hidden by the style sheet.
function renderCharts() {
  const active = history.map((h) => h.active);
  if (active.some((v) => v != null)) chart("load-chart", [{ name: "in flight", cls: 2, values: active }]);
  else show("load-chart");
  if (history.some((h) => h.earned != null)) {
    chart("pay-chart", [
      { name: "earned", values: history.map((h) => h.earned) },
      { name: "spent", values: history.map((h) => h.spent) },
    ]);
  } else show("pay-chart");
}

function renderModels(c) {
  show("models", table(
    ["model", "workers#", ""],
    (c.models || []).map((m) => [el("span", { class: "mono" }, m.id), m.workers ? String(m.workers) : "", m.simulated ? "simulated" : ""]),
    "No model served yet.",
  ));
}

function render(s) {
  renderSelf(s);
  renderMap(s);
  renderOffers(s);
  const active = renderRequests(s);
  renderPayments(s);
  history.push({ t: Date.now(), active, earned: s.payments?.earned_nanoton, spent: s.payments?.spent_nanoton });
  if (history.length > HISTORY) history.shift();
  renderCharts();
  show("updated", "updated " + new Date().toLocaleTimeString());
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (r.status === 401) {
    // The token changes at each start: a restarted node wants a new login.
    throw new Error("it wants its token (did it restart?): open this page again at /?token= with the token in admin.token in the node's data dir");
  }
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function poll() {
  const error = document.getElementById("error");
  try {
    render(await getJSON("status"));
    if (Date.now() - lastModels >= MODELS_MS) {
      lastModels = Date.now();
      renderModels(await getJSON("models"));
    }
    error.hidden = true;
  } catch (e) {
    error.textContent = "The node is not answering: " + e.message;
    error.hidden = false;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
