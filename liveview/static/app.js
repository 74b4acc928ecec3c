// The live view: asks the server for the overview and the selected machine's trends every
// POLL_MS while the page is open (and nothing while it is hidden), and draws them.
"use strict";

const POLL_MS = 2000;
const TREND_S = 600;
const STATES = ["running", "idle", "stopped", "faulted", "unknown"];
const SVG = "http://www.w3.org/2000/svg";

let levels = {};
let selected = null;
let trend = { machine: null, until: null, series: {}, charts: {}, asking: false };
let topSignal = null;

function el(tag, attrs = {}, text = null) {
  const node = tag.includes(":") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function number(value) {
  if (value === null || value === undefined) return "–";
  if (Math.abs(value) >= 1e5 || Number.isInteger(value)) return String(Math.round(value));
  return Number(value.toPrecision(4)).toString();
}

function withUnit(value, unit) {
  const shown = unit && unit !== "count" ? "\u00a0" + unit : "";
  return number(value) + (value === null ? "" : shown);
}

function clock(seconds) {
  return seconds === null ? "under way" : new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

// A time of day today, with its date on another day (an alarm raised days ago).
function stamp(seconds) {
  const at = new Date(seconds * 1000);
  if (at.toDateString() === new Date().toDateString()) return clock(seconds);
  return at.toLocaleString([], { hour12: false, dateStyle: "short", timeStyle: "medium" });
}

function level(severity) {
  let name = "normal";
  for (const [candidate, floor] of Object.entries(levels)) if (severity >= floor) name = candidate;
  return name;
}

function severityBadge(severity) {
  if (severity === null || severity === undefined) return el("span", { class: "muted" }, "–");
  const name = level(severity);
  return el("span", { class: `sev ${name}`, title: `${name}: the score as a multiple of its limit` },
    `${severity.toFixed(1)} ${name}`);
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
  return response.json();
}

function drawLine(machines) {
  const svg = document.getElementById("line");
  svg.replaceChildren();
  const width = svg.clientWidth || 1000;
  const gap = 28;
  const box = Math.max(110, (width - gap * (machines.length - 1)) / Math.max(machines.length, 1));
  const height = 96;
  svg.setAttribute("viewBox", `0 0 ${width} 150`);
  svg.appendChild(el("svg:line", { x1: 0, y1: 58, x2: width, y2: 58, stroke: "#c9ccd1", "stroke-width": 6 }));
  machines.forEach((m, i) => {
    const x = i * (box + gap);
    const g = el("svg:g", { class: "machine", "data-machine": m.name, "data-state": m.state });
    g.addEventListener("click", () => selectMachine(m.name));
    const colour = `var(--${STATES.includes(m.state) ? m.state : "unknown"})`;
    const rect = el("svg:rect", { x, y: 10, width: box, height, rx: 8, fill: colour });
    if (m.anomaly) rect.setAttribute("stroke", "var(--critical)");
    if (m.anomaly) rect.setAttribute("stroke-width", 5);
    if (m.name === selected) rect.setAttribute("stroke-dasharray", m.anomaly ? "" : "4 3");
    if (m.name === selected && !m.anomaly) { rect.setAttribute("stroke", "#1d2127"); rect.setAttribute("stroke-width", 3); }
    g.appendChild(rect);
    g.appendChild(el("svg:text", { x: x + 10, y: 34, class: "name" }, m.name));
    g.appendChild(el("svg:text", { x: x + 10, y: 56, class: "state" }, m.state));
    const severity = m.severity === null ? "–" : `severity ${m.severity.toFixed(1)}`;
    g.appendChild(el("svg:text", { x: x + 10, y: 78, class: "state" }, severity));
    if (m.anomaly) {
      g.appendChild(el("svg:text", { x, y: 128, class: "flag", fill: "var(--critical)" },
        `ANOMALY: ${m.top_signal}`));
    }
    svg.appendChild(g);
  });
}

function drawLegend() {
  const legend = document.getElementById("legend");
  if (legend.childElementCount) return;
  for (const state of STATES) {
    const item = el("span");
    item.appendChild(el("i", { style: `background: var(--${state})` }));
    item.appendChild(document.createTextNode(state));
    legend.appendChild(item);
  }
  const flag = el("span");
  flag.appendChild(el("i", { style: "background: #fff; border: 3px solid var(--critical)" }));
  flag.appendChild(document.createTextNode("anomaly flagged (severity ≥ 1: the score past its limit)"));
  legend.appendChild(flag);
}

function drawEpisodes(rows) {
  const body = document.querySelector("#episodes tbody");
  body.replaceChildren();
  document.getElementById("episodes-empty").hidden = rows.length > 0;
  for (const row of rows) {
    const f = row.fault, e = row.episode;
    const tr = el("tr", { class: e ? "has-episode" : "no-episode", "data-machine": (f || e).machine });
    tr.appendChild(el("td", {}, (f || e).machine));
    const what = el("td", { class: "fault", title: f ? f.text : "" }, f ? f.text.split(": ")[0] : "none on this machine");
    tr.appendChild(what);
    tr.appendChild(el("td", {}, f ? clock(f.start) : ""));
    tr.appendChild(el("td", {}, f ? clock(f.end) : ""));
    tr.appendChild(el("td", { class: "episode" }, e ? `${clock(e.start)} – ${e.end === null ? "open" : clock(e.end)}` : "not flagged"));
    tr.appendChild(el("td", { class: "top-signal" }, e ? e.top_signal : ""));
    const cell = el("td", { class: "severity" });
    if (e) cell.appendChild(severityBadge(e.peak_severity ?? row.current_severity ?? null));
    tr.appendChild(cell);
    tr.appendChild(el("td", { class: "num" }, row.delay_s === null ? "" : `${row.delay_s.toFixed(1)} s`));
    body.appendChild(tr);
  }
}

function levelBadge(name) {
  return el("span", { class: `sev ${name}`, title: "the PLC's severity as a level" }, name);
}

function alarmRow(alarm, cells) {
  const tr = el("tr", { "data-machine": alarm.machine, "data-condition": alarm.condition });
  for (const [cls, content] of cells) {
    const td = el("td", { class: cls });
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    tr.appendChild(td);
  }
  return tr;
}

function acked(alarm) {
  return ["acked " + (alarm.acked ? "ok" : "bad"), alarm.acked ? "yes" : "no"];
}

function drawAlarms(alarms) {
  const active = document.querySelector("#alarms-active tbody");
  active.replaceChildren(...alarms.active.map((a) => alarmRow(a, [
    ["level", levelBadge(a.level)], ["", a.machine], ["muted", a.source], ["condition", a.condition],
    ["message", a.message], ["since", a.since === null ? "before the look-back" : stamp(a.since)], acked(a),
  ])));
  document.getElementById("alarms-empty").hidden = alarms.active.length > 0;
  document.getElementById("alarms-active").hidden = alarms.active.length === 0;
  const journal = document.querySelector("#alarms-journal tbody");
  journal.replaceChildren(...alarms.journal.map((a) => alarmRow(a, [
    ["at", stamp(a.time)], ["level", levelBadge(a.level)], ["", a.machine], ["condition", a.condition],
    [a.active ? "state bad" : "state ok", a.active ? "ACTIVE" : "cleared"], acked(a),
    ["message", a.message], ["comment muted", a.comment],
  ])));
}

function drawConnectors(connectors) {
  const body = document.querySelector("#connectors tbody");
  body.replaceChildren();
  for (const c of connectors) {
    const tr = el("tr", { "data-connector": c.name });
    tr.appendChild(el("td", {}, c.name));
    tr.appendChild(el("td", { class: "muted" }, c.endpoint));
    tr.appendChild(el("td", { class: c.connected ? "ok" : "bad" }, c.connected ? "connected" : "DISCONNECTED"));
    tr.appendChild(el("td", { class: "num rate" }, c.samples_per_s === null ? "–" : c.samples_per_s.toFixed(0)));
    tr.appendChild(el("td", { class: "num" }, String(c.samples)));
    tr.appendChild(el("td", { class: c.errors ? "num bad" : "num" }, String(c.errors)));
    tr.appendChild(el("td", { class: "num" }, String(c.reconnects)));
    tr.appendChild(el("td", { class: "num" }, bytes(c.spool_bytes)));
    tr.appendChild(el("td", { class: c.spool_dropped ? "num bad" : "num" }, String(c.spool_dropped)));
    body.appendChild(tr);
  }
}

function bytes(n) {
  for (const [unit, scale] of [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]]) if (n >= scale) return `${(n / scale).toFixed(1)} ${unit}`;
  return `${n} B`;
}

function selectMachine(name) {
  if (name === selected) return;
  selected = name;
  for (const chart of Object.values(trend.charts)) chart.plot.destroy();
  trend = { machine: name, until: null, series: {}, charts: {}, asking: false };
  document.getElementById("trends").replaceChildren();
  document.getElementById("trend-machine").textContent = name;
  pollTrend();
}

function chartFor(signal, unit) {
  if (trend.charts[signal]) return trend.charts[signal];
  const box = el("div", { class: "chart", "data-signal": signal });
  const title = el("h3");
  title.appendChild(el("span", {}, unit && unit !== "count" ? `${signal} (${unit})` : signal));
  const value = el("span", { class: "value" }, "–");
  title.appendChild(value);
  box.appendChild(title);
  const trends = document.getElementById("trends");
  const after = [...trends.children].find((c) => c.dataset.signal > signal);
  trends.insertBefore(box, after || null);
  const width = Math.max(box.clientWidth, 260);
  const plot = new uPlot({
    width, height: 110, legend: { show: false }, cursor: { show: false },
    scales: { x: { time: true } },
    axes: [{ size: 24, font: "10px system-ui" }, { size: 46, font: "10px system-ui" }],
    series: [{}, { stroke: "#2f6fd6", width: 1.5, spanGaps: false }],
  }, [[], []], box);
  trend.charts[signal] = { box, value, plot, unit };
  return trend.charts[signal];
}

function drawTrend(update) {
  const cutoff = Date.now() / 1000 - TREND_S;
  for (const [signal, column] of Object.entries(update.series)) {
    const kept = trend.series[signal] || { t: [], v: [] };
    const newest = kept.t.length ? kept.t[kept.t.length - 1] : -Infinity;
    column.t.forEach((t, i) => { if (t > newest) { kept.t.push(t); kept.v.push(column.v[i]); } });
    const first = kept.t.findIndex((t) => t >= cutoff);
    if (first > 0) { kept.t.splice(0, first); kept.v.splice(0, first); }
    trend.series[signal] = kept;
    const chart = chartFor(signal, column.unit);
    chart.plot.setData([kept.t, kept.v]);
    chart.value.textContent = withUnit(kept.v[kept.v.length - 1], column.unit);
  }
  for (const [signal, chart] of Object.entries(trend.charts)) chart.box.classList.toggle("top", signal === topSignal);
}

async function pollTrend() {
  if (!selected || trend.asking) return;  // one request at a time: answers must not overlap
  const current = trend;
  current.asking = true;
  try {
    const after = current.until === null ? "" : `&after=${current.until}`;
    const update = await getJson(`/api/trend?machine=${encodeURIComponent(current.machine)}${after}`);
    if (current !== trend) return;  // another machine was selected meanwhile
    current.until = update.until;
    drawTrend(update);
  } finally {
    current.asking = false;
  }
}

async function pollOverview() {
  const view = await getJson("/api/overview");
  levels = view.levels;
  document.getElementById("title").textContent = view.title;
  document.title = `${view.title}: live view`;
  document.getElementById("updated").textContent = `updated ${clock(view.now)}`;
  const flagged = view.machines.find((m) => m.anomaly);
  if (!selected && view.machines.length) selectMachine((flagged || view.machines[0]).name);
  const current = view.machines.find((m) => m.name === selected);
  topSignal = current && current.anomaly ? current.top_signal : null;
  const severities = Object.fromEntries(view.machines.map((m) => [m.name, m.severity]));
  for (const row of view.ground_truth) if (row.episode) row.current_severity = severities[row.episode.machine];
  drawLine(view.machines);
  drawLegend();
  drawAlarms(view.alarms);
  drawEpisodes(view.ground_truth);
  drawConnectors(view.connectors);
}

async function tick() {
  if (!document.hidden) {
    try {
      await pollOverview();
      await pollTrend();
    } catch (error) {
      document.getElementById("updated").textContent = `no answer: ${error.message}`;
    }
  }
  setTimeout(tick, POLL_MS);
}

window.addEventListener("DOMContentLoaded", tick);
