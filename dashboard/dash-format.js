// Small pure helpers the dashboard modules share: formatting, element building, percentiles.

export function duration(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

export function bytes(count) {
  if (count === null || count === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = count, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export const ms = (value) => (value === null || value === undefined ? "–" : `${Math.round(value)} ms`);

export const clock = (epochSeconds) => new Date(epochSeconds * 1000).toLocaleTimeString();

export const basename = (path) => path.split("/").pop();

/** The first 8 characters of a conversation id: enough to tell conversations apart at a glance. */
export const shortId = (id) => (id ? id.slice(0, 8) : "–");

/** An element with text content (never HTML: transcripts and names come from outside). */
export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

export function row(cells, header = 0) {
  const tr = document.createElement("tr");
  cells.forEach((text, i) => {
    const cell = el(i < header ? "th" : "td", text);
    if (i < header) cell.scope = "row";
    else cell.className = "num";
    tr.append(cell);
  });
  return tr;
}

/** Linear interpolation between closest ranks, as edgevoice/metrics.py and numpy compute it. */
export function percentile(values, q) {
  const ordered = [...values].sort((a, b) => a - b);
  if (!ordered.length) return null;
  const position = q * (ordered.length - 1);
  const low = Math.floor(position), high = Math.min(low + 1, ordered.length - 1);
  return ordered[low] + (ordered[high] - ordered[low]) * (position - low);
}

/** A CSS custom property of the page, so the canvas charts follow the light or dark theme. */
export const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
