"""Why timeline segments score below whole files, and what training on the timeline's cut changes.

    python bench/window_match.py --ravdess ../shared/data/ravdess --weights /path/to/whisper-base-encoder \
        [--encoder whisper_base] [--pad 0.1] [--out bench/results/window_match.json]

Every RAVDESS clip is encoded twice: as a file (the encoder's own preparer: 16 kHz, only near-silence trimmed,
so about a second of room tone stays on each side) and as the timeline cuts it (the span of its voice-activity
regions with the timeline's ``pad_s``, then the same preparer). Speaker-grouped 6-fold CV over the actors
(``speaker_kfold``, seed 0), L2 logistic regression C=0.01 on standardised vectors (the speech recipe), per file and
per speaker (vectors z-scored within each test speaker). Train on one cut, test on each: "file -> window" is what the
timeline does today.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from emovox.audio import load_audio
from emovox.audio.vad import resolve_vad, speech_regions
from emovox.corpora import load_corpus
from emovox.encoders import build_encoder
from emovox.model.heads import speaker_normalize
from emovox.training.splits import speaker_kfold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from single_file import logreg  # noqa: E402


def encode(enc, utts, pad: float, vad: str) -> np.ndarray:
    prep = enc.preparer()
    out = [[], []]
    t0 = time.time()
    for i, u in enumerate(utts):
        y = load_audio(u.path, 16000)
        regions = speech_regions(y, 16000, vad=vad, pad_s=pad)
        cut = y[int(regions[0][0] * 16000) : int(regions[-1][1] * 16000)] if regions else y
        for k, z in enumerate((y, cut)):
            with torch.inference_mode():
                out[k].append(enc.encode([prep(z, 16000, str(u.path))])[0].numpy())
        if (i + 1) % 200 == 0:
            print(f"  {i + 1}/{len(utts)} files, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return np.stack([np.stack(v) for v in out])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ravdess", type=Path, required=True)
    ap.add_argument("--encoder", default="whisper_base")
    ap.add_argument("--weights", default="pretrained")
    ap.add_argument("--pad", type=float, default=0.1)
    ap.add_argument("--vad", default="auto")
    ap.add_argument("--store", type=Path, help="keep the encodings here (.npz) and reuse them")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    vad = resolve_vad(args.vad)
    utts = load_corpus("ravdess", args.ravdess)
    stored = args.store / f"window-{args.encoder}-{vad}-{args.pad:g}.npz" if args.store else None
    if stored is not None and stored.is_file():
        vecs = np.load(stored)["vecs"]
    else:
        enc = build_encoder(args.encoder, args.weights).eval()
        vecs = encode(enc, utts, args.pad, vad)
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            np.savez(stored, vecs=vecs)
    labels = sorted({u.emotion for u in utts})
    y = np.array([labels.index(u.emotion) for u in utts])
    spk = np.array([u.speaker_key for u in utts])
    views = {"file": vecs[0], "window": vecs[1], "both": None}
    norm = {k: (speaker_normalize(v, spk) if v is not None else None) for k, v in views.items()}
    acc: dict[str, list[float]] = {}
    for sp in speaker_kfold(utts, k=6, seed=0):
        train, test = np.concatenate([sp.train, sp.val]), sp.test
        for head, vv in (("file", views), ("speaker", norm)):
            for src in ("file", "window", "both"):
                if src == "both":
                    x_train, y_train = np.concatenate([vv["file"][train], vv["window"][train]]), np.tile(y[train], 2)
                else:
                    x_train, y_train = vv[src][train], y[train]
                probs, classes = logreg(x_train, y_train, [vv["file"][test], vv["window"][test]])
                for dst, p in zip(("file", "window"), probs):
                    acc.setdefault(f"{head}: train {src} -> test {dst}", []).append(float(np.mean(classes[p.argmax(1)] == y[test])))
    print(f"\n{args.encoder}, {vad} VAD, pad {args.pad:g} s; RAVDESS speaker-grouped 6-fold\n")
    print("| head | trained on | tested on whole files | tested on timeline cuts |")
    print("|---|---|---|---|")
    table = []
    for head in ("file", "speaker"):
        for src in ("file", "window", "both"):
            a, b = (np.array(acc[f"{head}: train {src} -> test {d}"]) * 100 for d in ("file", "window"))
            table.append({"head": head, "train": src, "test_file": float(a.mean()), "test_file_std": float(a.std()),
                          "test_window": float(b.mean()), "test_window_std": float(b.std())})
            print(f"| {head} | {src} | {a.mean():.1f} ± {a.std():.1f} | {b.mean():.1f} ± {b.std():.1f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"encoder": args.encoder, "vad": vad, "pad": args.pad, "table": table,
                                        "folds": {k: [x * 100 for x in v] for k, v in acc.items()}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
