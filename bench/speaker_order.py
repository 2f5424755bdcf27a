"""Speaker-keyed annotation of an archive, by the order its files come in: running statistics against order-free.

    python bench/speaker_order.py --ravdess ../shared/data/ravdess [--model DIR] [--actors 15,16,17,18] \
        [--seeds 5] [--out bench/results/speaker_order.json]

The archive: every clip of the RAVDESS actors the model never trained on (the bundled model: 15-18; 15-16 chose
its settings, 17-18 are its test speakers), keyed by actor. Orders: *path* (RAVDESS names sort each actor's clips by
emotion code, as real archives sort by date, agent or topic) and ``--seeds`` shuffles. Each file is encoded once
(``EmotionRecognizer.encode_files``); the vectors are then classified four ways:

- ``per_file``: no speaker key (the per-file head);
- ``running``: each file joins its speaker's running statistics first and is classified by them (emovox before
  order-free adaptation; what ``predict(speaker=KEY)`` one request at a time still does);
- ``order_free``: what ``emovox batch --speaker-column`` and ``predict --speaker-from-path`` do now: each speaker's
  statistics over all its files (``by_speaker``), the same in every order;
- ``same_speaker``: ``predict_proba(..., same_speaker=True)`` over each speaker's files, the reference.

Reported: accuracy per file and per speaker for each way and order.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from emovox import EmotionRecognizer
from emovox.corpora import load_corpus
from emovox.inference.scoring import Scores
from emovox.inference.speakers import SpeakerBook


def running(rec: EmotionRecognizer, scores: Scores, keys: list[str], order: list[int]) -> np.ndarray:
    """Labels (indices) of each file when files come in ``order`` and each joins its speaker's running book first."""
    book = SpeakerBook()
    out = np.zeros(len(keys), int)
    for i in order:
        one = Scores(scores.probabilities[[i]], None, ["file"], scores.vectors[[i]])
        rec.learn_speakers(one, [keys[i]], book)
        out[i] = int(np.argmax(rec.by_speaker(one, [keys[i]], book).probabilities[0]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ravdess", type=Path, required=True)
    ap.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--actors", default="15,16,17,18")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    actors = {a.zfill(2) for a in args.actors.split(",")}
    utts = sorted((u for u in load_corpus("ravdess", args.ravdess) if u.speaker.zfill(2) in actors), key=lambda u: str(u.path))
    if not utts:
        sys.exit(f"no clips of actors {sorted(actors)} under {args.ravdess}")
    rec = EmotionRecognizer.load(args.model)
    t0 = time.perf_counter()
    names, scores, errors = rec.encode_files([u.path for u in utts])
    encode_s = time.perf_counter() - t0
    keep = [i for i, e in enumerate(errors) if e is None]
    utts = [utts[i] for i in keep]
    labels = rec.labels
    truth = np.array([labels.index(u.emotion) if u.emotion in labels else -1 for u in utts])
    keys = [u.speaker for u in utts]

    def acc(pred: np.ndarray) -> dict:
        per_speaker = {k: float(np.mean(pred[[j for j, s in enumerate(keys) if s == k]] ==
                                        truth[[j for j, s in enumerate(keys) if s == k]])) for k in sorted(set(keys))}
        return {"per_file": float(np.mean(pred == truth)), "per_speaker": per_speaker}

    results: dict = {"files": len(utts), "speakers": sorted(set(keys)), "encode_s": round(encode_s, 1),
                     "model": str(args.model or "bundled")}
    results["per_file"] = acc(np.argmax(scores.probabilities, 1))
    orders = {"path": list(range(len(utts)))}
    for seed in range(args.seeds):
        o = list(range(len(utts)))
        random.Random(seed).shuffle(o)
        orders[f"shuffled_{seed}"] = o
    results["running"] = {name: acc(running(rec, scores, keys, o)) for name, o in orders.items()}
    order_free = {}
    for name, o in orders.items():
        book = SpeakerBook()
        sub = Scores(scores.probabilities[o], None if scores.ood is None else scores.ood[o],
                     [scores.heads[i] for i in o], scores.vectors[o])
        k = [keys[i] for i in o]
        rec.learn_speakers(sub, k, book)
        pred = np.zeros(len(utts), int)
        pred[o] = np.argmax(rec.by_speaker(sub, k, book).probabilities, 1)
        order_free[name] = acc(pred)
    results["order_free"] = order_free
    same = np.zeros(len(utts), int)
    for spk in sorted(set(keys)):
        rows = [j for j, s in enumerate(keys) if s == spk]
        same[rows] = np.argmax(rec.classify(torch.from_numpy(scores.vectors[rows]), same_speaker=True), 1)
    results["same_speaker"] = acc(same)

    print(f"{len(utts)} files of {len(set(keys))} speakers; encoded in {encode_s:.0f} s")
    print(f"{'way':<14}{'order':<12}{'per file':>9}   per speaker")
    print(f"{'per_file':<14}{'any':<12}{results['per_file']['per_file']:>9.3f}")
    for way in ("running", "order_free"):
        for name, r in results[way].items():
            print(f"{way:<14}{name:<12}{r['per_file']:>9.3f}   " + " ".join(f"{v:.2f}" for v in r["per_speaker"].values()))
    print(f"{'same_speaker':<14}{'any':<12}{results['same_speaker']['per_file']:>9.3f}   "
          + " ".join(f"{v:.2f}" for v in results["same_speaker"]["per_speaker"].values()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
