// emovox web page: upload, record or stream audio live; show the predicted emotion and its timeline.
"use strict";

(function () {
  const COLORS = ["#d1495b", "#edae49", "#00798c", "#30638e", "#7b4b94", "#3b8b5a", "#c26d3b", "#6c757d", "#a23b72", "#2e86ab"];
  const MAX_RECORD_S = 300;
  const RECORD_RATE = 16000;

  const $ = (id) => document.getElementById(id);
  const form = $("upload-form");
  const fileInput = $("file");
  const segmentsBox = $("segments");
  const submitBtn = $("submit");
  const recordBtn = $("record");
  const recordTime = $("record-time");
  const statusEl = $("status");
  const errorEl = $("error");

  let labels = [];
  let maxUploadBytes = null;
  let recorder = null;
  let recordTimer = null;
  let busy = false;

  const HEAT = "#3b0f70";  // heatmap cells: this colour, opacity = probability

  // the canonical labels keep the colours of the PNG timeline (emovox.segments.LABEL_COLORS)
  const LABEL_COLORS = {
    angry: "#d62728", calm: "#17becf", disgust: "#8c564b", fear: "#9467bd", happy: "#ffbf00",
    neutral: "#7f7f7f", sad: "#1f77b4", surprise: "#2ca02c",
  };

  function colorOf(label) {
    if (Object.prototype.hasOwnProperty.call(LABEL_COLORS, label)) return LABEL_COLORS[label];
    const i = labels.indexOf(label);
    return COLORS[(i < 0 ? 0 : i) % COLORS.length];
  }

  function setStatus(text) { statusEl.textContent = text; }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = !text;
  }

  function setBusy(on) {
    busy = on;
    submitBtn.disabled = on;
    recordBtn.disabled = on && !recorder;
    fileInput.disabled = on;
    document.body.setAttribute("aria-busy", on ? "true" : "false");
  }

  const pct = (p) => `${Math.round(p * 100)}%`;

  async function init() {
    try {
      const [lab, health] = await Promise.all([fetch("/v1/labels"), fetch("/healthz")]);
      labels = (await lab.json()).labels || [];
      const h = await health.json();
      if (h.max_upload_mb) {
        maxUploadBytes = h.max_upload_mb * 1024 * 1024;
        $("limit-text").textContent = `, up to ${h.max_upload_mb} MB`;
      }
    } catch (err) {
      showError("The server cannot be reached.");
    }
    if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.AudioWorkletNode && window.WebSocket)) {
      $("listen").disabled = true;
      $("listen-help").textContent = "Live listening is not available in this browser (or the page is not served over HTTPS or from localhost).";
    }
    if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder)) {
      recordBtn.disabled = true;
      $("record-help").textContent = "Recording is not available in this browser (or the page is not served over HTTPS or from localhost).";
    }
  }

  // ---------------------------------------------------------------- upload
  async function analyse(blob, filename) {
    if (busy) return;
    showError("");
    if (maxUploadBytes && blob.size > maxUploadBytes) {
      showError(`${filename} is too large (${(blob.size / 1048576).toFixed(1)} MB); the limit is ${(maxUploadBytes / 1048576).toFixed(0)} MB.`);
      return;
    }
    const body = new FormData();
    body.append("file", blob, filename);
    const voices = $("speakers").checked;
    body.append("segments", segmentsBox.checked || voices ? "true" : "false");
    if (voices) body.append("speakers", "auto");
    setBusy(true);
    setStatus(`Analysing ${filename}…`);
    try {
      const resp = await fetch("/v1/predict", { method: "POST", body });
      let data = null;
      try { data = await resp.json(); } catch (e) { data = null; }
      if (!resp.ok) {
        const detail = data && typeof data.detail === "string" ? data.detail : `the server answered ${resp.status}`;
        showError(`Could not analyse ${filename}: ${detail}`);
        setStatus("");
        return;
      }
      renderResult(data);
      renderTimeline(data.timeline, data.threshold);
      setStatus(`Done: ${filename} sounds ${data.label} (${pct(data.confidence)}).`);
    } catch (err) {
      showError(`Could not reach the server: ${err.message || err}`);
      setStatus("");
    } finally {
      setBusy(false);
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const file = fileInput.files && fileInput.files[0];
    if (!file) {
      showError("Choose an audio file first.");
      fileInput.focus();
      return;
    }
    analyse(file, file.name);
  });

  // ---------------------------------------------------------------- results
  function renderResult(data) {
    $("result").hidden = false;
    $("result-label").textContent = data.label;
    $("result-confidence").textContent = `(${pct(data.confidence)})`;
    $("uncertain").hidden = !data.uncertain;
    $("result-file").textContent = data.filename;
    const list = $("bars");
    list.replaceChildren();
    const entries = Object.entries(data.probabilities).sort((a, b) => b[1] - a[1]);
    for (const [label, p] of entries) {
      const li = document.createElement("li");
      if (label === data.label) li.className = "top";
      const id = `bar-${label.replace(/[^a-z0-9_-]/gi, "_")}`;
      const name = document.createElement("span");
      name.className = "name";
      name.id = id;
      name.textContent = label;
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.setAttribute("role", "meter");
      bar.setAttribute("aria-labelledby", id);
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", "100");
      bar.setAttribute("aria-valuenow", String(Math.round(p * 100)));
      bar.setAttribute("aria-valuetext", pct(p));
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.background = colorOf(label);
      bar.appendChild(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = pct(p);
      value.setAttribute("aria-hidden", "true");
      li.append(name, bar, value);
      list.appendChild(li);
      requestAnimationFrame(() => { fill.style.width = `${(p * 100).toFixed(1)}%`; });
    }
  }

  function lane(name, className) {
    const row = document.createElement("div");
    row.className = `lane ${className || ""}`;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const track = document.createElement("div");
    track.className = "track";
    row.append(label, track);
    return [row, track];
  }

  function block(track, start, end, duration, color, opacity, title, extraClass) {
    const b = document.createElement("div");
    b.className = extraClass ? `block ${extraClass}` : "block";
    b.style.left = `${(100 * start) / duration}%`;
    b.style.width = `${Math.max((100 * (end - start)) / duration, 0.3)}%`;
    if (color) b.style.background = color;
    if (opacity !== null) b.style.opacity = String(opacity);
    b.title = title;
    track.appendChild(b);
  }

  function ownership(segments) {
    const segs = [...segments].sort((a, b) => a.start - b.start || a.end - b.end);
    const centre = (s) => (s.start + s.end) / 2;
    const out = [];
    segs.forEach((s, i) => {
      let start = s.start, end = s.end;
      if (i > 0 && segs[i - 1].end > s.start) start = Math.max(start, (centre(s) + centre(segs[i - 1])) / 2);
      if (i + 1 < segs.length && segs[i + 1].start < s.end) end = Math.min(end, (centre(s) + centre(segs[i + 1])) / 2);
      if (end > start) out.push([start, end, s]);
    });
    return out;
  }

  function renderTimeline(tl, threshold) {
    const section = $("timeline");
    if (!tl) {
      section.hidden = true;
      return;
    }
    section.hidden = false;
    const duration = Math.max(tl.duration, 0.001);
    const speech = tl.speech.reduce((s, r) => s + (r.end - r.start), 0);
    const adapted = tl.adaptation === "speaker" ? " Adapted to the speaker (segments normalised together)." : "";
    $("timeline-summary").textContent =
      `${tl.duration.toFixed(1)} s recording, ${speech.toFixed(1)} s of speech in ${tl.speech.length} region(s), ` +
      `${tl.segments.length} segment(s)` + (tl.overall ? `; overall ${tl.overall.label}.` : ".") + adapted;
    const msg = $("timeline-message");
    msg.textContent = tl.message || "";
    msg.hidden = !tl.message;

    const chart = $("timeline-chart");
    chart.replaceChildren();
    // Overlapping windows: each instant belongs to the segment whose centre is nearest (as in the PNG plot).
    const owned = ownership(tl.segments);
    // A conversation (speakers told apart): one band per speaker, each instant owned within that speaker's windows.
    const voices = [...new Set(tl.segments.map((s) => s.speaker).filter((v) => v))];
    const bands = voices.length ? voices.map((v) => [v, tl.segments.filter((s) => s.speaker === v)]) : [["top emotion", tl.segments]];
    for (const [name, segs] of bands) {
      const [bandRow, bandTrack] = lane(name, "band");
      for (const [start, end, s] of ownership(segs)) {
        const unsure = s.confidence < threshold;
        block(bandTrack, start, end, duration, colorOf(s.label), null,
          `${s.speaker ? `${s.speaker}: ` : ""}${s.label} ${pct(s.confidence)} at ${s.start.toFixed(1)}–${s.end.toFixed(1)} s` +
          (unsure ? " (uncertain)" : ""), unsure ? "uncertain" : "");
      }
      chart.appendChild(bandRow);
    }
    const [speechRow, speechTrack] = lane("speech", "speech");
    for (const r of tl.speech) block(speechTrack, r.start, r.end, duration, null, null, `speech ${r.start.toFixed(1)}–${r.end.toFixed(1)} s`);
    chart.appendChild(speechRow);
    for (const label of tl.labels) {  // heatmap: one row per emotion, darker = more probable
      const [row, track] = lane(label, "heat");
      for (const [start, end, s] of owned) {
        const p = s.probabilities[label];
        block(track, start, end, duration, HEAT, p, `${label} ${pct(p)} at ${s.start.toFixed(1)}–${s.end.toFixed(1)} s`);
      }
      chart.appendChild(row);
    }
    const axis = document.createElement("div");
    axis.className = "axis";
    for (const t of [0, duration / 2, duration]) {
      const tick = document.createElement("span");
      tick.textContent = `${t.toFixed(1)} s`;
      axis.appendChild(tick);
    }
    chart.appendChild(axis);

    const tbody = $("timeline-table").querySelector("tbody");
    tbody.replaceChildren();
    for (const s of tl.segments) {
      const tr = document.createElement("tr");
      const cells = [s.start.toFixed(2), s.end.toFixed(2), s.speaker ? `${s.speaker}: ${s.label}` : s.label, pct(s.confidence)];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i === 2) td.className = "label";
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    }
  }

  // ---------------------------------------------------------------- recording
  function writeString(view, offset, text) {
    for (let i = 0; i < text.length; i++) view.setUint8(offset + i, text.charCodeAt(i));
  }

  function encodeWav(samples, rate) {
    const buffer = new ArrayBuffer(44 + samples.length * 2);
    const view = new DataView(buffer);
    writeString(view, 0, "RIFF");
    view.setUint32(4, 36 + samples.length * 2, true);
    writeString(view, 8, "WAVE");
    writeString(view, 12, "fmt ");
    view.setUint32(16, 16, true);
    view.setUint16(20, 1, true); // PCM
    view.setUint16(22, 1, true); // mono
    view.setUint32(24, rate, true);
    view.setUint32(28, rate * 2, true);
    view.setUint16(32, 2, true);
    view.setUint16(34, 16, true);
    writeString(view, 36, "data");
    view.setUint32(40, samples.length * 2, true);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return new Blob([buffer], { type: "audio/wav" });
  }

  // Decode the recorder's compressed audio and re-encode it as 16 kHz mono WAV, which every server can read.
  async function toWav(blob) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    const ctx = new Ctx();
    try {
      const decoded = await ctx.decodeAudioData(await blob.arrayBuffer());
      const length = Math.max(1, Math.ceil(decoded.duration * RECORD_RATE));
      const offline = new OfflineAudioContext(1, length, RECORD_RATE);
      const src = offline.createBufferSource();
      src.buffer = decoded;
      src.connect(offline.destination);
      src.start();
      const rendered = await offline.startRendering();
      return encodeWav(rendered.getChannelData(0), RECORD_RATE);
    } finally {
      ctx.close();
    }
  }

  function extensionOf(mime) {
    if (mime.includes("ogg")) return "ogg";
    if (mime.includes("mp4")) return "m4a";
    if (mime.includes("wav")) return "wav";
    return "webm";
  }

  async function startRecording() {
    showError("");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      showError(`The microphone is not available: ${err.message || err.name}`);
      return;
    }
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.addEventListener("dataavailable", (ev) => { if (ev.data.size) chunks.push(ev.data); });
    recorder.addEventListener("stop", async () => {
      stream.getTracks().forEach((t) => t.stop());
      clearInterval(recordTimer);
      recordTime.textContent = "";
      recordBtn.setAttribute("aria-pressed", "false");
      recordBtn.textContent = "Record";
      const mime = recorder.mimeType || "audio/webm";
      recorder = null;
      const raw = new Blob(chunks, { type: mime });
      if (!raw.size) {
        showError("Nothing was recorded.");
        setStatus("");
        return;
      }
      let blob = raw;
      let name = `recording.${extensionOf(mime)}`;
      try {
        blob = await toWav(raw);
        name = "recording.wav";
      } catch (err) {
        // keep the original container; the server may still be able to read it
      }
      analyse(blob, name);
    });
    const t0 = Date.now();
    recorder.start(250);
    recordBtn.setAttribute("aria-pressed", "true");
    recordBtn.textContent = "Stop recording";
    setStatus("Recording… press “Stop recording” when you are done.");
    recordTimer = setInterval(() => {
      const s = (Date.now() - t0) / 1000;
      recordTime.textContent = `${s.toFixed(0)} s`;
      if (s >= MAX_RECORD_S && recorder) recorder.stop();
    }, 250);
  }

  // ---------------------------------------------------------------- live
  // The microphone at its own rate -> an AudioWorklet -> float32 PCM over the WebSocket /v1/stream; the server's
  // events grow the same chart as a file's timeline.
  const listenBtn = $("listen");
  const liveLabel = $("live-label");
  const liveConfidence = $("live-confidence");
  const liveStatus = $("live-status");
  let live = null;

  function liveTimeline(session) {
    const now = session.ended ? session.seconds : (performance.now() - session.t0) / 1000;
    const speech = session.regions.map((r) => ({ start: r.start, end: r.end }));
    if (session.open !== null) speech.push({ start: session.open, end: Math.max(session.open, now) });
    return {
      source: "microphone", duration: Math.max(now, 0.001), labels, speech, segments: session.segments,
      adaptation: session.segments.some((s) => s.adapted) ? "speaker" : "none", vad: session.vad,
      overall: null, message: session.segments.length ? null : "No speech classified yet.",
    };
  }

  function drawLive() {
    if (!live) return;
    renderTimeline(liveTimeline(live), live.threshold);
  }

  function csvOf(tl) {
    // the columns of every emovox table (emovox.inference.results.table_columns): a timeline's, as the CLI writes it
    const head = ["start", "end", "label", "confidence", "uncertain", ...tl.labels.map((l) => `prob_${l}`), "head"];
    const rows = tl.segments.map((s) => [s.start.toFixed(3), s.end.toFixed(3), s.label, s.confidence.toFixed(4),
      String(s.uncertain), ...tl.labels.map((l) => s.probabilities[l].toFixed(4)), s.head]);
    return [head, ...rows].map((r) => r.join(",")).join("\n") + "\n";
  }

  function offerDownloads(tl) {
    const link = (id, text, type) => {
      const a = $(id);
      if (a.href.startsWith("blob:")) URL.revokeObjectURL(a.href);
      a.href = URL.createObjectURL(new Blob([text], { type }));
    };
    link("live-csv", csvOf(tl), "text/csv");
    link("live-json", JSON.stringify(tl, null, 2), "application/json");
    $("live-downloads").hidden = false;
  }

  function stopAudio(session) {
    if (session.timer) clearInterval(session.timer);
    if (session.media) session.media.getTracks().forEach((t) => t.stop());
    if (session.ctx) session.ctx.close();
    session.timer = session.media = session.ctx = null;
  }

  function finish(session, note) {
    stopAudio(session);
    if (live !== session) return;
    live = null;
    session.ended = true;
    listenBtn.setAttribute("aria-pressed", "false");
    listenBtn.textContent = "Listen";
    setBusy(false);
    const tl = liveTimeline(session);
    renderTimeline(tl, session.threshold);
    offerDownloads(tl);
    liveStatus.textContent = note;
  }

  function onEvent(session, ev) {
    if (ev.type === "ready") {
      session.vad = ev.vad;
      liveStatus.textContent = `Listening at ${ev.sample_rate} Hz (${ev.vad} voice detection). Speak; press “Stop listening” to end.`;
    } else if (ev.type === "speech_start") {
      session.open = ev.time;
    } else if (ev.type === "speech_end") {
      session.regions.push({ start: session.open === null ? ev.time : session.open, end: ev.time });
      session.open = null;
    } else if (ev.type === "unknown") {
      liveLabel.textContent = "not speech I know";
      liveLabel.style.color = "";
      liveConfidence.textContent = `ood_score ${ev.ood_score.toFixed(2)}: unlike all the speech the model knows`;
    } else if (ev.type === "segment") {
      session.segments.push(ev);
      liveLabel.textContent = ev.label;
      liveLabel.style.color = colorOf(ev.label);
      liveConfidence.textContent = `${pct(ev.confidence)}` + (ev.adapted ? " · adapted to this voice" : "") +
        (ev.uncertain ? " · uncertain" : "");
      drawLive();
    } else if (ev.type === "revised") {
      const k = session.segments.findIndex((x) => x.start === ev.start && x.end === ev.end);
      if (k >= 0) session.segments[k] = ev;
      drawLive();
    } else if (ev.type === "end") {
      session.seconds = ev.seconds;
      finish(session, `Session ended: ${ev.segments} segment(s) in ${ev.seconds.toFixed(1)} s.`);
    }
  }

  async function startListening() {
    showError("");
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    } catch (err) {
      showError(`The microphone is not available: ${err.message || err.name}`);
      return;
    }
    const Ctx = window.AudioContext || window.webkitAudioContext;
    const ctx = new Ctx();
    const session = { media, ctx, ws: null, t0: performance.now(), regions: [], open: null, segments: [], vad: "",
      threshold: 0.4, seconds: 0, ended: false, timer: null, pending: [], pendingLength: 0 };
    live = session;
    try {
      await ctx.audioWorklet.addModule("/static/pcm-worklet.js");
    } catch (err) {
      stopAudio(session);
      live = null;
      showError(`Live listening is not available in this browser: ${err.message || err}`);
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/v1/stream`);
    ws.binaryType = "arraybuffer";
    session.ws = ws;
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ sample_rate: ctx.sampleRate, format: "f32le" }));
      const source = ctx.createMediaStreamSource(media);
      const tap = new AudioWorkletNode(ctx, "pcm-tap");
      const mute = ctx.createGain();
      mute.gain.value = 0;
      source.connect(tap).connect(mute).connect(ctx.destination);
      const flushAt = Math.round(ctx.sampleRate / 20);  // send every 50 ms
      tap.port.onmessage = (msg) => {
        if (ws.readyState !== WebSocket.OPEN || live !== session) return;
        session.pending.push(msg.data);
        session.pendingLength += msg.data.length;
        if (session.pendingLength < flushAt) return;
        const out = new Float32Array(session.pendingLength);
        let at = 0;
        for (const part of session.pending) { out.set(part, at); at += part.length; }
        session.pending = [];
        session.pendingLength = 0;
        ws.send(out.buffer);
      };
      session.t0 = performance.now();
      session.timer = setInterval(drawLive, 500);
    });
    ws.addEventListener("message", (msg) => {
      try { onEvent(session, JSON.parse(msg.data)); } catch (err) { /* not an event */ }
    });
    ws.addEventListener("close", (ev) => {
      if (live === session) {
        if (ev.code !== 1000) showError(`The live session ended: ${ev.reason || `connection closed (${ev.code})`}`);
        finish(session, ev.code === 1000 ? "Session ended." : "Session ended early.");
      }
    });
    $("live").hidden = false;
    $("result").hidden = true;
    $("live-downloads").hidden = true;
    liveLabel.textContent = "listening…";
    liveLabel.style.color = "";
    liveConfidence.textContent = "";
    liveStatus.textContent = "Connecting…";
    listenBtn.setAttribute("aria-pressed", "true");
    listenBtn.textContent = "Stop listening";
    setBusy(true);
    listenBtn.disabled = false;
    drawLive();
  }

  function stopListening() {
    const session = live;
    if (!session) return;
    stopAudio(session);
    liveStatus.textContent = "Finishing the last segment…";
    if (session.ws && session.ws.readyState === WebSocket.OPEN) {
      session.ws.send(JSON.stringify({ type: "end" }));
    } else {
      finish(session, "Session ended.");
    }
  }

  listenBtn.addEventListener("click", () => {
    if (live) stopListening();
    else if (!busy) startListening();
  });

  recordBtn.addEventListener("click", () => {
    if (recorder) {
      setStatus("Preparing the recording…");
      recorder.stop();
    } else if (!busy) {
      startRecording();
    }
  });

  init();
})();
