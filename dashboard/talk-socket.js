// The browser client's connection to /ws, protocol v1 (docs/protocol.md).
//
// One WebSocket, opened by start() and reopened with exponential backoff when it drops; the
// conversation id from `ready` is kept in localStorage so a reload or a reconnect resumes it.
// What goes over the wire, both ways, is read and written by protocol.js.

import {
  CLOSE_TAKEN_OVER,
  ProtocolError,
  clientAudioFrame,
  helloText,
  parseServerAudio,
  parseServerText,
} from "./protocol.js";

export const SEND_RATE = 16000;
const CLIENT_NAME = "browser";
const CONVERSATION_KEY = "edgevoice.conversation";
const MAX_BUFFERED_BYTES = 64 * 1024; // ~2 s of 16 kHz audio unsent: drop frames, never queue without bound
const BACKOFF_FIRST_S = 1;
const BACKOFF_MAX_S = 30;
// Retrying cannot fix these: the page says what to do instead (pairing, for unauthorized).
const PERMANENT_ERRORS = new Set(["unsupported_protocol", "bad_sample_rate", "unauthorized", "rate_limited"]);

/** A fatal error that reconnecting would only repeat. */
export function isPermanentError(event) {
  return Boolean(event.fatal) && PERMANENT_ERRORS.has(event.code);
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

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/**
 * The protocol side of the page. `handlers` are called back:
 * - opening(): a new socket is about to be opened
 * - event(event): a checked server message (protocol.js; `ready` already applied to the connection)
 * - audio(turn, sampleRate, pcm): a well-formed reply audio frame
 * - takenOver(): another window took the conversation; no reconnect until reconnectNow()
 * - unusable(reason): the box speaks a protocol this page cannot follow; no reconnect until reconnectNow()
 * - changed(): the connection's state changed
 */
export class Connection {
  constructor(handlers) {
    this.handlers = handlers;
    this.socket = null;
    this.connected = false; // `ready` received on the current socket
    this.everConnected = false;
    this.halted = false; // do not reconnect until the user presses Talk
    this.backoffS = BACKOFF_FIRST_S;
    this.retryTimer = null;
    this.retryAt = 0;
    this.sendSeq = 0;
    this.conversation = storedConversation.get();
  }

  get open() {
    return this.socket !== null;
  }

  get retrying() {
    return this.retryTimer !== null;
  }

  start() {
    window.addEventListener("online", () => {
      if (!this.socket && !this.halted) this.reconnectNow();
    });
    this.connect();
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.halted = false;
    this.handlers.opening();
    const ws = new WebSocket(socketUrl());
    ws.binaryType = "arraybuffer";
    this.socket = ws;
    ws.addEventListener("open", () => {
      ws.send(helloText(SEND_RATE, CLIENT_NAME, this.conversation));
    });
    ws.addEventListener("message", (event) => {
      if (ws !== this.socket) return;
      if (typeof event.data === "string") this.onText(event.data);
      else this.onBinary(event.data);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.socket) return;
      this.socket = null;
      this.connected = false;
      if (event.code === CLOSE_TAKEN_OVER) {
        this.halted = true;
        this.handlers.takenOver();
      } else if (!this.halted) {
        this.scheduleReconnect();
      }
      this.handlers.changed();
    });
    this.handlers.changed();
  }

  scheduleReconnect() {
    const delayS = this.backoffS;
    this.backoffS = Math.min(this.backoffS * 2, BACKOFF_MAX_S);
    this.retryAt = Date.now() + delayS * 1000;
    this.retryTimer = setTimeout(() => this.connect(), delayS * 1000);
  }

  reconnectNow() {
    if (this.socket) {
      const old = this.socket;
      this.socket = null;
      this.connected = false;
      old.close(1000);
    }
    this.backoffS = BACKOFF_FIRST_S;
    this.connect();
  }

  /** Start a new conversation on the next hello. */
  forgetConversation() {
    this.conversation = null;
    storedConversation.set(null);
  }

  send(message) {
    if (this.socket && this.connected) this.socket.send(JSON.stringify(message));
  }

  /** Send one Int16Array frame; false when it was dropped. */
  sendAudio(pcm) {
    const socket = this.socket;
    if (!socket || !this.connected || socket.bufferedAmount > MAX_BUFFERED_BYTES) return false;
    socket.send(clientAudioFrame(this.sendSeq, pcm));
    this.sendSeq = (this.sendSeq + 1) >>> 0;
    return true;
  }

  onText(text) {
    let event;
    try {
      event = parseServerText(text);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      if (err.fatal) {
        this.halted = true;
        this.socket.close(1000);
        this.handlers.unusable(err.message);
      } else if (err.code !== "unknown_type") {
        // Unknown types are a newer box's additions, ignored; anything else is worth a note.
        console.warn(`edgevoice: ignored a message from the box: ${err.message}`);
      }
      return;
    }
    if (event.type === "ready") {
      this.connected = true;
      this.everConnected = true;
      this.backoffS = BACKOFF_FIRST_S;
      this.sendSeq = 0;
      this.conversation = event.conversation;
      storedConversation.set(this.conversation);
    } else if (event.type === "error") {
      if (event.code === "bad_conversation") this.forgetConversation();
      if (isPermanentError(event)) this.halted = true;
    }
    this.handlers.event(event);
  }

  onBinary(data) {
    const frame = parseServerAudio(data);
    if (frame) this.handlers.audio(frame.turn, frame.sampleRate, frame.pcm);
  }
}
