// The dashboard: status polled from /healthz and /api/status (with the timers), the shopping list
// from /api/list, the live feed from /api/events,
// and latency charts from /api/turns, refreshed after each finished turn. A banner names the
// models that failed to load while the box is degraded. Paired devices, and the certificate's
// fingerprint, from /api/devices.
import { renderLatency, watchLayout } from "./dash-charts.js";
import { showModelHealth } from "./dash-banner.js";
import { refreshDevices } from "./dash-devices.js";
import { startFeed } from "./dash-feed.js";
import { basename, bytes, duration, el } from "./dash-format.js";
import { showList, showTimers } from "./dash-skills.js";

const STATUS_EVERY_MS = 3000;
const TURNS_EVERY_MS = 15000;
const TURNS_LIMIT = 200;

const field = (id, text) => { document.getElementById(id).textContent = text; };

async function getJson(url, alsoOk = []) {
  const response = await fetch(url, { cache: "no-store" });
  // 401: the box wants a token and this browser is not paired yet.
  if (response.status === 401) document.getElementById("pair-hint").hidden = false;
  if (!response.ok && !alsoOk.includes(response.status)) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function showEngines(engines, locations = {}) {
  const list = document.getElementById("engines");
  const names = Object.keys(engines);
  if (!names.length) { list.replaceChildren(el("li", "not loaded")); return; }
  list.replaceChildren(...names.map((name) => {
    const { state, waiting } = engines[name];
    const { location, url, ok, reason } = locations[name] || {};
    const down = ok === false;
    const item = el("li", null, `engine ${down ? "down" : state}`);
    item.append(el("span", name, "engine-name"), el("span", down ? "down" : state, "engine-state"));
    item.append(el("span", waiting ? `${waiting} waiting` : "no queue", "engine-queue"));
    // Where it runs: on this box, or on a server on the LAN (and why that server does not answer).
    const where = el("span", location === "remote" ? url : "on this box", "engine-where");
    if (down) where.title = reason;
    item.append(where);
    return item;
  }));
}

function showModels(models) {
  const rows = [];
  for (const [kind, model] of Object.entries(models)) {
    const files = model.error ? [{ path: model.error, bytes: null }] : model.files;
    files.forEach((file, i) => {
      const tr = document.createElement("tr");
      const head = el("th", i === 0 ? kind + (model.default ? " (default)" : "") : "");
      head.scope = "row";
      const name = el("td", model.error ? file.path : basename(file.path));
      if (!model.error) name.title = file.path;
      tr.append(head, name, el("td", file.bytes === null ? "missing" : bytes(file.bytes), "num"));
      rows.push(tr);
    });
  }
  document.querySelector("#models tbody").replaceChildren(...rows);
}

async function refreshStatus() {
  try {
    // 503 is /healthz saying the box is degraded: its body names the models that failed.
    const health = await getJson("/healthz", [503]);
    showModelHealth(health);
    field("box", health.box);
    document.title = `edgevoice ${health.box}`;
    field("state", health.status === "ok" ? "running" : health.status);
    const status = await getJson("/api/status");
    field("version", `${status.version} (protocol ${health.protocol})`);
    field("uptime", duration(status.uptime_s));
    field("clients", String(status.clients));
    field("conversations", String(health.conversations));
    field("mic", health.mic ? "listening" : "off");
    field("cpu", `${status.cpu.percent.toFixed(1)} % of one core (${status.cpu.seconds} s in all)`);
    field("memory", `${bytes(status.memory.rss)} resident, peak ${bytes(status.memory.peak_rss)}`);
    const turns = status.turns;
    field("turns-recorded", `${turns.recorded}` + (turns.dropped || turns.failed
      ? ` (${turns.dropped} dropped, ${turns.failed} failed)` : ""));
    showEngines(status.engines, status.engine_locations);
    showModels(status.models);
    showTimers(status.timers);
    showList((await getJson("/api/list")).items);
  } catch (err) {
    field("state", `unreachable (${err.message ?? err})`);
  }
}

let turnsPending = null;

/** One /api/turns request at a time; a refresh asked for meanwhile waits for it. */
function refreshTurns() {
  turnsPending ??= getJson(`/api/turns?limit=${TURNS_LIMIT}`)
    .then((reply) => renderLatency([...reply.turns].reverse())) // the API gives newest first
    .catch((err) => { field("latency-empty", `Could not read the turns: ${err.message ?? err}`); })
    .finally(() => { turnsPending = null; });
  return turnsPending;
}

watchLayout();
startFeed(() => { refreshTurns(); refreshStatus(); }, () => refreshStatus());
refreshStatus();
refreshTurns();
refreshDevices().catch(() => {});
setInterval(refreshStatus, STATUS_EVERY_MS);
setInterval(refreshTurns, TURNS_EVERY_MS);
