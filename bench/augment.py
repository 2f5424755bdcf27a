"""Does waveform augmentation help the robust recipe on unseen speakers?

Adds K seeded augmented copies of every training file (audiomentations:
Gaussian noise at 10-30 dB SNR, gain ±6 dB, pitch shift ±3 semitones, tempo
0.85-1.15) to the training part of each fold, with the robust recipe's
features (pooled-stage EfficientNet-Lite0 embedding + ComParE functionals)
and heads (per-speaker normalisation, logistic regression); validation and
test files are never augmented. Prints a Markdown table, writes JSON::

    pip install 'emovox[augment]'
    python bench/augment.py [--copies 1] [--json bench/results/augment.json]

The augmented features take as long as the originals (minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from emovox.acoustic import signal_functionals
from emovox.audio import load_audio
from emovox.corpora import load_corpus
from emovox.corpora.base import Utterance
from emovox.features import FeatureConfig, signal_features
from emovox.labels import sort_labels
from emovox.model import EmotionClassifier
from emovox.splits import Split, cross_speaker, speaker_kfold
from emovox.train import _body_runner, fit, images, model_inputs, prepare, recipe_config, score, speaker_inputs, weights_tag

ROOT = Path(__file__).resolve().parents[1]


def augmenter():
    import audiomentations as A

    return A.Compose([
        A.AddGaussianSNR(min_snr_db=10, max_snr_db=30, p=0.5),
        A.Gain(min_gain_db=-6, max_gain_db=6, p=0.5),
        A.PitchShift(min_semitones=-3, max_semitones=3, p=0.7),
        A.TimeStretch(min_rate=0.85, max_rate=1.15, p=0.5),
    ])


def _augmented(job: tuple[int, str, int], cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """(spectrogram, functionals) of copy ``k`` of file ``i``, seeded by (i, k)."""
    i, path, k = job
    random.seed(1000 * k + i)
    np.random.seed(1000 * k + i)
    y = augmenter()(samples=load_audio(path, cfg.sample_rate), sample_rate=cfg.sample_rate)
    return signal_features(y, cfg.sample_rate, cfg), signal_functionals(y, cfg.sample_rate, "compare")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tess", type=Path, default=ROOT.parent / "shared" / "data" / "tess")
    ap.add_argument("--ravdess", type=Path, default=ROOT.parent / "shared" / "data" / "ravdess")
    ap.add_argument("--copies", type=int, default=1, help="augmented copies per training file")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "augment.json")
    args = ap.parse_args()

    cfg = recipe_config("robust")
    features = FeatureConfig()
    utts = load_corpus(["tess", "ravdess"], [args.tess, args.ravdess])
    data = prepare(utts, features)
    model = EmotionClassifier(cfg.backbone, sort_labels({u.emotion for u in data.utts}), acoustic=cfg.acoustic, normalize=cfg.normalize)
    base = model_inputs(model, data, weights_tag(cfg.backbone, cfg.weights))
    n = len(data.utts)

    t0 = time.perf_counter()
    jobs = [(i, str(u.path), k) for k in range(1, args.copies + 1) for i, u in enumerate(data.utts)]
    with mp.get_context("fork").Pool() as pool:
        out = pool.map(partial(_augmented, cfg=features), jobs, chunksize=16)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        body = _body_runner(model, features, Path(tmp))
        emb = np.concatenate([body(images([s for s, _ in out[j : j + 32]], model, features)) for j in range(0, len(out), 32)])
    aug = model.vectors(torch.from_numpy(emb), np.stack([f for _, f in out]))
    aug_s = time.perf_counter() - t0
    # Augmented copies are normalised as speakers of their own: pitch and tempo changes alter the voice.
    all_utts: list[Utterance] = list(data.utts) + [
        Utterance(u.path, u.emotion, f"{u.speaker}~aug{k}", u.corpus) for k in range(1, args.copies + 1) for u in data.utts]
    inputs = torch.cat([base, aug])
    spk = speaker_inputs(inputs, all_utts)

    corpus = np.array([u.corpus for u in data.utts])
    protocols = {
        "RAVDESS speaker 6-fold": (np.flatnonzero(corpus == "ravdess"), speaker_kfold),
        "TESS cross-speaker": (np.flatnonzero(corpus == "tess"), lambda us, k=None: cross_speaker(us)),
    }
    rows = []
    for name, (sel, folds_of) in protocols.items():
        folds = folds_of([data.utts[i] for i in sel], 6) if "6-fold" in name else folds_of([data.utts[i] for i in sel])
        for copies in (0, args.copies):
            accs: dict[str, list[float]] = {"per file": [], "per speaker": []}
            for split in folds:
                train, val, test = sel[split.train], sel[split.val], sel[split.test]
                train = np.concatenate([train] + [train + k * n for k in range(1, copies + 1)])
                labels = sort_labels(all_utts[i].emotion for i in train)
                y = torch.tensor([labels.index(u.emotion) if u.emotion in labels else -1 for u in all_utts])
                m = EmotionClassifier(cfg.backbone, labels, weights=None, acoustic=cfg.acoustic, normalize=cfg.normalize)
                for variant, speaker, x in (("per file", False, inputs), ("per speaker", True, spk)):
                    fit(m, x, y, Split(train, val, test, ""), cfg, features, progress=False, speaker=speaker)
                    metrics, _ = score(m, x, test, all_utts, features, speaker)
                    accs[variant].append(metrics["accuracy"])
            for variant, values in accs.items():
                rows.append({"protocol": name, "copies": copies, "normalised": variant, "accuracy": values})
    print("| protocol | augmented copies | normalised | accuracy per fold | mean |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['protocol']} | {r['copies']} | {r['normalised']} | {', '.join(f'{a:.3f}' for a in r['accuracy'])} | {np.mean(r['accuracy']):.3f} |")
    print(f"\naugmented features of {len(jobs)} files: {aug_s:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "augment_seconds": aug_s, "copies": args.copies}, indent=2) + "\n")


if __name__ == "__main__":
    main()
