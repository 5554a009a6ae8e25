// Reply audio for the browser client: one AudioBufferSourceNode per frame, scheduled back to back
// on the AudioContext clock so the frames play without gaps.

const PLAYBACK_LEAD_S = 0.05; // a turn's first frame starts this far ahead, so the next one can follow on time

/** Frames scheduled back to back; everything scheduled stops at once on an interrupt. */
export class Player {
  /** onPending(count) is told how many sources are scheduled and not yet ended, whenever that changes. */
  constructor(context, onPending) {
    this.context = context;
    this.onPending = onPending;
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
      this.onPending(this.sources.size);
    });
    this.onPending(this.sources.size);
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
    this.onPending(0);
    this.nextTime = 0;
  }

  /** Turn numbers start again at 1 on a new connection. */
  newConnection() {
    this.cutTurns.clear();
  }
}
