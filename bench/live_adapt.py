"""Live adaptation against the file timeline, on long recordings of actors the model never trained on.

    python bench/live_adapt.py --ravdess ../shared/data/ravdess [--model DIR] [--actors 15,16,17,18] \
        [--clips 24,60] [--out bench/results/live_adapt.json]

Recordings: for every actor, its clips in a random order (seed 0) with 1 s pauses (``bench/timeline_adapt.py``'s
``build_recording``), the first N clips for each N of ``--clips`` (24 clips: about the first two minutes). Each goes
through ``emovox timeline`` (``segment_file``, adaptation over the whole recording) and through a live stream fed in
100-ms blocks, the way ``emovox listen`` does. Reported per N: segment accuracy of the file timeline, of the live
events as they went out (running statistics), and of the session's timeline at its end (the live events with their
``revised`` events applied), and how many revisions were sent. A segment's truth: the clip it overlaps most.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from timeline_adapt import build_recording, truth  # noqa: E402

from emovox import EmotionRecognizer  # noqa: E402
from emovox.audio.stream import open_source  # noqa: E402
from emovox.corpora import load_corpus  # noqa: E402
from emovox.inference import segment_file  # noqa: E402


def accuracy(segments, spans) -> float:
    hits = [(s.label == truth(s.start, s.end, spans)) for s in segments if truth(s.start, s.end, spans) is not None]
    return float(np.mean(hits)) if hits else float("nan")


def live(rec: EmotionRecognizer, path: Path):
    source = open_source(path)
    stream = rec.stream(sample_rate=source.sample_rate, name=str(path))
    first, revised = [], 0
    for block in source.native_blocks(0.1):
        for ev in stream.feed(block):
            first += [ev.segment] if ev.kind == "segment" else []
            revised += ev.kind == "revised"
    for ev in stream.close():
        first += [ev.segment] if ev.kind == "segment" else []
        revised += ev.kind == "revised"
    return first, stream.timeline().segments, revised


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ravdess", type=Path, required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--actors", default="15,16,17,18")
    ap.add_argument("--clips", default="24,60")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rec = EmotionRecognizer.load(args.model)
    actors = [a.zfill(2) for a in args.actors.split(",")]
    utts = load_corpus("ravdess", args.ravdess)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(c) for c in args.clips.split(",")]:
            res = {"clips": n, "file": [], "live_events": [], "live_revised": [], "revisions": [], "segments": []}
            for actor in actors:
                clips = sorted((u for u in utts if u.speaker == actor), key=lambda u: str(u.path))
                order = np.random.default_rng(0).permutation(len(clips))[:n]
                path = Path(tmp) / f"{actor}-{n}.flac"
                spans = build_recording([clips[i] for i in order], path)
                tl = segment_file(rec, path)
                first, final, revised = live(rec, path)
                res["file"].append(accuracy(tl.segments, spans))
                res["live_events"].append(accuracy(first, spans))
                res["live_revised"].append(accuracy(final, spans))
                res["revisions"].append(revised)
                res["segments"].append(len(final))
                print(f"  actor {actor}, {n} clips: file {res['file'][-1]:.3f}, live {res['live_events'][-1]:.3f}, "
                      f"revised {res['live_revised'][-1]:.3f} ({revised} revisions, {len(final)} segments)",
                      file=sys.stderr, flush=True)
            rows.append(res)
    print(f"{'clips':>5} {'file':>7} {'live':>7} {'revised':>8} {'revisions':>10}")
    for r in rows:
        print(f"{r['clips']:>5} {np.mean(r['file']):>7.3f} {np.mean(r['live_events']):>7.3f} "
              f"{np.mean(r['live_revised']):>8.3f} {np.mean(r['revisions']):>10.1f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"actors": actors, "rows": rows, "model": str(args.model or "bundled")}, indent=2) + "\n")


if __name__ == "__main__":
    main()
