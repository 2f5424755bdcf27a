"""Int8 speech encoders on ONNX Runtime: what dynamic quantisation costs in accuracy and gains in speed.

    EMOVOX_WEIGHTS=DIR python bench/int8.py --ravdess ../shared/data/ravdess \
        [--encoders whisper_tiny_en,whisper_base] [--out bench/results/int8.json]

For each encoder: its vectors of every RAVDESS file from the fp32 ONNX export (cached like training's) and from
the int8-weight copy (``engine="onnx-int8"``; ONNX Runtime's dynamic quantisation, computed afresh). Heads are the
speech recipe's (standardise + L2 logistic regression, C = 0.01), fitted on fp32 vectors of the training actors of
each of 6 speaker-grouped folds, then scored on the test actors' fp32 vectors and on their int8 vectors, as a model
trained once and served with int8 weights would be. Per file, and per speaker (vectors normalised within each
actor). Speed: files per second of the encoder pass alone over the corpus, fp32 vs int8, 2 threads.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from emovox.corpora import load_corpus
from emovox.encoders import build_encoder
from emovox.model import speaker_normalize
from emovox.runtime.accelerate import accelerate
from emovox.training.data import encoder_inputs, encoder_vectors, prepare
from emovox.training.splits import protocol_folds


def vectors(enc, data, cache_root: Path | None) -> tuple[np.ndarray, float]:
    """``(vectors, files per second)`` of every prepared file."""
    t0 = time.perf_counter()
    x = encoder_vectors(enc, data.keys if cache_root else [None] * len(data.utts),
                        lambda idx: encoder_inputs(enc, data, idx, progress=False), cache_root, progress=True)
    return x, len(data.utts) / (time.perf_counter() - t0)


def subset(data, n: int):
    """The first ``n`` prepared utterances of ``data``."""
    from dataclasses import replace

    return replace(data, utts=data.utts[:n], specs=data.specs[:n] if data.specs else data.specs, keys=data.keys[:n])


def cv(x32: np.ndarray, x8: np.ndarray, utts, folds) -> dict[str, dict[str, list[float]]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.array([u.emotion for u in utts])
    spk = [u.speaker_key for u in utts]
    out = {v: {"fp32": [], "int8": []} for v in ("per file", "per speaker")}
    for split in folds:
        train = np.concatenate([split.train, split.val])
        for variant in out:
            a32, a8 = (speaker_normalize(x32, spk), speaker_normalize(x8, spk)) if variant == "per speaker" else (x32, x8)
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)).fit(a32[train], y[train])
            out[variant]["fp32"].append(float((clf.predict(a32[split.test]) == y[split.test]).mean()))
            out[variant]["int8"].append(float((clf.predict(a8[split.test]) == y[split.test]).mean()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ravdess", type=Path, required=True)
    ap.add_argument("--encoders", default="whisper_tiny_en,whisper_base")
    ap.add_argument("--cache-dir", type=Path, default=None, help="vector and ONNX cache (default: the emovox cache)")
    ap.add_argument("--speed-files", type=int, default=None, help="time the encoder passes on the first N files only")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "int8.json")
    args = ap.parse_args(argv)
    from emovox.cache import default_cache_dir

    cache = args.cache_dir or default_cache_dir()
    utts = load_corpus("ravdess", args.ravdess)
    folds = protocol_folds("speaker-kfold", utts, seed=0, folds=6)
    results = {}
    print("| encoder | variant | fp32 | int8 | Δ (points) | fp32 files/s | int8 files/s |\n|---|---|---|---|---|---|---|")
    for name in [n.strip() for n in args.encoders.split(",") if n.strip()]:
        enc = build_encoder(name)
        data = prepare(utts, enc.preparer(), cache_dir=cache, progress=False, log=lambda m: None)
        assert len(data.utts) == len(utts), data.skipped
        timed = data if args.speed_files is None else subset(data, args.speed_files)
        accelerate(enc, "onnx", cache_dir=cache)
        x32, _ = vectors(enc, data, cache)  # the vectors training uses (cached)
        _, speed32 = vectors(enc, timed, None)  # timed afresh
        accelerate(enc, "onnx-int8", cache_dir=cache)
        x8, _ = vectors(enc, data, None)
        _, speed8 = vectors(enc, timed, None)
        scores = cv(x32, x8, data.utts, folds)
        results[name] = {"scores": scores, "files_per_s": {"fp32": speed32, "int8": speed8}, "n": len(utts)}
        for variant, s in scores.items():
            f32, f8 = np.mean(s["fp32"]) * 100, np.mean(s["int8"]) * 100
            print(f"| {name} | {variant} | {f32:.1f} | {f8:.1f} | {f8 - f32:+.1f} | {speed32:.1f} | {speed8:.1f} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
