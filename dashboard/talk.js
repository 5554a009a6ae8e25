// The edgevoice browser voice client: microphone -> /ws (protocol v1, docs/protocol.md) -> speaker.
//
// One WebSocket, opened when the page loads and reopened with exponential backoff when it drops;
// the conversation id from `ready` is kept in localStorage so a reload or a reconnect resumes it.
// The microphone goes through capture-worklet.js (16 kHz Int16 frames); reply audio is played
// by scheduling one AudioBufferSourceNode per frame back to back on the AudioContext clock.
//
// window.edgevoiceTalk holds live counters for diagnostics (and the browser test).

const PROTOCOL_VERSION = 1;
const SEND_RATE = 16000;
const CAPTURE_FRAME = 1024; // samples at the capture rate per posted frame, the Web Audio norm
const CLIENT_NAME = "browser";
const CONVERSATION_KEY = "edgevoice.conversation";
const CLIENT_HEADER_BYTES = 4;
const SERVER_HEADER_BYTES = 16;
const MAX_BUFFERED_BYTES = 64 * 1024; // ~2 s of 16 kHz audio unsent: drop frames, never queue without bound
const BACKOFF_FIRST_S = 1;
const BACKOFF_MAX_S = 30;
const PLAYBACK_LEAD_S = 0.05; // a turn's first frame starts this far ahead, so the next one can follow on time
const TIMINGS_SHOWN_MS = 10000;
const KEPT_TURNS = 100; // log entries and diagnostics kept; older ones are dropped
const CLOSE_TAKEN_OVER = 4001;
const PERMANENT_ERRORS = new Set(["unsupported_protocol", "bad_sample_rate"]);

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

// localStorage throws in some private modes and sandboxed frames: then ids live for the page only.
const storedConversation = {
  get() {
    try {
      return localStorage.getItem(CONVERSATION_KEY);
    } catch {
      return null;
    }
  },
  set(id) {
    try {
      if (id) localStorage.setItem(CONVERSATION_KEY, id);
      else localStorage.removeItem(CONVERSATION_KEY);
    } catch {
      // nothing to do: the id is still held in memory for this page
    }
  },
};

/** Reply audio: frames scheduled back to back; everything scheduled stops at once on an interrupt. */
class Player {
  constructor(context) {
    this.context = context;
    this.sources = new Set();
    this.nextTime = 0;
    this.cutTurns = new Set(); // turns interrupted on this connection: their late frames are ignored
  }

  get playing() {
    return this.sources.size > 0;
  }

  /** Schedule one frame; false when it was dropped. */
  play(turn, sampleRate, pcm) {
    if (this.cutTurns.has(turn) || pcm.length === 0) return false;
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
    const buffer = this.context.createBuffer(1, samples.length, sampleRate);
    buffer.copyToChannel(samples, 0);
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.context.destination);
    const now = this.context.currentTime;
    if (this.nextTime < now) this.nextTime = now + PLAYBACK_LEAD_S; // first frame, or the stream ran dry
    source.start(this.nextTime);
    this.nextTime += buffer.duration;
    this.sources.add(source);
    source.addEventListener("ended", () => {
      this.sources.delete(source);
      diagnostics.audioSourcesPending = this.sources.size;
    });
    diagnostics.audioSourcesPending = this.sources.size;
    return true;
  }

  cut(turn) {
    this.cutTurns.add(turn);
    this.stop();
  }

  stop() {
    for (const source of this.sources) {
      try {
        source.stop();
      } catch {
        // already stopped
      }
      source.disconnect();
    }
    this.sources.clear();
    diagnostics.audioSourcesPending = 0;
    this.nextTime = 0;
  }

  /** Turn numbers start again at 1 on a new connection. */
  newConnection() {
    this.cutTurns.clear();
  }
}

/** The microphone, through the capture worklet, as 16 kHz Int16Array frames. */
class Capture {
  constructor(context) {
    this.context = context;
    this.stream = null;
    this.node = null;
    this.source = null;
    this.moduleLoaded = false;
  }

