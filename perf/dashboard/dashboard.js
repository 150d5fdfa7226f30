// ferrelay live dashboard: reads one JSON frame a second from /api/v1/live
// (server-sent events) and draws time-series and bar charts on <canvas>.
// Hand-written so the page needs nothing from the internet.
"use strict";

const WINDOW = 120; // seconds of history on the time charts
const PALETTE = ["#4fb3ff", "#3ecf8e", "#f5a623", "#c77dff", "#ff6b6b", "#2ec4b6",
  "#ffd166", "#8d99ae", "#ef476f", "#06d6a0", "#118ab2", "#e9c46a"];
const GRID = "#243040", AXIS = "#8394a7", FONT = "11px DejaVu Sans, Arial, sans-serif";

/** A fixed-length history of named series. */
class Series {
  constructor() { this.t = []; this.lines = new Map(); this.points = 0; }
  push(t, values) {
    this.t.push(t);
    for (const [name, v] of Object.entries(values)) {
      if (!this.lines.has(name)) this.lines.set(name, new Array(this.t.length - 1).fill(null));
      this.lines.get(name).push(v);
    }
    for (const [, arr] of this.lines) if (arr.length < this.t.length) arr.push(null);
    while (this.t.length > WINDOW) { this.t.shift(); for (const [, a] of this.lines) a.shift(); }
    this.points += Object.keys(values).length;
  }
}

function fitCanvas(c) {
  const r = c.getBoundingClientRect(), d = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(r.width * d)), h = Math.max(1, Math.round(r.height * d));
  if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
  const g = c.getContext("2d");
  g.setTransform(d, 0, 0, d, 0, 0);
  return [g, r.width, r.height];
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(a >= 1 ? 1 : 2).replace(/\.?0+$/, "") || "0";
}

/** Line chart with a time axis, y grid and legend; `area` fills under each line. */
function lineChart(canvas, s, opts = {}) {
  const [g, w, h] = fitCanvas(canvas);
  const L = 48, R = 10, T = 18, B = 22, pw = w - L - R, ph = h - T - B;
  g.clearRect(0, 0, w, h);
  g.font = FONT;
  let max = opts.max || 0;
  if (!opts.max) for (const [, a] of s.lines) for (const v of a) if (v > max) max = v;
  max = niceMax(max);
  g.strokeStyle = GRID; g.fillStyle = AXIS; g.lineWidth = 1;
  g.textAlign = "right"; g.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = T + ph - (ph * i) / 4;
    g.beginPath(); g.moveTo(L, y + 0.5); g.lineTo(L + pw, y + 0.5); g.stroke();
    g.fillText(fmt((max * i) / 4), L - 6, y);
  }
  g.textAlign = "center"; g.textBaseline = "top";
  for (const sec of [120, 90, 60, 30, 0]) {
    const x = L + pw - (pw * sec) / WINDOW;
    g.fillText(sec ? `-${sec}s` : "now", x, T + ph + 6);
  }
  const n = s.t.length, now = n ? s.t[n - 1] : 0;
  const xAt = (t) => L + pw - (pw * (now - t)) / WINDOW;
  const yAt = (v) => T + ph - (ph * Math.min(v, max)) / max;
  let k = 0;
  const legend = [];
  for (const [name, a] of s.lines) {
    const col = (opts.colors && opts.colors[name]) || PALETTE[k++ % PALETTE.length];
    legend.push([name, col]);
    g.strokeStyle = col; g.lineWidth = 1.8; g.beginPath();
    let started = false, first = null, last = null;
    for (let i = 0; i < n; i++) {
      if (a[i] === null) continue;
      const x = xAt(s.t[i]), y = yAt(a[i]);
      if (!started) { g.moveTo(x, y); started = true; first = x; } else g.lineTo(x, y);
      last = x;
    }
    g.stroke();
    if (opts.area && started) {
      g.lineTo(last, T + ph); g.lineTo(first, T + ph); g.closePath();
      g.globalAlpha = 0.12; g.fillStyle = col; g.fill(); g.globalAlpha = 1;
    }
  }
  g.textAlign = "left"; g.textBaseline = "middle";
  let lx = L + 4;
  for (const [name, col] of legend.slice(0, 12)) {
    g.fillStyle = col; g.fillRect(lx, 4, 10, 3);
    g.fillStyle = AXIS; g.fillText(name, lx + 14, 6);
    lx += 22 + g.measureText(name).width;
  }
  canvas.dataset.points = String(s.points);
}

