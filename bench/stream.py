"""Live streams: latency of the emotion events, concurrent real-time streams one machine holds, streamed labels
against the file timeline, and memory over a long stream.

    python bench/stream.py [--ravdess ../shared/data/ravdess] [--model DIR] [--streams 1,4,8,16] \
        [--seconds 60] [--long-minutes 30] [--out bench/results/stream.json]

The recording: clips of RAVDESS actors 17 and 18 (held out of the bundled model; the three example clips when
the corpus is absent) one after another with 1.2 s pauses, ``--seconds`` long, 16 kHz.

- **Latency**: ``emovox serve`` runs in its own process (2 inference threads); N clients stream the recording
  over ``/v1/stream`` at real time in 20 ms messages of 16-bit PCM (starts spread over 2 s). A segment's latency is
  the time from sending the message that holds the end of its window to receiving its event. A region's last
  window cannot come out before ``hold_s`` of silence has followed the speech (nothing could join the region
  before that; 0.32 s by default, 0.22 s after the window's padded end), so last windows and windows inside long
  regions are reported apart.
- **Throughput**: the most concurrent real-time streams with p95 latency <= 1 s.
- **Equality**: the recording streamed in random blocks of 1-9000 samples (``adapt="off"``) against
  ``segment_file`` on it: windows and labels.
- **Memory**: ``--long-minutes`` of audio (the recording repeated) through one in-process stream, faster than real
  time; the process's RSS and the stream's buffers every 5 minutes of audio.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def recording(ravdess: Path | None, seconds: float) -> np.ndarray:
    from emovox.audio import load_audio
    from emovox.corpora import load_corpus

    if ravdess is not None and ravdess.is_dir():
        clips = [u.path for u in load_corpus("ravdess", ravdess) if u.speaker_key in ("ravdess:17", "ravdess:18")]
        clips = [clips[i] for i in np.random.default_rng(0).permutation(len(clips))]
    else:
        clips = sorted((ROOT / "examples").glob("*.flac"))
    rng = np.random.default_rng(1)
    parts, total, k = [], 0.0, 0
    while total < seconds:
        y = load_audio(clips[k % len(clips)], RATE)
        gap = (rng.standard_normal(int(1.2 * RATE)) * 5e-4).astype(np.float32)
        parts += [gap, y]
        total += (gap.size + y.size) / RATE
        k += 1
    return np.concatenate(parts)[: int(seconds * RATE)]


def client(url: str, pcm: np.ndarray, delay: float, out: dict) -> None:
    from websockets.sync.client import connect

    time.sleep(delay)
    frame = RATE // 50
    sent: list[float] = []
    events: list[tuple[float, dict]] = []
    with connect(url, max_size=None) as ws:
        json.loads(ws.recv(timeout=60))

        def read() -> None:
            while True:
                msg = json.loads(ws.recv(timeout=120))
                events.append((time.monotonic(), msg))
                if msg["type"] == "end":
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        t0 = time.monotonic()
        for i in range(0, pcm.size, frame):
            time.sleep(max(0.0, t0 + i / RATE - time.monotonic()))
            ws.send(pcm[i : i + frame].tobytes())
            sent.append(time.monotonic())
        ws.send(json.dumps({"type": "end"}))
        reader.join(120)
    lat_final, lat_inner = [], []
    for at, ev in events:
        if ev["type"] != "segment":
            continue
        k = min(len(sent) - 1, int(np.ceil(ev["end"] * RATE / frame)) - 1)
        lat = at - sent[k]
        (lat_inner if ev["end"] - ev["start"] >= 3.999 and not _is_last(ev, events) else lat_final).append(lat)
    out["final"], out["inner"] = lat_final, lat_inner
    out["segments"] = sum(1 for _, e in events if e["type"] == "segment")


def _is_last(ev: dict, events: list) -> bool:
    """Whether ``ev`` is the last window of its region (its end is the region's end)."""
    return any(e["type"] == "speech_end" and abs(e["time"] - ev["end"]) < 1e-6 for _, e in events)


def serve(model: str | None, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "emovox.cli", "serve", "--port", str(port), "--workers", "2"] + (["--model", model] if model else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"emovox serve did not start: {proc.stderr.read().decode()[-2000:]}")


def latency(model: str | None, pcm: np.ndarray, counts: list[int]) -> list[dict]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = serve(model, port)
    rows = []
    try:
        for n in counts:
            outs = [{} for _ in range(n)]
            url = f"ws://127.0.0.1:{port}/v1/stream?rate={RATE}&format=s16le"
            threads = [threading.Thread(target=client, args=(url, pcm, 2.0 * i / max(1, n), outs[i])) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            final = np.array([x for o in outs for x in o.get("final", [])]) * 1000
            inner = np.array([x for o in outs for x in o.get("inner", [])]) * 1000
            both = np.concatenate([final, inner])
            row = {"streams": n, "segments": int(sum(o.get("segments", 0) for o in outs)),
                   "p50_ms": float(np.percentile(both, 50)), "p95_ms": float(np.percentile(both, 95)),
                   "max_ms": float(both.max()), "p95_last_ms": float(np.percentile(final, 95)),
                   "p95_inner_ms": float(np.percentile(inner, 95)) if inner.size else None}
            rows.append(row)
            print(f"  {n} stream(s): p50 {row['p50_ms']:.0f} ms, p95 {row['p95_ms']:.0f} ms, max {row['max_ms']:.0f} ms",
                  file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    return rows


def equality(rec, pcm: np.ndarray) -> dict:
    y = pcm.astype(np.float32) / 32768
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec.wav"
        sf.write(path, pcm, RATE, subtype="PCM_16")
        tl = rec.timeline(path, adapt="off")
    stream = rec.stream(RATE, adapt="off")
    rng = np.random.default_rng(0)
    segs, i = [], 0
    while i < y.size:
        n = int(rng.integers(1, 9000))
        segs += [e.segment for e in stream.feed(y[i : i + n]) if e.kind == "segment"]
        i += n
    segs += [e.segment for e in stream.close() if e.kind == "segment"]
    same_windows = [(s.start, s.end) for s in segs] == [(s.start, s.end) for s in tl.segments]
    same_labels = sum(a.label == b.label for a, b in zip(segs, tl.segments))
    return {"windows": len(tl.segments), "streamed": len(segs), "same_windows": same_windows,
            "same_labels": same_labels, "vad": tl.vad}


def memory(rec, pcm: np.ndarray, minutes: float) -> list[dict]:
    y = pcm.astype(np.float32) / 32768
    stream = rec.stream(RATE)
    rows, fed, next_mark, t0 = [], 0, 0.0, time.monotonic()
    block = RATE // 10
    while fed < minutes * 60 * RATE:
        for i in range(0, y.size, block):
            stream.feed(y[i : i + block])
            fed += min(block, y.size - i)
            if fed / RATE >= next_mark:
                rows.append({"audio_min": round(fed / RATE / 60, 1), "rss_mb": _rss_mb(),
                             "buffer_s": round(stream._audio.size / stream.rate, 2), "mask_frames": len(stream.tracker._mask),
                             "segments": len(stream.segments), "wall_s": round(time.monotonic() - t0, 1)})
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
                next_mark += 300
    stream.close()
    return rows


def _rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ravdess", type=Path, default=ROOT.parent / "shared" / "data" / "ravdess")
    ap.add_argument("--model", help="model folder (default: the bundled model)")
    ap.add_argument("--streams", default="1,4,8,16", help="concurrent streams to try (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the streamed recording (default %(default)s)")
    ap.add_argument("--long-minutes", type=float, default=30.0, help="audio through the memory check (0: skip)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from emovox import EmotionRecognizer

    y = recording(args.ravdess, args.seconds)
    pcm = (np.clip(y, -1, 1) * 32767).astype("<i2")
    rec = EmotionRecognizer.load(args.model)
    result = {"model": args.model or "bundled", "seconds": args.seconds, "cpus": os.cpu_count()}
    result["equality"] = equality(rec, pcm)
    print(f"equality: {result['equality']}", file=sys.stderr, flush=True)
    result["latency"] = latency(args.model, pcm, [int(n) for n in args.streams.split(",")])
    ok = [r["streams"] for r in result["latency"] if r["p95_ms"] <= 1000]
    result["max_streams_p95_under_1s"] = max(ok) if ok else 0
    if args.long_minutes:
        result["memory"] = memory(rec, pcm, args.long_minutes)
    e = result["equality"]
    print(f"\n{result['model']} model, {args.seconds:g} s recording, {os.cpu_count()} CPUs\n")
    print(f"streamed vs file timeline ({e['vad']}): {e['streamed']} of {e['windows']} windows, same windows: "
          f"{e['same_windows']}, same labels: {e['same_labels']} of {e['windows']}\n")
    print("| concurrent real-time streams | segments | p50 latency | p95 | max | p95, last window of a region | p95, inside a long region |")
    print("|---|---|---|---|---|---|---|")
    for r in result["latency"]:
        inner = f"{r['p95_inner_ms']:.0f} ms" if r["p95_inner_ms"] is not None else "–"
        print(f"| {r['streams']} | {r['segments']} | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms | {r['max_ms']:.0f} ms | "
              f"{r['p95_last_ms']:.0f} ms | {inner} |")
    print(f"\nstreams held with p95 <= 1 s: {result['max_streams_p95_under_1s']}")
    if result.get("memory"):
        m = result["memory"]
        print(f"memory over {args.long_minutes:g} min of audio: RSS {m[0]['rss_mb']:.0f} -> {m[-1]['rss_mb']:.0f} MB "
              f"(after 5 min: {m[min(1, len(m) - 1)]['rss_mb']:.0f} MB); audio held at most "
              f"{max(r['buffer_s'] for r in m):.1f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
