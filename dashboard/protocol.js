// The WebSocket protocol, version 1 (docs/protocol.md), for the browser: the one place the pages
// read what the box says. It mirrors edgevoice/protocol.py: parseServerText gives a message of a
// known type with every field of the right type (fields it does not know are dropped), or throws
// a ProtocolError naming what is wrong, with the same codes as the daemon's parser.

export const PROTOCOL_VERSION = 1;
export const MAX_SERVER_TEXT_BYTES = 1 << 20;
export const CLOSE_TAKEN_OVER = 4001;
const CLIENT_HEADER_BYTES = 4;
const SERVER_HEADER_BYTES = 16;
const CONVERSATION_ID = /^[A-Za-z0-9_-]{1,64}$/;

export class ProtocolError extends Error {
  /** fatal: this page cannot follow the box at all (another protocol version), so retrying is no use. */
  constructor(code, message, fatal = false) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
    this.fatal = fatal;
  }
}

const INT = "a whole number";
const NUM = "a number";
const STR = "a string";
const BOOL = "true or false";
const SECONDS = "a number, 0 or more";
const TIMINGS = "an object of numbers or null";

/** Each server message type and its fields, as in docs/protocol.md. */
const FIELDS = {
  ready: {
    protocol: INT, conversation: STR, resumed: BOOL, sample_rate: INT, max_frame_samples: INT, box: STR, server: STR,
  },
  speech_started: { turn: INT, start_ms: INT },
  speech_stopped: { turn: INT, start_ms: INT, end_ms: INT, truncated: BOOL },
  partial_transcript: { turn: INT, text: STR },
  transcript: { turn: INT, text: STR },
  reply_text: { turn: INT, delta: STR },
  reply_audio_start: { turn: INT, sample_rate: INT },
  reply_audio_end: { turn: INT },
  interrupted: { turn: INT, at_ms: INT },
  turn_done: {
    turn: INT, transcript: STR, reply: STR, interrupted: BOOL, start_ms: INT, end_ms: INT, timings: TIMINGS,
    intent: STR,
  },
  busy: { message: STR, expected_wait_s: SECONDS },
  timer: {
    event: STR, id: STR, conversation: STR, name: STR, duration_s: NUM, remaining_s: NUM, state: STR, ends_at: NUM,
    ring: INT, reason: STR, text: STR,
  },
  gap: { missing: INT, lost_total: INT, received: INT },
  error: { code: STR, message: STR, fatal: BOOL },
  bye: {},
};

const isObject = (value) => typeof value === "object" && value !== null && !Array.isArray(value);
const isNumber = (value) => typeof value === "number" && Number.isFinite(value);

function fits(value, kind) {
  switch (kind) {
    // JSON.parse reads 1.0 as 1, so unlike protocol.py this takes a whole number written with a point.
    case INT: return Number.isInteger(value);
    case NUM: return isNumber(value);
    case STR: return typeof value === "string";
    case BOOL: return typeof value === "boolean";
    case SECONDS: return isNumber(value) && value >= 0;
    default: return isObject(value) && Object.values(value).every((v) => v === null || isNumber(v));
  }
}

function load(text) {
  if (text.length > MAX_SERVER_TEXT_BYTES || new TextEncoder().encode(text).length > MAX_SERVER_TEXT_BYTES) {
    throw new ProtocolError("too_large", `text messages are limited to ${MAX_SERVER_TEXT_BYTES} bytes`);
  }
  let message;
  try {
    message = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError("bad_json", `not valid JSON: ${err.message}`);
  }
  if (!isObject(message) || typeof message.type !== "string") {
    throw new ProtocolError("bad_message", 'a message must be a JSON object with a string "type"');
  }
  return message;
}

/** The known fields of a message object, checked; the checks of parse_server_text after the JSON. */
function checked(message) {
  if (!Object.hasOwn(FIELDS, message.type)) {
    throw new ProtocolError("unknown_type", `unknown message type ${JSON.stringify(message.type.slice(0, 40))}`);
  }
  const known = { type: message.type };
  for (const [name, kind] of Object.entries(FIELDS[message.type])) {
    const value = message[name];
    if (value === undefined || value === null) {
      throw new ProtocolError("bad_message", `${message.type} needs a '${name}' field`);
    }
    if (!fits(value, kind)) throw new ProtocolError("bad_message", `${message.type}: '${name}' must be ${kind}`);
    if (message.type === "ready") checkReady(name, value);
    known[name] = kind === TIMINGS ? { ...value } : value;
  }
  return known;
}

/** What a client cannot follow in a ready, checked field by field in the order protocol.py checks it. */
function checkReady(name, value) {
  if (name === "protocol" && value !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      "unsupported_protocol",
      `protocol version ${value} is not supported; this client speaks ${PROTOCOL_VERSION}`,
      true,
    );
  }
  if (name === "conversation" && !CONVERSATION_ID.test(value)) {
    throw new ProtocolError("bad_conversation", "a conversation id is 1 to 64 letters, digits, '-' or '_'", true);
  }
}

/**
 * One text message from the box, checked. An unknown type is a ProtocolError ("unknown_type") too:
 * a newer box may add event types within a version, and a client may ignore them.
 */
export function parseServerText(text) {
  return checked(load(text));
}

/**
 * One entry of the dashboard's live feed (/api/events): a server message with the `client` and
 * `conversation` it came from. A box that keeps no text sends a turn_done's transcript and reply
 * as null.
 */
export function parseFeedMessage(text) {
  const message = load(text);
  for (const name of ["client", "conversation"]) {
    if (typeof message[name] !== "string") throw new ProtocolError("bad_message", `feed: '${name}' must be ${STR}`);
  }
  const withheld = message.type === "turn_done" && message.transcript === null && message.reply === null;
  const known = checked(withheld ? { ...message, transcript: "", reply: "" } : message);
  if (withheld) Object.assign(known, { transcript: null, reply: null });
  return { ...known, client: message.client, conversation: message.conversation };
}

/** The hello that opens a connection. */
export function helloText(sampleRate, client, conversation) {
  const hello = { type: "hello", protocol: PROTOCOL_VERSION, sample_rate: sampleRate, client };
  if (conversation) hello.conversation = conversation;
  return JSON.stringify(hello);
}

/** A client audio frame: the uint32 sequence number, then the Int16Array's samples. */
export function clientAudioFrame(seq, pcm) {
  const frame = new Uint8Array(CLIENT_HEADER_BYTES + pcm.byteLength);
  new DataView(frame.buffer).setUint32(0, seq >>> 0, true);
  // Int16Array is in the platform's byte order, little-endian on every platform browsers run on.
  frame.set(new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength), CLIENT_HEADER_BYTES);
  return frame.buffer;
}

/** A reply audio frame as { turn, seq, sampleRate, pcm }, or null for one that is malformed. */
export function parseServerAudio(data) {
  if (data.byteLength < SERVER_HEADER_BYTES || (data.byteLength - SERVER_HEADER_BYTES) % 2) return null;
  const header = new DataView(data, 0, SERVER_HEADER_BYTES);
  return {
    turn: header.getUint32(0, true),
    seq: header.getUint32(4, true),
    sampleRate: header.getUint32(8, true),
    pcm: new Int16Array(data, SERVER_HEADER_BYTES),
  };
}
