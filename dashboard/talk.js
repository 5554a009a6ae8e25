// The edgevoice browser voice client: microphone -> /ws (protocol v1, docs/protocol.md) -> speaker.
//
// This module is the page: its elements, its state and what it shows. The parts are
//   talk-socket.js   the connection: hello, sequence-numbered frames, reconnect, conversation id
//   protocol.js      every message read and written as docs/protocol.md says, checked
//   talk-capture.js  the microphone through capture-worklet.js (16 kHz Int16 frames)
//   talk-player.js   reply audio scheduled back to back on the AudioContext clock
//   talk-log.js      the conversation log
//   talk-timers.js   the timer card: this conversation's timers counting down, a ringing one's line
//
// window.edgevoiceTalk holds live counters for diagnostics (and the browser test).

import { Capture, microphoneProblem } from "./talk-capture.js";
import { ConversationLog } from "./talk-log.js";
import { Player } from "./talk-player.js";
import { Connection, isPermanentError, SEND_RATE } from "./talk-socket.js";
import { TimerCard } from "./talk-timers.js";

const TIMINGS_SHOWN_MS = 10000;
// Firefox never settles AudioContext.resume() when the system has no audio output: fail visibly.
const RESUME_TIMEOUT_MS = 5000;
const KEPT_TURNS = 100; // log entries and diagnostics kept; older ones are dropped

const diagnostics = {
  state: "connecting",
  conversation: null,
  captureRate: null,
  framesSent: 0,
  framesDropped: 0,
  transcripts: [],
  replies: [],
  turnsDone: 0,
  audioFramesReceived: 0,
  audioSecondsScheduled: 0,
  audioSourcesPending: 0, // scheduled and not yet ended
  interrupted: 0,
  gaps: 0,
  errors: [],
  connects: 0,
};
window.edgevoiceTalk = diagnostics;

function keep(list, item) {
  list.push(item);
  if (list.length > KEPT_TURNS) list.shift();
}

// ---- page elements ---------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"),
  talk: $("talk"),
  forget: $("new-conversation"),
  notice: $("notice"),
  pairHint: $("pair-hint"),
  liveTranscript: $("live-transcript"),
  liveReply: $("live-reply"),
  timings: $("timings"),
  log: $("log"),
};
const timerCard = new TimerCard($("timers-card"), $("timers"));

const STATUS_TEXT = {
  connecting: "Connecting…",
  ready: "Ready: press Talk to start",
  listening: "Listening",
  reconnecting: "Reconnecting",
  error: "Error",
};

// ---- state -----------------------------------------------------------------------------------

const connection = new Connection({
  opening: () => {
    diagnostics.connects += 1;
  },
  event: onEvent,
  audio: onAudio,
  takenOver: () => {
    fail("this conversation was opened in another window; press Talk to take it back");
    stopTalking();
  },
  unusable: (reason) => {
    fail(`cannot talk to this box: ${reason}`);
    stopTalking();
  },
  changed: render,
});
const log = new ConversationLog(ui.log, KEPT_TURNS);
let context = null;
let capture = null;
let player = null;
let errorText = ""; // a problem that puts the page in the error state until the next start
let detailText = ""; // what the current turn is doing
let activeTurn = null; // the turn between speech_started and turn_done, if any
let timingsTimer = null;

function render() {
  let state;
  if (errorText) state = "error";
  else if (!connection.connected) {
    state = connection.everConnected || diagnostics.connects > 1 ? "reconnecting" : "connecting";
  } else state = capture && capture.running ? "listening" : "ready";
  diagnostics.state = state;
  let text = STATUS_TEXT[state];
  if (state === "error") text = `Error: ${errorText}`;
  else if (state === "reconnecting" && connection.retrying) {
    text += ` in ${Math.max(1, Math.round((connection.retryAt - Date.now()) / 1000))} s`;
  } else if (state === "listening" && detailText) text += ` · ${detailText}`;
  ui.status.textContent = text;
  ui.status.dataset.state = state;
  const talking = Boolean(capture && capture.running);
  ui.talk.textContent = talking ? "Stop" : "Talk";
  ui.talk.setAttribute("aria-pressed", String(talking));
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = !text;
}

function fail(text) {
  errorText = text;
  keep(diagnostics.errors, { code: "client", message: text });
  render();
}

// ---- server events ---------------------------------------------------------------------------