/** Horizontal bars, largest first. */
function barChart(canvas, rows) {
  const [g, w, h] = fitCanvas(canvas);
  g.clearRect(0, 0, w, h);
  g.font = FONT;
  if (!rows.length) {
    g.fillStyle = AXIS; g.textAlign = "center"; g.textBaseline = "middle";
    g.fillText("no calls", w / 2, h / 2);
    return;
  }
  const L = 190, R = 60, rowH = Math.min(24, (h - 8) / rows.length);
  const max = niceMax(Math.max(...rows.map((r) => r.pps)));
  rows.forEach((r, i) => {
    const y = 4 + i * rowH, bw = ((w - L - R) * r.pps) / max;
    g.fillStyle = AXIS; g.textAlign = "right"; g.textBaseline = "middle";
    const id = r.call_id.length > 26 ? r.call_id.slice(0, 25) + "…" : r.call_id;
    g.fillText(id, L - 8, y + rowH / 2);
    g.fillStyle = PALETTE[i % PALETTE.length];
    g.fillRect(L, y + 3, Math.max(1, bw), rowH - 6);
    g.fillStyle = "#d7dee7"; g.textAlign = "left";
    g.fillText(fmt(r.pps), L + bw + 6, y + rowH / 2);
  });
}

function spark(canvas, arr, color) {
  const [g, w, h] = fitCanvas(canvas);
  g.clearRect(0, 0, w, h);
  const vals = arr.filter((v) => v !== null);
  if (vals.length < 2) return;
  // Stretched over the width: a sparkline shows the shape of what it has.
  const max = niceMax(Math.max(...vals)), n = arr.length;
  g.strokeStyle = color; g.lineWidth = 1.5; g.beginPath();
  arr.forEach((v, i) => {
    const x = (w * i) / (n - 1);
    const y = h - 2 - ((h - 4) * (v || 0)) / max;
    i ? g.lineTo(x, y) : g.moveTo(x, y);
  });
  g.stroke();
}

const hist = { pps: new Series(), lat: new Series(), drops: new Series(),
  calls: new Series(), ports: new Series(), kpi: new Series() };
let frames = 0, lastTop = [];
const $ = (id) => document.getElementById(id);

function onFrame(f) {
  const t = f.uptime_s;
  const pps = {};
  let total = 0, drops = 0, p50 = 0, p99 = 0;
  for (const w of f.workers) {
    pps[`worker ${w.worker} (${w.backend})`] = w.rx_pps;
    total += w.rx_pps; drops += w.drop_pps;
    p50 = Math.max(p50, w.p50_us); p99 = Math.max(p99, w.p99_us);
  }
  hist.pps.push(t, pps);
  hist.lat.push(t, { p50: p50, p99: p99 });
  const dr = {};
  for (const [reason, v] of Object.entries(f.drops)) if (v > 0 || hist.drops.lines.has(reason)) dr[reason] = v;
  if (!Object.keys(dr).length) dr.total = 0;
  hist.drops.push(t, dr);
  hist.calls.push(t, { calls: f.calls, flows: f.flows, legs: f.legs });
  const pct = f.ports_total ? (100 * f.ports_in_use) / f.ports_total : 0;
  hist.ports.push(t, { "in use": pct });
  hist.kpi.push(t, { pps: total, drops: drops, p99: p99, calls: f.calls, flows: f.flows, ports: pct });
  lastTop = f.top_calls;
  frames += 1;

  $("k-pps").textContent = fmt(total);
  $("k-drops").textContent = fmt(drops);
  $("k-p99").textContent = fmt(p99) + " µs";
  $("k-calls").textContent = String(f.calls);
  $("k-flows").textContent = String(f.flows);
  $("k-ports").textContent = `${f.ports_in_use} / ${f.ports_total}`;
  $("uptime").textContent = uptime(f.uptime_s);
  $("nworkers").textContent = String(f.workers.length);
  $("frames").textContent = String(frames);
  document.body.dataset.frames = String(frames);
  document.body.dataset.lastPps = String(total);
  document.body.dataset.lastCalls = String(f.calls);
  draw();
}

function uptime(s) {
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

function draw() {
  lineChart($("c-pps"), hist.pps, { area: true });
  lineChart($("c-lat"), hist.lat, { colors: { p50: "#3ecf8e", p99: "#f5a623" } });
  lineChart($("c-drops"), hist.drops, {});
  lineChart($("c-calls"), hist.calls, {});
  lineChart($("c-ports"), hist.ports, { area: true, max: 100 });
  barChart($("c-top"), lastTop);
  $("c-top").dataset.points = String(lastTop.length);
  const k = hist.kpi.lines, col = "#4fb3ff";
  for (const name of ["pps", "drops", "p99", "calls", "flows", "ports"]) {
    if (k.has(name)) spark($("s-" + name), k.get(name), name === "drops" ? "#ff6b6b" : col);
  }
}

function connect() {
  const es = new EventSource("api/v1/live");
  es.onopen = () => { $("conn").textContent = "live"; $("conn").className = "pill on"; };
  es.addEventListener("frame", (e) => onFrame(JSON.parse(e.data)));
  es.onerror = () => { $("conn").textContent = "reconnecting"; $("conn").className = "pill off"; };
}

window.addEventListener("resize", draw);
connect();
