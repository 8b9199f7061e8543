// Polls /debug/series and /debug/hpa/{ns}/{name}; draws line charts on <canvas> by hand.
//
// For tests and curious humans, the page exposes what it drew as data attributes:
//   <body data-ticks="N" data-series="S">   completed polls, series in the last answer
//   <canvas data-points="P">                points drawn on that chart in its time window
// Every text that comes from the server goes through textContent, never innerHTML.
"use strict";

const POLL_MS = 2000;
const MAX_WINDOW_S = 300; // the charts show at most the last five minutes…
const MIN_WINDOW_S = 60; // …and at least one, so a fresh page is not a sliver at the right edge
const GAP_S = 15; // points further apart than this are not joined by a line
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];
const hpaHistory = new Map(); // "ns/name" -> [{t, d, c, m}]
const cards = new Map(); // card key -> element (keys are free text: no id collisions)
let ticks = 0;

function params() {
  const q = new URLSearchParams(window.location.search);
  return {
    namespace: q.get("namespace") || "default",
    hpas: (q.get("hpa") || "").split(",").map((s) => s.trim()).filter((s) => /^[^/]+\/[^/]+$/.test(s)),
  };
}

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  const trim = (s) => (s.includes(".") ? s.replace(/\.?0+$/, "") : s);
  if (a >= 1e9) return trim((v / 1e9).toFixed(2)) + "G";
  if (a >= 1e6) return trim((v / 1e6).toFixed(2)) + "M";
  if (a >= 1e3) return trim((v / 1e3).toFixed(2)) + "k";
  if (a >= 10 || Number.isInteger(v)) return String(Math.round(v * 100) / 100);
  return trim(v.toFixed(3));
}

// The time window: from the oldest point (at least MIN_WINDOW_S, at most MAX_WINDOW_S) to now.
function windowFor(lines, now) {
  let oldest = now;
  for (const line of lines) for (const [t] of line.points) oldest = Math.min(oldest, t);
  return Math.min(MAX_WINDOW_S, Math.max(MIN_WINDOW_S, Math.ceil((now - oldest) / 30) * 30));
}

// 1, 2 or 5 times a power of ten, at least ``raw``: round numbers on the y axis.
function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

function tickLabel(secondsAgo) {
  if (secondsAgo === 0) return "now";
  return secondsAgo % 60 === 0 ? `-${secondsAgo / 60}m` : `-${secondsAgo}s`;
}

// lines: [{label, color, points: [[t, y], ...], dashed}]; returns the number of points drawn.
function drawChart(canvas, lines, now) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 48, bottom = 18, top = 6, right = 10;
  const span = windowFor(lines, now);
  const t0 = now - span;
  const visible = lines.map((l) => ({ ...l, points: l.points.filter(([t, v]) => t >= t0 && Number.isFinite(v)) }));
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  let lo = Infinity, hi = -Infinity;
  for (const line of visible) for (const [, v] of line.points) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  lo = Math.min(lo, 0);
  if (hi - lo < 1e-9) hi = lo + 1;
  const yStep = niceStep((hi - lo) / 4);
  lo = Math.floor(lo / yStep) * yStep;
  hi = Math.max(lo + yStep, Math.ceil((hi * 1.0001) / yStep) * yStep);
  const x = (t) => left + ((t - t0) / span) * (w - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (h - top - bottom);
  ctx.strokeStyle = "#ddd";
  ctx.fillStyle = "#666";
  ctx.font = "10px sans-serif";
  ctx.lineWidth = 1;
  ctx.textAlign = "left";
  for (let i = 0; lo + i * yStep <= hi + yStep / 2 && i <= 20; i++) {
    const v = lo + i * yStep;
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
    ctx.fillText(fmt(v), 2, y(v) + 3);
  }
  const tStep = span > 120 ? 60 : 15;
  for (let ago = 0; ago <= span; ago += tStep) {
    ctx.textAlign = ago === 0 ? "right" : ago === span ? "left" : "center";
    ctx.fillText(tickLabel(ago), ago === 0 ? w - 2 : x(now - ago), h - 4);
  }
  ctx.textAlign = "left";
  let drawn = 0;
  for (const line of visible) {
    const pts = line.points;
    if (!pts.length) continue;
    drawn += pts.length;
    ctx.strokeStyle = line.color;
    ctx.fillStyle = line.color;
    ctx.lineWidth = 2;
    ctx.setLineDash(line.dashed ? [5, 4] : []);
    ctx.beginPath();
    // A gap in the data (nobody polled, the backend failed) stays a gap, not a straight line.
    pts.forEach(([t, v], i) =>
      i && t - pts[i - 1][0] <= GAP_S ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v)));
    ctx.stroke();
    // A dot on the newest value: a single point is visible too.
    const [tl, vl] = pts[pts.length - 1];
    ctx.beginPath(); ctx.arc(x(tl), y(vl), 2.5, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.setLineDash([]);
  canvas.dataset.points = String(drawn);
  return drawn;
}