function onEvent(event) {
  switch (event.type) {
    case "ready":
      activeTurn = null;
      log.newConnection();
      timerCard.clear();
      if (player) player.newConnection();
      diagnostics.conversation = event.conversation;
      showNotice(event.resumed ? "Resumed the earlier conversation." : "");
      break;
    case "speech_started":
      activeTurn = event.turn;
      showNotice(""); // an earlier busy or error notice is stale once a new turn begins
      log.entry(event.turn);
      ui.liveTranscript.textContent = "…";
      ui.liveReply.textContent = "";
      detailText = "hearing you";
      break;
    case "speech_stopped":
      detailText = "thinking";
      break;
    case "partial_transcript":
      ui.liveTranscript.textContent = `${event.text}…`;
      break;
    case "transcript": {
      keep(diagnostics.transcripts, event.text);
      const turn = log.entry(event.turn);
      turn.you.textContent = event.text || "(nothing understood)";
      ui.liveTranscript.textContent = event.text || "(nothing understood)";
      if (!event.text) detailText = "";
      break;
    }
    case "reply_text": {
      const turn = log.entry(event.turn);
      turn.assistant.textContent += event.delta;
      ui.liveReply.setAttribute("aria-busy", "true");
      ui.liveReply.textContent += event.delta;
      detailText = "replying";
      break;
    }
    case "interrupted":
      if (activeTurn === event.turn) activeTurn = null;
      if (player) player.cut(event.turn);
      diagnostics.interrupted += 1;
      log.markInterrupted(event.turn);
      break;
    case "turn_done":
      finishTurn(event);
      break;
    case "busy":
      keep(diagnostics.errors, { code: "busy", message: event.message });
      showNotice(`The assistant is busy; please try again. (${event.message})`);
      detailText = "";
      break;
    case "error":
      keep(diagnostics.errors, { code: event.code, message: event.message });
      showNotice(`Error: ${event.message}`);
      if (isPermanentError(event)) errorText = event.message; // the connection will not retry
      if (event.code === "unauthorized") ui.pairHint.hidden = false;
      break;
    case "gap":
      diagnostics.gaps += event.missing;
      break;
    case "timer":
      timerCard.update(event); // a ring's chime and line come as audio of a turn of their own
      break;
    default:
      return; // reply_audio_start/end, bye, and types a newer server adds
  }
  render();
}

function onAudio(turn, sampleRate, pcm) {
  diagnostics.audioFramesReceived += 1;
  if (player && player.play(turn, sampleRate, pcm)) diagnostics.audioSecondsScheduled += pcm.length / sampleRate;
}

function finishTurn(event) {
  if (activeTurn === event.turn) activeTurn = null;
  diagnostics.turnsDone += 1;
  keep(diagnostics.replies, event.reply);
  ui.liveReply.setAttribute("aria-busy", "false");
  detailText = "";
  if (!event.transcript) {
    log.remove(event.turn); // nothing was understood: no entry worth keeping
    return;
  }
  const turn = log.entry(event.turn);
  turn.you.textContent = event.transcript;
  turn.assistant.textContent = event.reply + (event.interrupted ? " …" : "");
  if (event.interrupted) turn.item.classList.add("interrupted");
  showTimings(event.timings || {});
}

function showTimings(timings) {
  // Stages count from the end-of-turn decision; `decided` is how long after the last voiced audio
  // that came, so adding it gives what the speaker waited.
  const heard = typeof timings.decided === "number" ? timings.decided : 0;
  const parts = [
    ["turn over", typeof timings.decided === "number" ? 0 : null],
    ["transcribed", timings.stt_done],
    ["first word", timings.first_token],
    ["first audio", timings.first_audio],
    ["reply done", timings.last_audio],
  ]
    .filter(([, ms]) => typeof ms === "number")
    .map(([name, ms]) => `${name} ${Math.round(ms + heard)} ms`);
  if (parts.length === 0) return;
  ui.timings.textContent = `After you stopped speaking: ${parts.join(" · ")}`;
  ui.timings.hidden = false;
  clearTimeout(timingsTimer);
  timingsTimer = setTimeout(() => {
    ui.timings.hidden = true;
  }, TIMINGS_SHOWN_MS);
}

// ---- talk / stop -----------------------------------------------------------------------------

function sendAudio(pcm) {
  if (connection.sendAudio(pcm)) diagnostics.framesSent += 1;
  else diagnostics.framesDropped += 1;
}

function within(promise, ms, message) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

async function startTalking() {
  ui.talk.disabled = true;
  try {
    if (!context) {
      context = new AudioContext({ latencyHint: "interactive" });
      capture = new Capture(context, SEND_RATE);
      player = new Player(context, (pending) => {
        diagnostics.audioSourcesPending = pending;
      });
    }
    await within(context.resume(), RESUME_TIMEOUT_MS, "no audio output answered; check the speaker or headphones");
    await capture.start(sendAudio, () => {
      stopTalking();
      fail("the microphone stopped (unplugged or taken by another program)");
    });
    diagnostics.captureRate = context.sampleRate;
    errorText = "";
    if (!connection.open) connection.reconnectNow();
  } catch (err) {
    fail(microphoneProblem(err));
  } finally {
    ui.talk.disabled = false;
    render();
  }
}

// Stop means stop: the microphone goes off, a turn under way or a reply still playing is cut, and
// a timer of this conversation that rings stops ringing (the server stops it on `interrupt`).
function stopTalking() {
  if (capture) capture.stop();
  const playing = Boolean(player && player.playing);
  if (activeTurn !== null || playing || timerCard.ringing) {
    if (player && activeTurn !== null) player.cut(activeTurn);
    else if (player) player.stop();
    connection.send({ type: "interrupt" });
  }
  detailText = "";
  render();
}

function forgetConversation() {
  connection.forgetConversation();
  diagnostics.conversation = null;
  if (player) player.stop();
  log.clear();
  ui.liveTranscript.textContent = "";
  ui.liveReply.textContent = "";
  showNotice("");
  connection.reconnectNow();
}

ui.talk.addEventListener("click", () => {
  if (capture && capture.running) stopTalking();
  else startTalking();
});
ui.forget.addEventListener("click", forgetConversation);
// The reconnect countdown in the status line.
setInterval(() => {
  if (connection.retrying) render();
}, 1000);

connection.start();
