"""The speech recipe on the pipeline: clip-length vs 30-s Whisper input, and the encoder + CNN stages combined.

    python bench/speech_combine.py --ravdess ../shared/data/ravdess \
        --weights ../shared/models/whisper-tiny.en-encoder [--no-full] [--out bench/results/speech_combine.json]

Protocol: the speech probe's 6-fold speaker-grouped cross-validation over the RAVDESS actors
(``protocol_folds("speaker-kfold", seed=0, folds=6)``); each fold's head (standardise, L2 logistic regression,
C = 0.01: the recipe's) is fitted on the fold's train + validation actors and scored on its test actors, per file
and per speaker (``speaker_normalize`` first). Vectors come from the product's own code: the pipeline's cached
embeddings (``emovox.training.data.model_inputs``) for the clip-length encoder and for EfficientNet-Lite0's pooled
stages on log-mels (the robust recipe's CNN), and ``SpeechEncoder(context="full")`` for 30-s Whisper input
(padded to 30 s as Whisper was trained, pooled over the clip's frames; about ten times slower).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from emovox.model import speaker_normalize
from emovox.corpora import load_corpus
from emovox.encoders.speech import SpeechEncoder
from emovox.features import FeatureConfig
from emovox.training.data import model_inputs, prepare
from emovox.model import EmotionClassifier
from emovox.training.splits import protocol_folds


def cross_validate(x: np.ndarray, y: np.ndarray, speakers: list[str], folds) -> dict[str, list[float]]:
    out = {}
    for mode, z in (("per_file", x), ("per_speaker", speaker_normalize(x, speakers))):
        accs = []
        for split in folds:
            fit = np.concatenate([split.train, split.val])
            sc = StandardScaler().fit(z[fit])
            clf = LogisticRegression(C=0.01, max_iter=3000).fit(sc.transform(z[fit]), y[fit])
            accs.append(float((clf.predict(sc.transform(z[split.test])) == y[split.test]).mean()))
        out[mode] = accs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ravdess", type=Path, required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--no-full", action="store_true", help="skip the 30-s input variant (the slow one)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    utts = load_corpus("ravdess", args.ravdess)
    folds = protocol_folds("speaker-kfold", utts, seed=0, folds=6)
    classes = sorted({u.emotion for u in utts})
    y = np.array([classes.index(u.emotion) for u in utts])
    speakers = [u.speaker_key for u in utts]

    t0 = time.time()
    data = prepare(utts, FeatureConfig(), progress=False, log=lambda m: None)
    assert len(data.utts) == len(utts), data.skipped
    speech = EmotionClassifier("whisper_tiny_en", classes, weights=args.weights)
    x_speech = np.asarray(model_inputs(speech, prepare(utts, FeatureConfig(), spectrograms=False, progress=False,
                                                       log=lambda m: None), None, progress=False))
    cnn = EmotionClassifier("efficientnet_lite0_stages", classes, weights="imagenet")
    x_cnn = np.asarray(model_inputs(cnn, data, progress=False))
    print(f"vectors: speech {x_speech.shape}, CNN stages {x_cnn.shape} in {time.time() - t0:.0f} s", file=sys.stderr)
    variants = {"encoder, clip length (the recipe)": x_speech, "encoder + CNN stages": np.hstack([x_speech, x_cnn]),
                "CNN stages alone": x_cnn}
    if not args.no_full:
        t = time.time()
        enc = SpeechEncoder.pretrained("whisper_tiny_en", args.weights, context="full")
        variants["encoder, 30-s input"] = np.stack([enc.encode_one(enc.preparer().file(u.path), str(u.path)) for u in utts])
        print(f"30-s input: {time.time() - t:.0f} s for {len(utts)} files", file=sys.stderr)
    results = {}
    print("| variant | dim | per file (%) | per speaker (%) |\n|---|---|---|---|")
    for name, x in variants.items():
        r = cross_validate(x, y, speakers, folds)
        f, s = np.array(r["per_file"]) * 100, np.array(r["per_speaker"]) * 100
        results[name] = r | {"dim": int(x.shape[1])}
        print(f"| {name} | {x.shape[1]} | {f.mean():.1f} ± {f.std():.1f} | {s.mean():.1f} ± {s.std():.1f} |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"protocol": "speaker-kfold, 6 folds, seed 0, logreg C=0.01 on train+val",
                                        "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
