// What the box's skills hold: the timers (from /api/status, counted down here every second) and
// the shopping list (from /api/list).
import { el } from "./dash-format.js";

let timers = []; // as /api/status gave them, each with `until`: when it ends on this page's clock

/** m:ss or h:mm:ss. */
export function countdown(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

function render() {
  const list = document.getElementById("timers");
  if (!timers.length) { list.replaceChildren(el("li", "no timers", "note")); return; }
  const now = performance.now() / 1000;
  list.replaceChildren(...timers.map((timer) => {
    const item = el("li", null, `timer ${timer.state}`);
    item.dataset.id = timer.id;
    const left = timer.state === "running" ? timer.until - now : timer.remaining_s;
    const shown = timer.state === "ringing" ? "ringing" : countdown(left) + (timer.state === "paused" ? " (paused)" : "");
    item.append(el("span", timer.label, "timer-label"), el("span", shown, "timer-left"));
    return item;
  }));
}

/** The timers of one /api/status answer; running ones count down from now (the box's clock may differ). */
export function showTimers(fromStatus = []) {
  const now = performance.now() / 1000;
  timers = fromStatus.map((timer) => ({ ...timer, until: now + timer.remaining_s }));
  render();
}

export function showList(items) {
  const list = document.getElementById("shopping-list");
  list.replaceChildren(...(items.length ? items.map((item) => el("li", item)) : [el("li", "empty", "note")]));
}

setInterval(render, 1000);