function card(container, key, title) {
  let el = cards.get(key);
  if (!el) {
    el = document.createElement("div");
    el.className = "card";
    el.dataset.key = key;
    const h3 = document.createElement("h3");
    const canvas = document.createElement("canvas");
    canvas.width = 460;
    canvas.height = 170;
    canvas.dataset.points = "0";
    const legend = document.createElement("div");
    legend.className = "meta";
    el.append(h3, canvas, legend);
    container.appendChild(el);
    cards.set(key, el);
  }
  el.querySelector("h3").textContent = title;
  return el;
}

// entries: [{color, dashed, text}] -> one line per entry with a colour swatch.
function legend(el, entries, extra) {
  const meta = el.querySelector(".meta");
  meta.replaceChildren();
  for (const e of entries) {
    const row = document.createElement("div");
    const swatch = document.createElement("span");
    swatch.className = "swatch" + (e.dashed ? " dashed" : "");
    swatch.style.borderColor = e.color;
    row.append(swatch, document.createTextNode(e.text));
    meta.appendChild(row);
  }
  if (extra) {
    const row = document.createElement("div");
    row.textContent = extra;
    meta.appendChild(row);
  }
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await r.json();
  } catch (e) {
    throw new Error(`${r.status} ${r.statusText}: not JSON`);
  }
  if (!r.ok) throw new Error(`${r.status} ${(body && body.message) || r.statusText}`);
  return body;
}

async function pollSeries(p, errors) {
  const doc = await getJSON(`/debug/series?namespace=${encodeURIComponent(p.namespace)}`);
  errors.push(...doc.errors);
  const byMetric = new Map();
  for (const s of doc.series) {
    const key = `${s.group}/${s.metric}`;
    if (!byMetric.has(key)) byMetric.set(key, []);
    byMetric.get(key).push(s);
  }
  const container = document.getElementById("metrics");
  for (const [key, series] of byMetric) {
    const el = card(container, `m ${key} ${p.namespace}`, `${key} (namespace ${p.namespace})`);
    const shown = series.slice(0, COLORS.length);
    const lines = shown.map((s, i) => ({
      label: s.object, color: COLORS[i], points: s.points.map((pt) => [pt.t, pt.value]),
    }));
    drawChart(el.querySelector("canvas"), lines, doc.now);
    legend(el, shown.map((s, i) => {
      const last = s.points[s.points.length - 1];
      const who = s.object === "*" ? "(no labels)" : s.object;
      return { color: COLORS[i], text: `${who}: ${fmt(last.value)} (value age ${fmt(last.age)}s)` };
    }), series.length > shown.length ? `+${series.length - shown.length} more series not drawn` : "");
  }
  return doc.series.length;
}

