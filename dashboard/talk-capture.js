// The browser client's microphone: getUserMedia through capture-worklet.js, which resamples to
// the send rate and posts Int16Array frames to this thread.

const CAPTURE_FRAME = 1024; // samples at the capture rate per posted frame, the Web Audio norm

/** The microphone, through the capture worklet, as Int16Array frames at `targetRate`. */
export class Capture {
  constructor(context, targetRate) {
    this.context = context;
    this.targetRate = targetRate;
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
        processorOptions: { targetRate: this.targetRate, frameSize: CAPTURE_FRAME },
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

/** What to tell the user when start() failed. */
export function microphoneProblem(err) {
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
