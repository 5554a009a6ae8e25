// The latency charts (uPlot, vendored) and the tables beside them that give the same numbers as text.
import uPlot from "./vendor/uplot/uPlot.esm.js";
import { clock, cssVar, ms, percentile, row, shortId } from "./dash-format.js";

export const WATERFALL_TURNS = 20;
export const PERCENTILE_WINDOW = 20;
const TABLE_ROWS = 10;
const HEIGHT = 220;

// Drawn longest first, so each shorter stage paints over the start of the longer one: a waterfall.
const STAGES = [
  { key: "first_audio", label: "→ first audio", color: "--stage-audio" },
  { key: "first_token", label: "→ first token", color: "--stage-token" },
  { key: "stt_done", label: "→ STT done", color: "--stage-stt" },
];

const charts = new Map();
let waterfallLabels = []; // read by the axis on every redraw, so setData keeps them current

function width(container) {
  return Math.max(240, Math.floor(container.getBoundingClientRect().width));
}

function axis(extra) {
  const stroke = cssVar("--muted"), grid = cssVar("--grid");
  return { stroke, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, ...extra };
}

/** Make the chart on first data, then only swap its data; made again when the theme changes. */
function draw(id, makeOptions, data) {
  const container = document.getElementById(id);
  let chart = charts.get(id);
  if (!chart) {
    chart = new uPlot({ ...makeOptions(), width: width(container), height: HEIGHT }, data, container);
    charts.set(id, chart);
  } else {
    chart.setData(data);
  }
}

function waterfallOptions() {
  const bars = uPlot.paths.bars({ size: [0.7, 28], align: 0 });
  return {
    legend: { live: false },
    cursor: { show: false },
    scales: {
      x: { time: false, ori: 1, dir: 1, range: (_u, min, max) => [min - 0.5, max + 0.5] },
      y: { ori: 0, dir: 1, range: (_u, _min, max) => [0, Math.max(100, max * 1.05)] },
    },
    axes: [
      axis({ side: 3, size: 110, incrs: [1], values: (_u, splits) => splits.map((i) => waterfallLabels[i] ?? "") }),
      axis({ side: 2, label: "ms after the end of speech", values: (_u, splits) => splits.map((v) => `${v}`) }),
    ],
    series: [
      {},
      ...STAGES.map((stage) => ({
        label: stage.label,
        fill: cssVar(stage.color),
        stroke: cssVar(stage.color),
        paths: bars,
        points: { show: false },
      })),
    ],
  };
}

function percentileOptions() {
  return {
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(100, max * 1.1)] } },
    axes: [axis({}), axis({ label: "ms to first audio", size: 60 })],
    series: [
      {},
      {
        label: "turn", stroke: cssVar("--stage-token"), width: 0,
        points: { show: true, size: 6, fill: cssVar("--stage-token") }, paths: () => null,
      },
      { label: "p50", stroke: cssVar("--stage-stt"), width: 2, points: { show: true, size: 4 } },
      { label: "p95", stroke: cssVar("--stage-audio"), width: 2, dash: [6, 4], points: { show: true, size: 4 } },
    ],
  };
}

const turnLabel = (turn) => `${turn.client} ${shortId(turn.conversation)} #${turn.turn}`;
const barLabel = (turn) => `${turn.client.slice(0, 8)} ${(turn.conversation ?? "").slice(0, 4)} #${turn.turn}`;

function renderWaterfall(turns) {
  // Oldest first along the turn axis, which runs up the page: the newest turn is the top bar, as in the table.
  const recent = turns.slice(-WATERFALL_TURNS);
  waterfallLabels = [null, ...recent.map(barLabel)];
  const index = recent.map((_t, i) => i + 1);
  const data = [index, ...STAGES.map((s) => recent.map((t) => t.timings_ms[s.key] ?? null))];
  draw("waterfall", waterfallOptions, data);
  const body = document.querySelector("#waterfall-table tbody");
  body.replaceChildren(
    ...recent.slice(-TABLE_ROWS).reverse().map((t) =>
      row([turnLabel(t), ms(t.timings_ms.stt_done), ms(t.timings_ms.first_token), ms(t.timings_ms.first_audio)], 1)),
  );
}

/** The wait a person feels: from the last voiced audio the box heard (turns logged before it was
 * recorded: from the end-of-turn decision). */
export function feltFirstAudio(turn) {
  return turn.timings_ms.felt_first_audio ?? turn.timings_ms.first_audio ?? null;
}

function renderPercentiles(turns) {
  const timed = turns.filter((t) => feltFirstAudio(t) !== null);
  const points = timed.map((t, i) => {
    const window = timed.slice(Math.max(0, i + 1 - PERCENTILE_WINDOW), i + 1).map(feltFirstAudio);
    return { at: t.at, value: feltFirstAudio(t), p50: percentile(window, 0.5), p95: percentile(window, 0.95) };
  });
  const data = [points.map((p) => p.at), points.map((p) => p.value), points.map((p) => p.p50), points.map((p) => p.p95)];
  draw("percentiles", percentileOptions, data);
  const body = document.querySelector("#percentiles-table tbody");
  body.replaceChildren(
    ...points.slice(-TABLE_ROWS).reverse().map((p) => row([clock(p.at), ms(p.value), ms(p.p50), ms(p.p95)], 1)),
  );
}

let lastTurns = [];

/** Show the turns (oldest first, as /api/turns gives them) in both charts and tables. */
export function renderLatency(turns) {
  lastTurns = turns;
  const empty = turns.length === 0;
  document.getElementById("latency-empty").hidden = !empty;
  document.getElementById("latency-section").classList.toggle("empty", empty);
  if (empty) return;
  renderWaterfall(turns);
  renderPercentiles(turns);
}

function remake() {
  for (const chart of charts.values()) chart.destroy();
  charts.clear();
  renderLatency(lastTurns);
}

/** Follow the container widths and the light/dark theme. */
export function watchLayout() {
  const observer = new ResizeObserver(() => {
    for (const [id, chart] of charts) {
      const w = width(document.getElementById(id));
      if (w !== chart.width) chart.setSize({ width: w, height: HEIGHT });
    }
  });
  for (const id of ["waterfall", "percentiles"]) observer.observe(document.getElementById(id));
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", remake);
}
