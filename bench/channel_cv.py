"""Which channel copies, and which head inputs, hold up on channels: speaker-grouped cross-validation.

    python bench/channel_cv.py [--folds 4] [--copies 0,1,2] [--layers all,...] [--json bench/results/channel_cv.json]

The bundled model's recipe (``scripts/train_default.py``: Whisper base, TESS + RAVDESS + nEMO, every file and its
timeline cut, corpora weighted alike, L2 logistic regression) with 0, 1 or 2 channel copies of every training file
(:func:`emovox.training.augment.channel_inputs`), scored on RAVDESS actors it did not train on (the model's
training actors 01-14 in ``--folds`` actor-grouped folds; actors 17-18 and the held-out TESS words stay out of
everything, as for the model) through every benchmark channel of :data:`emovox.audio.channels.CHANNELS` (other seeds
and settings than the training copies; babble of other RAVDESS actors). ``--layers``: which hidden states the head
reads (``all``; ``top4``: the last four; ``mean``: only their means; ``no-std``...), to see which statistics survive
channels. All vectors are cached (the training run's are reused).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from train_default import TEST, VAL, held_out_words, local_weights  # noqa: E402

from emovox.audio.channels import CHANNELS  # noqa: E402
from emovox.corpora import load_corpus  # noqa: E402
from emovox.features import FeatureConfig  # noqa: E402
from emovox.labels import sort_labels  # noqa: E402
from emovox.model import EmotionClassifier  # noqa: E402
from emovox.model.heads import linear_head  # noqa: E402
from emovox.training.augment import channel_vectors  # noqa: E402
from emovox.training.data import logits_for, model_inputs, prepare  # noqa: E402
from emovox.training.solvers import fit  # noqa: E402
from emovox.training.splits import Split, make_split  # noqa: E402
from emovox.training.train import augment_inputs, recipe_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SEED = 4242
STATES = 8  # Whisper base: 8 hidden states, each pooled to [mean (512), std (512)]


def columns(layers: str, dim: int) -> np.ndarray:
    width = dim // STATES
    half = width // 2
    blocks = {"all": range(STATES), "top4": range(STATES - 4, STATES), "top6": range(STATES - 6, STATES),
              "mean": range(STATES), "bottom4": range(4)}[layers]
    cols = [np.arange(b * width, b * width + (half if layers == "mean" else width)) for b in blocks]
    return np.concatenate(cols)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--copies", default="0,1,2")
    ap.add_argument("--layers", default="all")
    ap.add_argument("--c", default="0.01", help="comma-separated logistic-regression C values (default: %(default)s)")
    ap.add_argument("--channels", default=",".join(CHANNELS))
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "channel_cv.json")
    args = ap.parse_args()

    import os

    os.environ.setdefault("EMOVOX_WEIGHTS", str(local_weights(Path.home() / ".cache" / "emovox" / "weights")))
    utts = load_corpus("tess,ravdess,nemo", [SHARED / "data" / d for d in ("tess", "ravdess", "nemo")])
    words = held_out_words(utts)
    max_copies = max(int(c) for c in args.copies.split(","))
    cfg = recipe_config("speech", encoders=("whisper_base",), split="speaker", test_speakers=TEST, val_speakers=VAL,
                        test_texts=words, balance_corpora=True, channels=max_copies, seed=0)
    encoders = cfg.build_encoders(FeatureConfig())
    data = prepare(utts, encoders[0].preparer())
    split = make_split(cfg.split, data.utts, seed=0, test_speakers=TEST, val_speakers=VAL, test_texts=words)
    labels = sort_labels(data.utts[i].emotion for i in split.train)
    model = EmotionClassifier(encoders, labels, normalize="none")
    x = model_inputs(model, data).numpy()
    y = np.array([labels.index(u.emotion) if u.emotion in labels else -1 for u in data.utts])
    corpus = np.array([u.corpus for u in data.utts])
    speaker = np.array([u.speaker_key for u in data.utts])
    cut = augment_inputs(model, data, split.train, 1, kind="cut")
    chans = augment_inputs(model, data, split.train, max_copies, kind="channel") if max_copies else None

    # benchmark channels over the RAVDESS training actors (01-16): what each fold is scored on
    train_rows = np.asarray(split.train, dtype=np.int64)
    rav = train_rows[corpus[train_rows] == "ravdess"]  # the training actors (01-14): they have cuts and copies
    chosen = [c for c in args.channels.split(",") if c]
    test_vec = {name: channel_vectors(model, data, name, rows=rav, seed=SEED) for name in chosen}

    actors = np.array([speaker[i] for i in rav])
    order = sorted(set(actors))
    fold_of = {a: k % args.folds for k, a in enumerate(order)}
    result: dict = {"folds": args.folds, "actors": order, "channels": chosen, "runs": []}
    base = np.setdiff1d(split.train, rav)  # TESS (all but the held-out words) and nEMO: always trained on
    for layers in args.layers.split(","):
        cols = columns(layers, x.shape[1])
        for copies in (int(c) for c in args.copies.split(",")):
            for C in (float(c) for c in args.c.split(",")):
                t0 = time.perf_counter()
                hits = {name: np.zeros(len(rav), bool) for name in chosen}
                for k in range(args.folds):
                    test_pos = np.flatnonzero([fold_of[a] == k for a in actors])
                    train_src = np.concatenate([base, rav[[fold_of[a] != k for a in actors]]])
                    parts = [x[train_src], cut.vectors.numpy()[cut.rows(train_src)]]
                    ys = [y[train_src], y[train_src]]
                    cs = [corpus[train_src], corpus[train_src]]
                    if copies:
                        rows = chans.rows(train_src)[: copies * len(train_src)]
                        parts.append(chans.vectors.numpy()[rows])
                        ys.append(np.tile(y[train_src], copies))
                        cs.append(np.tile(corpus[train_src], copies))
                    xt = torch.from_numpy(np.concatenate(parts)[:, cols])
                    yt = torch.from_numpy(np.concatenate(ys))
                    m = EmotionClassifier(encoders, labels, normalize="none")
                    if len(cols) != x.shape[1]:
                        m.head = linear_head(len(cols), len(labels), m.dropout)
                    run_cfg = recipe_config("speech", encoders=("whisper_base",), balance_corpora=True, logreg_c=C, seed=0)
                    ntr = len(yt)
                    fit(m, xt, yt, Split(np.arange(ntr), np.arange(min(ntr, 64)), np.zeros(0, np.int64), "cv"), run_cfg,
                        progress=False, corpora=list(np.concatenate(cs)))
                    for name in chosen:
                        v = torch.from_numpy(test_vec[name][test_pos][:, cols])
                        pred = logits_for(m, v, np.arange(len(v))).argmax(1).numpy()
                        hits[name][test_pos] = pred == y[rav[test_pos]]
                run = {"layers": layers, "copies": copies, "C": C, "seconds": round(time.perf_counter() - t0, 1),
                       "accuracy": {name: float(h.mean()) for name, h in hits.items()},
                       "per_actor": {name: {a: float(h[actors == a].mean()) for a in order} for name, h in hits.items()}}
                result["runs"].append(run)
                print(f"layers {layers:<6} copies {copies} C {C:<6} " + " ".join(f"{nm} {a:.1%}" for nm, a in run["accuracy"].items())
                      + f" [{run['seconds']:.0f} s]", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
