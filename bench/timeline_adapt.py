"""Speaker adaptation of the timeline, measured on long single-speaker recordings of actors the model never heard.

    python bench/timeline_adapt.py --ravdess ../shared/data/ravdess [--tess DIR] [--nemo DIR] \
        --weights ../shared/models/whisper-tiny.en-encoder [--folds 6] [--model DIR ...] \
        [--out bench/results/timeline_adapt.json]

Recordings: for every held-out RAVDESS actor, all of their clips in a random order (seed 0), 16 kHz, with 1 s of
quiet noise (-60 dBFS) between clips -- about 4 minutes, 60 clips, one voice. Shorter recordings take the first
N clips of that order (N in --clips), to see how many segments adaptation needs.

Models: ``--folds K`` trains the ``speech`` recipe (with ``--balance-corpora``) K times, each time with one
speaker-grouped fold of RAVDESS actors held out (TESS and nEMO, when given, always train), like the bundled
model; ``--model DIR`` adds a trained model folder, scored on the RAVDESS actors its config lists as held out.

Each recording goes through ``segment_file`` twice, ``adapt="off"`` and ``adapt="on"``; a segment's true
emotion is that of the clip it overlaps most. Reported per clip count: segment accuracy without and with
adaptation (mean over recordings), the number of segments, and for how many recordings adaptation helped.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from emovox import EmotionRecognizer
from emovox.audio import load_audio
from emovox.corpora import load_corpus
from emovox.inference import segment_file
from emovox.training.splits import speaker_kfold
from emovox.training.train import recipe_config, train

RATE = 16000


def build_recording(clips: list, path: Path, seed: int = 0, pause_s: float = 1.0) -> list[tuple[float, float, str]]:
    """Write the clips (Utterances) one after another with pauses; returns (start, end, emotion) of each clip."""
    rng = np.random.default_rng(seed)
    parts, spans, t = [], [], 0.0
    for u in clips:
        gap = (rng.standard_normal(int(pause_s * RATE)) * 1e-3).astype(np.float32)
        y = load_audio(u.path, RATE)
        parts += [gap, y]
        t += pause_s
        spans.append((t, t + len(y) / RATE, u.emotion))
        t += len(y) / RATE
    parts.append((rng.standard_normal(int(pause_s * RATE)) * 1e-3).astype(np.float32))
    sf.write(path, np.concatenate(parts), RATE, subtype="PCM_16")
    return spans


def truth(seg_start: float, seg_end: float, spans: list[tuple[float, float, str]]) -> str | None:
    best, label = 0.0, None
    for s, e, emo in spans:
        ov = min(e, seg_end) - max(s, seg_start)
        if ov > best:
            best, label = ov, emo
    return label


OPTIONS: dict = {}  # timeline options from the command line (--pad)


def score(rec: EmotionRecognizer, path: Path, spans, adapt: str) -> tuple[float, int, str]:
    tl = segment_file(rec, path, adapt=adapt, **OPTIONS)
    hits = [seg.label == truth(seg.start, seg.end, spans) for seg in tl.segments]
    return (float(np.mean(hits)) if hits else float("nan")), len(hits), tl.adaptation


def evaluate(rec: EmotionRecognizer, actors: dict[str, list], clip_counts: list[int], tmp: Path, tag: str) -> list[dict]:
    rows = []
    for actor, clips in sorted(actors.items()):
        order = [clips[i] for i in np.random.default_rng(0).permutation(len(clips))]
        preds = rec.predict([str(u.path) for u in clips])  # the same clips one by one, as files
        per_file = float(np.mean([p.label == u.emotion for p, u in zip(preds, clips)]))
        print(f"  {tag} actor {actor}: per-file accuracy of its {len(clips)} clips {per_file:.1%}", file=sys.stderr, flush=True)
        for n in clip_counts:
            if n > len(order):
                continue
            path = tmp / f"{tag}_{actor}_{n}.flac"
            spans = build_recording(order[:n], path)
            off, segs, _ = score(rec, path, spans, "off")
            on, _, used = score(rec, path, spans, "on")
            rows.append({"model": tag, "actor": actor, "clips": n, "seconds": round(spans[-1][1] + 1.0, 1), "segments": segs,
                         "file_accuracy": per_file,
                         "accuracy_off": off, "accuracy_on": on, "adaptation": used})
            print(f"  {tag} actor {actor}, {n} clips, {segs} segments: {off:.1%} -> {on:.1%}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ravdess", type=Path, required=True)
    ap.add_argument("--tess", type=Path)
    ap.add_argument("--nemo", type=Path)
    ap.add_argument("--weights", default="pretrained", help="speech encoder weights folder (default: hub / $EMOVOX_WEIGHTS)")
    ap.add_argument("--encoders", help="the fold models' encoders, comma-separated (e.g. whisper_base; default: the "
                                       "speech recipe's, with --weights)")
    ap.add_argument("--pad", type=float, default=None, help="the timeline's padding around speech, seconds (default: its own)")
    ap.add_argument("--folds", type=int, default=0, help="train the speech recipe on this many speaker folds (0: none)")
    ap.add_argument("--model", action="append", default=[], help="a trained model folder (repeatable)")
    ap.add_argument("--clips", default="2,4,6,10,20,60", help="clips per recording (default %(default)s)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.clips.split(",")]
    if args.pad is not None:
        OPTIONS["pad_s"] = args.pad

    ravdess = load_corpus("ravdess", args.ravdess)
    by_actor: dict[str, list] = {}
    for u in ravdess:
        by_actor.setdefault(u.speaker_key, []).append(u)
    rows: list[dict] = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for m in args.model:
            rec = EmotionRecognizer.load(m)
            held = [k for k in rec.config.get("training", {}).get("test_speakers") or [] if k in by_actor]
            rows += evaluate(rec, {k: by_actor[k] for k in held}, counts, tmp, Path(m).name)
        if args.folds:
            others = []
            for name, path in (("tess", args.tess), ("nemo", args.nemo)):
                if path:
                    others += load_corpus(name, path)
            for k, split in enumerate(speaker_kfold(ravdess, k=args.folds, seed=0)):
                test = sorted({ravdess[i].speaker_key for i in split.test})
                enc = {"encoders": tuple(args.encoders.split(","))} if args.encoders else {"weights": args.weights}
                cfg = recipe_config("speech", **enc, split="speaker", test_speakers=tuple(test), seed=0,
                                    balance_corpora=bool(others))
                summary = train(others + ravdess, tmp / f"fold{k}", cfg, progress=False, log=lambda m: None)
                print(f"fold {k + 1}: held out {', '.join(test)}; per-file test accuracy {summary['metrics']['accuracy']:.1%}",
                      file=sys.stderr, flush=True)
                rec = EmotionRecognizer.load(tmp / f"fold{k}" / "model")
                rows += evaluate(rec, {a: by_actor[a] for a in test}, counts, tmp, f"fold{k + 1}")
    print(f"\n{len({(r['model'], r['actor']) for r in rows})} held-out actors, {time.time() - t0:.0f} s\n")
    print("| clips per recording | segments (mean) | segment accuracy, no adaptation | with adaptation | adaptation better | "
          "the same clips as files |")
    print("|---|---|---|---|---|---|")
    table = []
    for n in counts:
        sel = [r for r in rows if r["clips"] == n]
        if not sel:
            continue
        off = np.array([r["accuracy_off"] for r in sel]) * 100
        on = np.array([r["accuracy_on"] for r in sel]) * 100
        segs = float(np.mean([r["segments"] for r in sel]))
        better = int((on > off).sum())
        files = float(np.mean([r["file_accuracy"] for r in sel]) * 100)
        table.append({"clips": n, "segments": segs, "off": float(off.mean()), "on": float(on.mean()), "better": better, "n": len(sel),
                      "files": files})
        print(f"| {n} | {segs:.1f} | {off.mean():.1f} ± {off.std():.1f} | {on.mean():.1f} ± {on.std():.1f} | {better} of {len(sel)} | "
              f"{files:.1f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"table": table, "recordings": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
