// Microphone capture for the edgevoice browser client, run on the audio rendering thread.
//
// Resamples the AudioContext's rate (usually 48000 or 44100 Hz) to 16 kHz with a polyphase
// windowed-sinc filter, and posts one Int16Array to the main thread per `frameSize` samples of
// input (1024 at the capture rate: about 341 samples at 16 kHz from 48 kHz).
//
// The resampler is exact for rational ratios: out/in = L/M in lowest terms (1/3 from 48 kHz,
// 160/441 from 44.1 kHz). Output n sits at input position n*M/L; its integer part picks the input
// samples and its fractional part (one of L phases) picks a precomputed row of filter taps, so
// no trigonometry runs per sample.

const TRANSITION_HZ = 1000; // -6 dB at 7.5 kHz, stop band from about 8 kHz (the 16 kHz Nyquist)
const MAX_PHASES = 4096; // table rows; every standard rate pair needs far fewer

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

// Blackman-windowed sinc taps for each of `phases` fractional offsets: row p, tap j weighs input
// sample (i - half + 1 + j) for an output at input position i + p/phases.
function designTaps(inputRate, outputRate, phases) {
  const cutoff = (Math.min(inputRate, outputRate) / 2 - TRANSITION_HZ / 2) / inputRate; // cycles per input sample
  // A Blackman window's transition band is about 5.5 / taps of the input rate wide.
  const half = Math.max(4, Math.ceil((2.75 * inputRate) / TRANSITION_HZ));
  const width = 2 * half;
  const taps = new Float32Array(phases * width);
  for (let p = 0; p < phases; p++) {
    let sum = 0;
    for (let j = 0; j < width; j++) {
      const distance = p / phases + half - 1 - j; // output position minus input position
      const x = distance / half; // -1..1 across the window
      const weight = Math.abs(x) >= 1 ? 0 : 0.42 + 0.5 * Math.cos(Math.PI * x) + 0.08 * Math.cos(2 * Math.PI * x);
      const arg = 2 * cutoff * distance;
      const sinc = arg === 0 ? 1 : Math.sin(Math.PI * arg) / (Math.PI * arg);
      const value = 2 * cutoff * sinc * weight;
      taps[p * width + j] = value;
      sum += value;
    }
    // Unity gain at DC for every phase, so no phase ripples.
    for (let j = 0; j < width; j++) taps[p * width + j] /= sum;
  }
  return { taps, half, width };
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const settings = options.processorOptions || {};
    const inputRate = Math.round(sampleRate); // the AudioContext's rate, a global in this scope
    const outputRate = settings.targetRate || 16000;
    this.frameSize = settings.frameSize || 1024;
    const divisor = gcd(inputRate, outputRate);
    this.up = outputRate / divisor; // L
    this.down = inputRate / divisor; // M
    if (this.up > MAX_PHASES) throw new Error(`cannot resample ${inputRate} Hz to ${outputRate} Hz`);
    const { taps, half, width } = designTaps(inputRate, outputRate, this.up);
    this.taps = taps;
    this.half = half;
    this.width = width;
    // work[k] holds input sample (workStart + k): `width` samples of history, then one frame.
    this.work = new Float32Array(width + this.frameSize);
    this.workStart = -width; // the history starts as silence before sample 0
    this.filled = width;
    this.nextIndex = 0; // integer input position of the next output
    this.nextPhase = 0; // and its fraction, in 1/L steps
    this.maxOutput = Math.ceil((this.frameSize * this.up) / this.down) + 2;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") this.running = false;
    };
  }

  process(inputs) {
    const channels = inputs[0];
    // The node is created with channelCount 1 / "explicit", so the browser mixes down to mono.
    const input = channels && channels.length > 0 ? channels[0] : null;
    if (input) {
      let offset = 0;
      while (offset < input.length) {
        const take = Math.min(input.length - offset, this.work.length - this.filled);
        this.work.set(input.subarray(offset, offset + take), this.filled);
        this.filled += take;
        offset += take;
        if (this.filled === this.work.length) this.flush();
      }
    }
    return this.running;
  }

  // Filter a full work buffer into one Int16 frame, post it, and keep the tail as history.
  flush() {
    const { work, taps, width, half, up, down } = this;
    const workEnd = this.workStart + work.length; // one past the last input sample held
    const out = new Int16Array(this.maxOutput);
    let count = 0;
    let index = this.nextIndex;
    let phase = this.nextPhase;
    while (index + half < workEnd) {
      const first = index - half + 1 - this.workStart;
      const row = phase * width;
      let acc = 0;
      for (let j = 0; j < width; j++) acc += work[first + j] * taps[row + j];
      const clipped = acc > 1 ? 1 : acc < -1 ? -1 : acc;
      out[count++] = Math.round(clipped * 32767);
      phase += down;
      index += Math.floor(phase / up);
      phase %= up;
    }
    this.nextIndex = index;
    this.nextPhase = phase;
    work.copyWithin(0, work.length - width);
    this.workStart = workEnd - width;
    this.filled = width;
    const frame = out.slice(0, count);
    this.port.postMessage(frame, [frame.buffer]);
  }
}

registerProcessor("edgevoice-capture", CaptureProcessor);
