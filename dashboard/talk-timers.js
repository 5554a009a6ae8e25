// The timer card of the voice client: this conversation's timers, from its `timer` events, each
// counting down every second; a ringing one shows the line the box says.
const countdown = (seconds) => {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
};

export class TimerCard {
  /** section: the card (hidden while there is no timer); list: where the timers go. */
  constructor(section, list) {
    this.section = section;
    this.list = list;
    this.timers = new Map(); // id -> the last event, with `until` on this page's clock
    setInterval(() => this.render(), 1000);
  }

  /** One `timer` event: a timer set, changed, rung or gone. */
  update(event) {
    if (event.event === "cancelled") this.timers.delete(event.id);
    else this.timers.set(event.id, { ...event, until: performance.now() / 1000 + event.remaining_s });
    this.render();
  }

  /** Whether one of this conversation's timers is ringing (Stop then stops it). */
  get ringing() {
    return [...this.timers.values()].some((timer) => timer.state === "ringing");
  }

  /** A new connection tells of its timers again as they change. */
  clear() {
    this.timers.clear();
    this.render();
  }

  render() {
    this.section.hidden = this.timers.size === 0;
    const now = performance.now() / 1000;
    this.list.replaceChildren(...[...this.timers.values()].map((timer) => {
      const item = document.createElement("li");
      item.className = `timer ${timer.state}`;
      const name = document.createElement("span");
      name.className = "timer-name";
      name.textContent = timer.name || `${countdown(timer.duration_s)} timer`;
      const left = document.createElement("span");
      left.className = "timer-left";
      if (timer.state === "ringing") left.textContent = timer.text || "done";
      else if (timer.state === "paused") left.textContent = `${countdown(timer.remaining_s)} (paused)`;
      else left.textContent = countdown(timer.until - now);
      item.append(name, left);
      return item;
    }));
  }
}