function parseQuantity(q) {
  const m = /^([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.exec(String(q));
  if (!m) return null;
  const mult = {
    n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
    Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
  }[m[2]] || 1;
  return parseFloat(m[1]) * mult;
}

async function pollHpa(ref, errors) {
  const [ns, name] = ref.split("/");
  let doc;
  try {
    doc = await getJSON(`/debug/hpa/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
  } catch (e) {
    errors.push(`HPA ${ref}: ${e.message}`);
    return;
  }
  const now = Date.now() / 1000;
  const hist = hpaHistory.get(ref) || [];
  hist.push({ t: now, d: doc.decision, c: doc.controller, m: doc.metrics });
  while (hist.length && hist[0].t < now - MAX_WINDOW_S) hist.shift();
  hpaHistory.set(ref, hist);
  const container = document.getElementById("hpa-list");
  const el = card(container, `h ${ref}`, `HPA ${ref}: replicas`);
  const lines = [
    { label: "explain: desired", color: COLORS[0], points: hist.map((h) => [h.t, h.d.desiredReplicas]) },
    { label: "current", color: COLORS[2], points: hist.map((h) => [h.t, h.d.currentReplicas]) },
    { label: "controller: status.desiredReplicas", color: COLORS[1], dashed: true,
      points: hist.filter((h) => h.c.desiredReplicas != null).map((h) => [h.t, h.c.desiredReplicas]) },
  ];
  drawChart(el.querySelector("canvas"), lines, now);
  legend(el, [
    { color: COLORS[0], text: `explain: desired ${doc.decision.desiredReplicas} (${doc.decision.reason})` },
    { color: COLORS[2], text: `current ${doc.decision.currentReplicas}` },
    { color: COLORS[1], dashed: true, text: `controller: status.desiredReplicas ${doc.controller.desiredReplicas ?? "–"}` },
  ], (doc.unseen || []).map((u) => `not seen: ${u}`).join("\n"));
  doc.metrics.forEach((m, i) => {
    const mel = card(container, `h ${ref} m${i}`, `HPA ${ref}: ${m.type} ${m.name} vs target`);
    const at = (h) => h.m[i] || null;
    drawChart(mel.querySelector("canvas"), [
      { label: "current", color: COLORS[0], points: hist.filter((h) => at(h) && at(h).current != null).map((h) => [h.t, parseQuantity(at(h).current)]) },
      { label: "target", color: COLORS[1], dashed: true, points: hist.filter((h) => at(h) && at(h).target.value != null).map((h) => [h.t, parseQuantity(at(h).target.value)]) },
    ], now);
    legend(mel, [
      { color: COLORS[0], text: `current ${m.current ?? "–"}` },
      { color: COLORS[1], dashed: true, text: `target ${m.target.value ?? "–"} (${m.target.type})` },
    ], `→ ${m.proposal ?? "–"} replicas · ${m.error ? m.reason + ": " + m.error : m.reason}` + freshnessText(m));
  });
}

// One metric's freshness budget (/debug/hpa: request.freshness), as a line under its chart.
function freshnessText(m) {
  const f = m.request && m.request.freshness;
  if (!f) return "";
  const reaction = f.reactionSeconds
    ? ` · a step reaches the HPA in ~${f.reactionSeconds.typical}s (at worst ${f.reactionSeconds.worst}s)`
    : "";
  return `\nfrom ${f.source} · value ${f.valueAgeSeconds ?? "–"}s old · HPA sync ${f.hpaSyncSeconds}s${reaction}`;
}

async function tick() {
  const p = params();
  const errors = [];
  let count = 0;
  try {
    count = await pollSeries(p, errors);
  } catch (e) {
    errors.push(`series: ${e.message}`);
  }
  for (const ref of p.hpas) {
    try {
      await pollHpa(ref, errors);
    } catch (e) {
      errors.push(`HPA ${ref}: ${e.message}`);
    }
  }
  ticks += 1;
  document.body.dataset.ticks = String(ticks);
  document.body.dataset.series = String(count);
  document.getElementById("status").textContent =
    `${count} series · updated ${new Date().toLocaleTimeString()}`;
  document.getElementById("errors").textContent = errors.join("\n");
}

// One poll at a time: the next starts POLL_MS after the previous one finished.
async function loop() {
  try {
    await tick();
  } finally {
    window.setTimeout(loop, POLL_MS);
  }
}

function start() {
  const p = params();
  document.getElementById("namespace").value = p.namespace;
  document.getElementById("hpas").value = p.hpas.join(",");
  document.getElementById("hpas-section").hidden = p.hpas.length === 0;
  loop();
}

start();
