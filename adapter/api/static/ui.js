// Polls /debug/series and /debug/hpa/{ns}/{name}; draws line charts on <canvas> by hand.
"use strict";

const POLL_MS = 2000;
const WINDOW_S = 300; // the charts show the last five minutes
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];
const hpaHistory = new Map(); // "ns/name" -> [{t, desired, current, controller, metrics: [...]}]

function params() {
  const q = new URLSearchParams(window.location.search);
  return {
    namespace: q.get("namespace") || "default",
    hpas: (q.get("hpa") || "").split(",").map((s) => s.trim()).filter((s) => s.includes("/")),
  };
}

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(2) + "k";
  if (a >= 10 || Number.isInteger(v)) return String(Math.round(v * 100) / 100);
  return v.toFixed(3);
}

// lines: [{label, color, points: [[t, y], ...], dashed}]
function drawChart(canvas, lines, now) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 48, bottom = 18, top = 6, right = 6;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  let lo = Infinity, hi = -Infinity;
  for (const line of lines) for (const [, y] of line.points) { lo = Math.min(lo, y); hi = Math.max(hi, y); }
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  lo = Math.min(lo, 0);
  if (hi - lo < 1e-9) hi = lo + 1;
  hi += (hi - lo) * 0.08;
  const t0 = now - WINDOW_S;
  const x = (t) => left + ((t - t0) / WINDOW_S) * (w - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (h - top - bottom);
  ctx.strokeStyle = "#ddd";
  ctx.fillStyle = "#666";
  ctx.font = "10px sans-serif";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
    ctx.fillText(fmt(v), 2, y(v) + 3);
  }
  for (let s = 0; s <= WINDOW_S; s += 60) {
    ctx.fillText(s === WINDOW_S ? "now" : `-${(WINDOW_S - s) / 60}m`, x(t0 + s) - 8, h - 4);
  }
  for (const line of lines) {
    const pts = line.points.filter(([t]) => t >= t0);
    if (!pts.length) continue;
    ctx.strokeStyle = line.color;
    ctx.lineWidth = 2;
    ctx.setLineDash(line.dashed ? [5, 4] : []);
    ctx.beginPath();
    pts.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
    if (pts.length === 1) ctx.lineTo(x(now), y(pts[0][1]));
    ctx.stroke();
  }
  ctx.setLineDash([]);
  canvas.dataset.points = String(lines.reduce((n, l) => n + l.points.length, 0));
}

function card(container, id, title) {
  let el = document.getElementById(id);
  if (!el) {
    el = document.createElement("div");
    el.className = "card";
    el.id = id;
    el.innerHTML = "<h3></h3><canvas width='460' height='170'></canvas><div class='meta'></div>";
    container.appendChild(el);
  }
  el.querySelector("h3").textContent = title;
  return el;
}

function safeId(s) { return s.replace(/[^A-Za-z0-9_-]/g, "_"); }

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.message || `${r.status}`);
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
    const el = card(container, "m-" + safeId(key + "-" + p.namespace), `${key} (namespace ${p.namespace})`);
    const lines = series.slice(0, COLORS.length).map((s, i) => ({
      label: s.object, color: COLORS[i], points: s.points.map((pt) => [pt.t, pt.value]),
    }));
    drawChart(el.querySelector("canvas"), lines, doc.now);
    el.querySelector(".meta").textContent = series.slice(0, COLORS.length).map((s) => {
      const last = s.points[s.points.length - 1];
      return `${s.object}: ${fmt(last.value)} (value age ${fmt(last.age)}s)`;
    }).join(" · ") + (series.length > COLORS.length ? ` · +${series.length - COLORS.length} more` : "");
  }
  return doc.series.length;
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
  while (hist.length && hist[0].t < now - WINDOW_S) hist.shift();
  hpaHistory.set(ref, hist);
  const container = document.getElementById("hpa-list");
  const el = card(container, "h-" + safeId(ref), `HPA ${ref}: replicas`);
  drawChart(el.querySelector("canvas"), [
    { label: "explain desired", color: COLORS[0], points: hist.map((h) => [h.t, h.d.desiredReplicas]) },
    { label: "current", color: COLORS[2], points: hist.map((h) => [h.t, h.d.currentReplicas]) },
    { label: "controller desired", color: COLORS[1], dashed: true,
      points: hist.filter((h) => h.c.desiredReplicas != null).map((h) => [h.t, h.c.desiredReplicas]) },
  ], now);
  el.querySelector(".meta").textContent =
    `desired ${doc.decision.desiredReplicas} (${doc.decision.reason}) · controller ${doc.controller.desiredReplicas ?? "–"} · current ${doc.decision.currentReplicas}`;
  doc.metrics.forEach((m, i) => {
    const mel = card(container, "h-" + safeId(ref) + "-m" + i, `HPA ${ref}: ${m.type} ${m.name} vs target`);
    const parse = (q) => (q == null ? null : parseQuantity(q));
    drawChart(mel.querySelector("canvas"), [
      { label: "current", color: COLORS[0], points: hist.filter((h) => h.m[i] && h.m[i].current != null).map((h) => [h.t, parse(h.m[i].current)]) },
      { label: "target", color: COLORS[1], dashed: true, points: hist.filter((h) => h.m[i] && h.m[i].target.value != null).map((h) => [h.t, parse(h.m[i].target.value)]) },
    ], now);
    mel.querySelector(".meta").textContent = `current ${m.current ?? "–"} / target ${m.target.value ?? "–"} → ${m.proposal ?? "–"} replicas ${m.error ? "· " + m.error : ""}`;
  });
}

function parseQuantity(q) {
  const m = /^(-?[0-9.]+(?:e-?[0-9]+)?)(m|k|M|G|T|P|E)?$/.exec(q);
  if (!m) return null;
  const mult = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 }[m[2]] || 1;
  return parseFloat(m[1]) * mult;
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
  for (const ref of p.hpas) await pollHpa(ref, errors);
  document.getElementById("status").textContent =
    `${count} series · updated ${new Date().toLocaleTimeString()}`;
  document.getElementById("errors").textContent = errors.join("\n");
}

function start() {
  const p = params();
  document.getElementById("namespace").value = p.namespace;
  document.getElementById("hpas").value = p.hpas.join(",");
  tick();
  window.setInterval(tick, POLL_MS);
}

start();
