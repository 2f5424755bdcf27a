// emovox: hands the microphone's samples (mono, the context's own rate) to the page, block by block.
"use strict";

class PcmTap extends AudioWorkletProcessor {
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const out = new Float32Array(channels[0].length);
      for (const ch of channels) for (let i = 0; i < out.length; i++) out[i] += ch[i] / channels.length;
      this.port.postMessage(out, [out.buffer]);
    }
    return true;
  }
}

registerProcessor("pcm-tap", PcmTap);