  get running() {
    return this.stream !== null;
  }

  async start(onFrame, onEnded) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("This page cannot use the microphone: browsers allow it only over HTTPS or on localhost.");
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    try {
      if (!this.moduleLoaded) {
        await this.context.audioWorklet.addModule(new URL("capture-worklet.js", import.meta.url));
        this.moduleLoaded = true;
      }
      this.source = this.context.createMediaStreamSource(stream);
      this.node = new AudioWorkletNode(this.context, "edgevoice-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1, // silent; connected so that every browser keeps pulling the node
        outputChannelCount: [1],
        channelCount: 1,
        channelCountMode: "explicit",
        processorOptions: { targetRate: SEND_RATE, frameSize: CAPTURE_FRAME },
      });
    } catch (err) {
      for (const track of stream.getTracks()) track.stop();
      throw err;
    }
    this.node.port.onmessage = (event) => onFrame(event.data);
    this.source.connect(this.node);
    this.node.connect(this.context.destination);
    for (const track of stream.getAudioTracks()) track.addEventListener("ended", onEnded);
    this.stream = stream;
  }

  stop() {
    if (this.node) {
      this.node.port.postMessage("stop");
      this.node.port.onmessage = null;
      this.node.disconnect();
    }
    if (this.source) this.source.disconnect();
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.node = this.source = this.stream = null;
  }
}

// ---- page elements ---------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"),
  talk: $("talk"),
  forget: $("new-conversation"),
  notice: $("notice"),
  liveTranscript: $("live-transcript"),
  liveReply: $("live-reply"),
  timings: $("timings"),
  log: $("log"),
};

const STATUS_TEXT = {
  connecting: "Connecting…",
  ready: "Ready: press Talk to start",
  listening: "Listening",
  reconnecting: "Reconnecting",
  error: "Error",
};

// ---- state -----------------------------------------------------------------------------------

let socket = null;
let connected = false; // `ready` received on the current socket
let everConnected = false;
let halted = false; // do not reconnect until the user presses Talk
let backoffS = BACKOFF_FIRST_S;
let retryTimer = null;
let retryAt = 0;
let sendSeq = 0;
let conversation = storedConversation.get();
let context = null;
let capture = null;
let player = null;
let errorText = ""; // a problem that puts the page in the error state until the next start
let detailText = ""; // what the current turn is doing
let activeTurn = null; // the turn between speech_started and turn_done, if any
let timingsTimer = null;
const turns = new Map(); // turn number on this connection -> its log entry

function render() {
  let state;
  if (errorText) state = "error";
  else if (!connected) state = everConnected || diagnostics.connects > 1 ? "reconnecting" : "connecting";
  else state = capture && capture.running ? "listening" : "ready";
  diagnostics.state = state;
  let text = STATUS_TEXT[state];
  if (state === "error") text = `Error: ${errorText}`;
  else if (state === "reconnecting" && retryTimer !== null) {
    text += ` in ${Math.max(1, Math.round((retryAt - Date.now()) / 1000))} s`;
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

// ---- connection ------------------------------------------------------------------------------

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  halted = false;
  diagnostics.connects += 1;
  const ws = new WebSocket(socketUrl());
  ws.binaryType = "arraybuffer";
  socket = ws;
  ws.addEventListener("open", () => {
    const hello = { type: "hello", protocol: PROTOCOL_VERSION, sample_rate: SEND_RATE, client: CLIENT_NAME };
    if (conversation) hello.conversation = conversation;
    ws.send(JSON.stringify(hello));
  });
  ws.addEventListener("message", (event) => {
    if (ws !== socket) return;
    if (typeof event.data === "string") onEvent(event.data);
    else onAudio(event.data);
  });
  ws.addEventListener("close", (event) => {
    if (ws !== socket) return;
    socket = null;
    connected = false;
    if (event.code === CLOSE_TAKEN_OVER) {
      halted = true;
      fail("this conversation was opened in another window; press Talk to take it back");
      stopTalking();
    } else if (!halted) {
      scheduleReconnect();
    }
    render();
  });
  render();
}

function scheduleReconnect() {
  const delayS = backoffS;
  backoffS = Math.min(backoffS * 2, BACKOFF_MAX_S);
  retryAt = Date.now() + delayS * 1000;
  retryTimer = setTimeout(connect, delayS * 1000);
}

function reconnectNow() {
  if (socket) {
    const old = socket;
    socket = null;
    connected = false;
    old.close(1000);
  }
  backoffS = BACKOFF_FIRST_S;
  connect();
}

function send(message) {
  if (socket && connected) socket.send(JSON.stringify(message));
}

function sendAudio(pcm) {
  if (!socket || !connected || socket.bufferedAmount > MAX_BUFFERED_BYTES) {
    diagnostics.framesDropped += 1;
    return;
  }
  const frame = new Uint8Array(CLIENT_HEADER_BYTES + pcm.byteLength);
  new DataView(frame.buffer).setUint32(0, sendSeq, true);
  // Int16Array is in the platform's byte order, little-endian on every platform browsers run on.
  frame.set(new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength), CLIENT_HEADER_BYTES);
  socket.send(frame.buffer);
  sendSeq = (sendSeq + 1) >>> 0;
  diagnostics.framesSent += 1;
}

