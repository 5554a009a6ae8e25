// The live conversation feed: Server-Sent Events from /api/events, one entry per turn, newest first.
import { clock, el, ms, shortId } from "./dash-format.js";
import { ProtocolError, parseFeedMessage } from "./protocol.js";

export const FEED_LIMIT = 50;

const feed = () => document.getElementById("feed");

/** The entry for one turn of one conversation, made when its first event arrives. */
function entryFor(message, entries) {
  const key = `${message.client}\u0000${message.conversation}\u0000${message.turn}`;
  let entry = entries.get(key);
  if (entry) return entry;
  const li = el("li", null, "turn");
  li.dataset.source = "live";
  const head = el("p", null, "turn-head");
  head.append(
    el("span", message.client, "client"),
    el("span", `conversation ${shortId(message.conversation)}`, "conversation"),
    el("span", `turn ${message.turn}`, "turn-number"),
    el("time", clock(Date.now() / 1000)),
  );
  head.lastChild.dateTime = new Date().toISOString();
  const state = el("p", "speech started", "turn-state");
  const said = el("p", null, "said");
  const reply = el("p", null, "reply");
  li.append(head, state, said, reply);
  entry = { key, li, state, said, reply };
  entries.set(key, entry);
  feed().prepend(li);
  while (feed().children.length > FEED_LIMIT) {
    const oldest = feed().lastElementChild;
    for (const [k, e] of entries) if (e.li === oldest) entries.delete(k);
    oldest.remove();
  }
  document.getElementById("feed-empty").hidden = true;
  return entry;
}

function labelled(node, label, text) {
  node.replaceChildren(el("span", label, "label"), document.createTextNode(text));
}

function show(message, entries) {
  const entry = entryFor(message, entries);
  if (message.type === "speech_started") {
    entry.state.textContent = "speech started";
  } else if (message.type === "partial_transcript") {
    entry.state.textContent = "hearing…";
    labelled(entry.said, "Hearing: ", `${message.text}…`);
  } else if (message.type === "transcript") {
    entry.state.textContent = "heard, replying…";
    labelled(entry.said, "Heard: ", message.text);
  } else if (message.type === "turn_done") {
    const firstAudio = message.timings?.felt_first_audio ?? message.timings?.first_audio;
    const by = message.intent ? ` (skill ${message.intent})` : "";
    entry.state.textContent = message.interrupted
      ? "interrupted"
      : `done, first audio after ${ms(firstAudio)}${by}`;
    entry.li.classList.toggle("interrupted", Boolean(message.interrupted));
    entry.li.classList.add("done");
    // Text is null when the box is configured not to store what was said.
    if (message.transcript !== null) labelled(entry.said, "Heard: ", message.transcript);
    if (message.reply !== null) labelled(entry.reply, "Reply: ", message.reply);
  }
}

/**
 * Subscribe to the feed; onTurnDone runs after each finished turn, onTimer after each timer event
 * (a timer set, changed, rung or gone). EventSource reconnects by itself.
 */
export function startFeed(onTurnDone, onTimer = () => {}) {
  const entries = new Map();
  const state = document.getElementById("feed-state");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { state.textContent = "live"; });
  source.addEventListener("error", () => {
    state.textContent = source.readyState === EventSource.CLOSED ? "closed" : "reconnecting…";
  });
  for (const type of ["speech_started", "partial_transcript", "transcript", "turn_done"]) {
    source.addEventListener(type, (event) => {
      let message;
      try {
        message = parseFeedMessage(event.data);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        console.warn(`edgevoice: ignored a feed entry: ${err.message}`);
        return;
      }
      show(message, entries);
      if (type === "turn_done") onTurnDone(message);
    });
  }
  source.addEventListener("timer", (event) => {
    try {
      onTimer(parseFeedMessage(event.data));
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      console.warn(`edgevoice: ignored a feed entry: ${err.message}`);
    }
  });
  return source;
}