// ---- server events ---------------------------------------------------------------------------

function onEvent(text) {
  let event;
  try {
    event = JSON.parse(text);
  } catch {
    return;
  }
  switch (event.type) {
    case "ready":
      connected = true;
      everConnected = true;
      backoffS = BACKOFF_FIRST_S;
      sendSeq = 0;
      activeTurn = null;
      turns.clear();
      if (player) player.newConnection();
      conversation = event.conversation;
      diagnostics.conversation = conversation;
      storedConversation.set(conversation);
      showNotice(event.resumed ? "Resumed the earlier conversation." : "");
      break;
    case "speech_started":
      activeTurn = event.turn;
      showNotice(""); // an earlier busy or error notice is stale once a new turn begins
      entry(event.turn);
      ui.liveTranscript.textContent = "…";
      ui.liveReply.textContent = "";
      detailText = "hearing you";
      break;
    case "speech_stopped":
      detailText = "thinking";
      break;
    case "transcript": {
      keep(diagnostics.transcripts, event.text);
      const turn = entry(event.turn);
      turn.you.textContent = event.text || "(nothing understood)";
      ui.liveTranscript.textContent = event.text || "(nothing understood)";
      if (!event.text) detailText = "";
      break;
    }
    case "reply_text": {
      const turn = entry(event.turn);
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
      if (turns.has(event.turn)) turns.get(event.turn).item.classList.add("interrupted");
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
      if (event.code === "bad_conversation") {
        conversation = null;
        storedConversation.set(null);
      }
      if (event.fatal && PERMANENT_ERRORS.has(event.code)) {
        halted = true;
        errorText = event.message;
      }
      break;
    case "gap":
      diagnostics.gaps += event.missing;
      break;
    default:
      return; // reply_audio_start/end, bye, and types a newer server adds
  }
  render();
}

function onAudio(data) {
  if (data.byteLength < SERVER_HEADER_BYTES || (data.byteLength - SERVER_HEADER_BYTES) % 2) return;
  const header = new DataView(data, 0, SERVER_HEADER_BYTES);
  const turn = header.getUint32(0, true);
  const sampleRate = header.getUint32(8, true);
  const pcm = new Int16Array(data, SERVER_HEADER_BYTES);
  diagnostics.audioFramesReceived += 1;
  if (player && player.play(turn, sampleRate, pcm)) diagnostics.audioSecondsScheduled += pcm.length / sampleRate;
}

// ---- conversation log ------------------------------------------------------------------------

function line(className, who) {
  const paragraph = document.createElement("p");
  paragraph.className = className;
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who;
  const text = document.createElement("span");
  text.className = "text";
  paragraph.append(label, " ", text);
  return { paragraph, text };
}

function entry(number) {
  let turn = turns.get(number);
  if (!turn) {
    const item = document.createElement("li");
    item.className = "turn";
    const you = line("you", "You");
    const assistant = line("assistant", "Assistant");
    item.append(you.paragraph, assistant.paragraph);
    ui.log.append(item);
    while (ui.log.children.length > KEPT_TURNS) ui.log.firstElementChild.remove();
    turn = { item, you: you.text, assistant: assistant.text };
    turns.set(number, turn);
  }
  return turn;
}

function finishTurn(event) {
  if (activeTurn === event.turn) activeTurn = null;
  diagnostics.turnsDone += 1;
  keep(diagnostics.replies, event.reply);
  ui.liveReply.setAttribute("aria-busy", "false");
  detailText = "";
  if (!event.transcript) {
    const turn = turns.get(event.turn);
    if (turn) turn.item.remove(); // nothing was understood: no entry worth keeping
    turns.delete(event.turn);
    return;
  }
  const turn = entry(event.turn);
  turn.you.textContent = event.transcript;
  turn.assistant.textContent = event.reply + (event.interrupted ? " …" : "");
  if (event.interrupted) turn.item.classList.add("interrupted");
  showTimings(event.timings || {});
}

function showTimings(timings) {
  const parts = [
    ["transcribed", timings.stt_done],
    ["first word", timings.first_token],
    ["first audio", timings.first_audio],
    ["reply done", timings.last_audio],
  ]
    .filter(([, ms]) => typeof ms === "number")
    .map(([name, ms]) => `${name} ${Math.round(ms)} ms`);
  if (parts.length === 0) return;
  ui.timings.textContent = `After you stopped speaking: ${parts.join(" · ")}`;
  ui.timings.hidden = false;
  clearTimeout(timingsTimer);
  timingsTimer = setTimeout(() => {
    ui.timings.hidden = true;
  }, TIMINGS_SHOWN_MS);
}

// ---- talk / stop -----------------------------------------------------------------------------

async function startTalking() {
  ui.talk.disabled = true;
  try {
    if (!context) {
      context = new AudioContext({ latencyHint: "interactive" });
      capture = new Capture(context);
      player = new Player(context);
    }
    await context.resume();
    await capture.start(sendAudio, () => {
      stopTalking();
      fail("the microphone stopped (unplugged or taken by another program)");
    });
    diagnostics.captureRate = context.sampleRate;
    errorText = "";
    if (!socket) reconnectNow();
  } catch (err) {
    fail(microphoneProblem(err));
  } finally {
    ui.talk.disabled = false;
    render();
  }
}

// Stop means stop: the microphone goes off, and a turn under way or a reply still playing is cut.
function stopTalking() {
  if (capture) capture.stop();
  const playing = Boolean(player && player.playing);
  if (activeTurn !== null || playing) {
    if (player && activeTurn !== null) player.cut(activeTurn);
    else if (player) player.stop();
    send({ type: "interrupt" });
  }
  detailText = "";
  render();
}

function microphoneProblem(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "the microphone was not allowed; allow it in the browser's site settings";
    case "NotFoundError":
    case "OverconstrainedError":
      return "no microphone was found";
    case "NotReadableError":
      return "the microphone is in use by another program";
    default:
      return err && err.message ? err.message : String(err);
  }
}

function forgetConversation() {
  conversation = null;
  diagnostics.conversation = null;
  storedConversation.set(null);
  if (player) player.stop();
  turns.clear();
  ui.log.replaceChildren();
  ui.liveTranscript.textContent = "";
  ui.liveReply.textContent = "";
  showNotice("");
  reconnectNow();
}

ui.talk.addEventListener("click", () => {
  if (capture && capture.running) stopTalking();
  else startTalking();
});
ui.forget.addEventListener("click", forgetConversation);
window.addEventListener("online", () => {
  if (!socket && !halted) reconnectNow();
});
// The reconnect countdown in the status line.
setInterval(() => {
  if (retryTimer !== null) render();
}, 1000);

connect();
